//! Component types and their properties.

use super::*;
use crate::model::{
    INTAKE_ALL, LearnerSpec, LearningRate, PortSpec, Resources, RestartPolicy, Workload,
};

#[test]
fn unknown_component_type_lists_the_known_ones() {
    let source = document(
        "- name: web\n  type: process\n  properties: {command: [x]}\n- name: db\n  type: databse\n",
    );
    let diagnostics = parse_err(&source);
    let error = at(&diagnostics, "spec.components[1].type", "");
    assert_eq!(
        error.message,
        "unknown component type \"databse\"; expected one of process, webservice, worker, learner"
    );
    assert_eq!(position(error), (11, 7));
}

#[test]
fn missing_name_and_type() {
    let diagnostics = parse_err(&document("- properties: {command: [x]}\n"));
    assert!(
        diagnostics
            .iter()
            .any(|d| d.path == "spec.components[0]" && d.message.starts_with("missing name"))
    );
    assert!(diagnostics.iter().any(|d| d.path == "spec.components[0]"
        && d.message.contains("missing type; expected one of process")));
}

#[test]
fn process_needs_a_command() {
    let source = document("- name: web\n  type: process\n  properties:\n    restart: Never\n");
    let diagnostics = parse_err(&source);
    let error = at(
        &diagnostics,
        "spec.components[0].properties.command",
        "missing command",
    );
    // The field does not exist, so the error points at the properties that lack it.
    assert_eq!(position(error), (9, 7));
    let diagnostics = parse_err(&document("- name: web\n  type: process\n"));
    at(
        &diagnostics,
        "spec.components[0].properties.command",
        "missing command",
    );
    let diagnostics = parse_err(&document(
        "- name: web\n  type: process\n  properties: {command: []}\n",
    ));
    at(
        &diagnostics,
        "spec.components[0].properties.command",
        "command is empty",
    );
}

#[test]
fn process_properties() {
    let source = document(
        "- name: web
  type: process
  properties:
    command: [python3, -m, http.server]
    workingDir: /srv
    restart: Never
    env:
      - {name: PORT, value: \"8080\"}
      - {name: EMPTY}
",
    );
    let Workload::Process(process) = only_component(&source).workload else {
        panic!("a process");
    };
    assert_eq!(process.command, ["python3", "-m", "http.server"]);
    assert_eq!(process.working_dir.as_deref(), Some("/srv"));
    assert_eq!(process.restart, RestartPolicy::Never);
    assert_eq!(process.env[0].value, "8080");
    assert_eq!(process.env[1].value, "");
}

#[test]
fn env_values_must_be_strings_and_names_valid() {
    let source = document(
        "- name: web
  type: process
  properties:
    command: [x]
    restart: always
    env:
      - {name: PORT, value: 8080}
      - {name: 1ST, value: a}
      - {name: A, value: a}
      - {name: A, value: b}
      - {name: B, valueFrom: {secretKeyRef: x}}
",
    );
    let diagnostics = parse_err(&source);
    let value = at(
        &diagnostics,
        "spec.components[0].properties.env[0].value",
        "must be strings",
    );
    assert!(
        value.message.contains("quote it: value: \"8080\""),
        "{value}"
    );
    assert_eq!(position(value), (13, 26));
    at(
        &diagnostics,
        "spec.components[0].properties.env[1].name",
        "invalid environment variable name \"1ST\"",
    );
    at(
        &diagnostics,
        "spec.components[0].properties.env[3].name",
        "duplicate environment variable \"A\"",
    );
    at(
        &diagnostics,
        "spec.components[0].properties.env[4].valueFrom",
        "unknown field \"valueFrom\"",
    );
    at(
        &diagnostics,
        "spec.components[0].properties.restart",
        "unknown restart policy \"always\"; expected one of Always, OnFailure, Never",
    );
}

#[test]
fn webservice_and_worker_properties() {
    let source = document(
        "- name: web
  type: webservice
  properties:
    image: nginx:1.27
    cmd: [nginx]
    args: [-g, daemon off;]
    port: 80
    cpu: 0.5
    memory: 256Mi
- name: jobs
  type: worker
  properties:
    image: busybox
    port: 9000
    restart: OnFailure
- name: api
  type: webservice
  properties:
    image: api
    ports: [{port: 8080, expose: true, hostPort: 80}, {port: 9090}]
",
    );
    let application = parse_ok(&source);
    let [web, jobs, api] = application.components.as_slice() else {
        panic!("three components");
    };
    let Workload::Webservice(container) = &web.workload else {
        panic!("a webservice");
    };
    assert_eq!(container.image, "nginx:1.27");
    assert_eq!(container.args, ["-g", "daemon off;"]);
    let exposed = PortSpec {
        port: 80,
        expose: true,
        host_port: None,
    };
    assert_eq!(container.ports, [exposed]);
    assert_eq!(
        web.resources,
        Resources {
            cpu_millis: 500,
            memory_bytes: 256 << 20
        }
    );
    let Workload::Worker(container) = &jobs.workload else {
        panic!("a worker");
    };
    assert!(
        !container.ports[0].expose,
        "a worker's port shorthand does not expose it"
    );
    assert_eq!(container.restart, RestartPolicy::OnFailure);
    let Workload::Webservice(container) = &api.workload else {
        panic!("a webservice");
    };
    assert_eq!(container.ports[0].host_port, Some(80));
    assert!(!container.ports[1].expose);
}

#[test]
fn container_errors() {
    let source = document(
        "- name: web
  type: webservice
  properties:
    port: 80
    ports: [{port: 81}, {port: 70000}]
    cpu: 500m
    memory: lots
  traits:
    - type: resource
      properties: {cpu: 250m}
",
    );
    let diagnostics = parse_err(&source);
    at(
        &diagnostics,
        "spec.components[0].properties.image",
        "missing image",
    );
    at(
        &diagnostics,
        "spec.components[0].properties.port",
        "set either port or ports, not both",
    );
    let conflict = at(
        &diagnostics,
        "spec.components[0].properties.cpu",
        "set cpu either in properties or in the resource trait",
    );
    assert_eq!(position(conflict), (12, 9));
    at(
        &diagnostics,
        "spec.components[0].properties.memory",
        "invalid memory quantity \"lots\"; expected",
    );
}

/// The learner component `mnist` with `properties`, each line indented under it.
fn learner(properties: &str) -> String {
    let mut components = "- name: mnist\n  type: learner\n  properties:\n".to_owned();
    for line in properties.lines() {
        components.push_str("    ");
        components.push_str(line);
        components.push('\n');
    }
    document(&components)
}

fn only_learner(source: &str) -> LearnerSpec {
    match only_component(source).workload {
        Workload::Learner(learner) => learner,
        other => panic!("expected a learner, got {other:?}"),
    }
}

#[test]
fn learner_properties_default_to_the_papers_protocol() {
    let empty = document("- name: mnist\n  type: learner\n  properties: {}\n");
    assert_eq!(only_learner(&empty), LearnerSpec::default());
    let absent = document("- name: mnist\n  type: learner\n");
    assert_eq!(only_learner(&absent), LearnerSpec::default());
    let null = document("- name: mnist\n  type: learner\n  properties:\n");
    assert_eq!(only_learner(&null), LearnerSpec::default());
}

#[test]
fn learner_properties_are_kept() {
    let source = learner(
        "dataset: /var/lib/gossip/fashion-mnist
model: mlp
aggregation: average
epochs: 5
window: 5
batchSize: 32
learningRate: 0.01
partition: dirichlet:0.5
seed: 7
peers: 2
intake: 1
backend: ndarray
",
    );
    assert_eq!(
        only_learner(&source),
        LearnerSpec {
            dataset: "/var/lib/gossip/fashion-mnist".into(),
            model: "mlp".into(),
            aggregation: "average".into(),
            epochs: 5,
            window: 5,
            batch_size: 32,
            learning_rate: LearningRate(0.01),
            partition: "dirichlet:0.5".into(),
            seed: 7,
            peers: 2,
            intake: 1,
            backend: "ndarray".into(),
        }
    );
    // What is left out keeps its default; integers are numbers; seeds span all of u64.
    let source =
        learner("aggregation: variance-corrected\nlearningRate: 1\nseed: 18446744073709551615\n");
    assert_eq!(
        only_learner(&source),
        LearnerSpec {
            aggregation: "variance-corrected".into(),
            learning_rate: LearningRate(1.0),
            seed: u64::MAX,
            ..LearnerSpec::default()
        }
    );
}

#[test]
fn intake_is_a_count_or_all() {
    assert_eq!(only_learner(&learner("intake: all\n")).intake, INTAKE_ALL);
    assert_eq!(only_learner(&learner("intake: 3\n")).intake, 3);
    let rendered = parse_ok(&learner("intake: all\n")).to_oam_yaml();
    assert!(rendered.contains("intake: all"), "{rendered}");
    let errors = parse_err(&learner("intake: some\n"));
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("a positive integer or `all`")),
        "{errors:?}"
    );
}

#[test]
fn learner_round_trips_through_rendering() {
    let source = learner("model: mlp\nlearningRate: 0.0003\npartition: dirichlet:0.1\n");
    let application = parse_ok(&source);
    let rendered = application.to_oam_yaml();
    for field in [
        "dataset: fashion-mnist",
        "batchSize: 64",
        "learningRate: 0.0003",
        "partition: \"dirichlet:0.1\"",
        "backend: flex",
    ] {
        assert!(rendered.contains(field), "{field:?} in:\n{rendered}");
    }
    assert_eq!(parse_ok(&rendered), application);
}

#[test]
fn invalid_learner_properties_are_each_reported_at_their_field() {
    let source = learner(
        "dataset: \"\"
model: resnet
aggregation: median
epochs: 0
window: 0
batchSize: 100000
learningRate: 0
partition: dirichlet:-1
seed: -1
peers: 0
intake: -2
backend: cuda
",
    );
    let diagnostics = parse_err(&source);
    let properties = "spec.components[0].properties";
    let cases = [
        (
            "dataset",
            "dataset is empty; expected fashion-mnist or a directory",
        ),
        (
            "model",
            "unknown model \"resnet\"; expected one of cnn, mlp",
        ),
        (
            "aggregation",
            "unknown aggregation \"median\"; expected one of delta-sum, average, \
             variance-corrected, delta-sum-in-place",
        ),
        (
            "epochs",
            "invalid epochs 0; expected an integer from 1 to 100000",
        ),
        (
            "window",
            "invalid window 0; expected an integer from 1 to 100000",
        ),
        (
            "batchSize",
            "invalid batchSize 100000; expected an integer from 1 to 65536",
        ),
        (
            "learningRate",
            "invalid learningRate 0; expected a finite number greater than 0",
        ),
        (
            "partition",
            "invalid partition \"dirichlet:-1\"; expected iid or dirichlet:ALPHA with ALPHA a \
             finite number greater than 0",
        ),
        (
            "seed",
            "invalid seed -1; expected a non-negative integer, at most 18446744073709551615",
        ),
        (
            "peers",
            "invalid peers 0; expected an integer from 1 to 10000",
        ),
        (
            "intake",
            "invalid intake -2; expected `all` or an integer from 1 to 10000",
        ),
        (
            "backend",
            "unknown backend \"cuda\"; expected one of flex, ndarray",
        ),
    ];
    for (field, words) in cases {
        at(&diagnostics, &format!("{properties}.{field}"), words);
    }
    assert_eq!(diagnostics.len(), cases.len(), "{diagnostics:#?}");
    // Each points at its field: `model` is on the second property line.
    let model = at(&diagnostics, &format!("{properties}.model"), "");
    assert_eq!(position(model), (11, 9));
}

#[test]
fn learner_value_edge_cases() {
    let properties = "spec.components[0].properties";
    let refused = [
        (
            "window: 20\nepochs: 10\n",
            "window",
            "window 20 exceeds epochs 10; expected an integer from 1 to 10",
        ),
        (
            "epochs: 5\n",
            "window",
            "window 10 (the default) exceeds epochs 5",
        ),
        (
            "epochs: 100001\n",
            "epochs",
            "expected an integer from 1 to 100000",
        ),
        (
            "peers: 4294967296\n",
            "peers",
            "invalid peers 4294967296; expected an integer from 1",
        ),
        (
            "learningRate: -0.1\n",
            "learningRate",
            "expected a finite number greater than 0",
        ),
        (
            "learningRate: .inf\n",
            "learningRate",
            "invalid learningRate inf",
        ),
        (
            "learningRate: .nan\n",
            "learningRate",
            "invalid learningRate NaN",
        ),
        (
            "partition: dirichlet:0\n",
            "partition",
            "expected iid or dirichlet:ALPHA",
        ),
        (
            "partition: dirichlet:inf\n",
            "partition",
            "expected iid or dirichlet:ALPHA",
        ),
        (
            "partition: dirichlet\n",
            "partition",
            "expected iid or dirichlet:ALPHA",
        ),
        (
            "partition: IID\n",
            "partition",
            "expected iid or dirichlet:ALPHA",
        ),
        (
            "partition: \"iid:1\"\n",
            "partition",
            "expected iid or dirichlet:ALPHA",
        ),
        (
            "dataset: \"a\\0b\"\n",
            "dataset",
            "dataset contains a NUL character",
        ),
        ("model: CNN\n", "model", "expected one of cnn, mlp"),
    ];
    for (written, field, words) in refused {
        let diagnostics = parse_err(&learner(written));
        at(&diagnostics, &format!("{properties}.{field}"), words);
        assert_eq!(diagnostics.len(), 1, "{written}: {diagnostics:#?}");
    }
    let accepted = [
        ("epochs: 10\nwindow: 10\n", "window as long as the run"),
        ("epochs: 1\nwindow: 1\nbatchSize: 65536\n", "the bounds"),
        ("partition: dirichlet:1e-3\n", "an exponent"),
        ("partition: iid\n", "iid"),
        ("learningRate: 2e-4\n", "an exponent"),
        ("seed: 0\n", "seed zero"),
    ];
    for (written, what) in accepted {
        let application = parse_application(&learner(written), "app.yaml");
        assert!(application.is_ok(), "{what}: {application:?}");
    }
}

#[test]
fn learner_unknown_properties_list_the_known_ones() {
    let source = learner("epoch: 10\nrounds: 3\nmodel: mlp\n");
    let diagnostics = parse_err(&source);
    let known = "expected one of dataset, model, aggregation, epochs, window, batchSize, \
                 learningRate, partition, seed, peers, intake, backend";
    let epoch = at(
        &diagnostics,
        "spec.components[0].properties.epoch",
        &format!("unknown field \"epoch\"; {known}"),
    );
    assert_eq!(position(epoch), (10, 9));
    at(
        &diagnostics,
        "spec.components[0].properties.rounds",
        "unknown field \"rounds\"",
    );
    assert_eq!(diagnostics.len(), 2);
}

#[test]
fn learner_type_errors_have_position_and_path() {
    let diagnostics = parse_err(&learner("model: mlp\nepochs: ten\n"));
    let error = at(
        &diagnostics,
        "spec.components[0].properties.epochs",
        "invalid type: string \"ten\", expected an integer",
    );
    assert_eq!(position(error), (11, 9));
    let text = Diagnostics(diagnostics.clone()).to_string();
    assert!(
        text.starts_with("app.yaml:11:9: spec.components[0].properties.epochs: "),
        "{text}"
    );
    let diagnostics = parse_err(&learner("learningRate: \"0.01\"\n"));
    at(
        &diagnostics,
        "spec.components[0].properties.learningRate",
        "expected a number",
    );
    let diagnostics = parse_err(&learner("window: 2.5\n"));
    at(
        &diagnostics,
        "spec.components[0].properties.window",
        "expected an integer",
    );
    let diagnostics = parse_err(&learner("model: [mlp]\n"));
    at(
        &diagnostics,
        "spec.components[0].properties.model",
        "expected a string",
    );
    let diagnostics = parse_err(&document(
        "- name: mnist\n  type: learner\n  properties: [mlp]\n",
    ));
    at(
        &diagnostics,
        "spec.components[0].properties",
        "expected learner properties: a mapping with dataset, model",
    );
}
