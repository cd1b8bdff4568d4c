//! The document as a whole: syntax, size and alias limits, the envelope, policies, and how
//! diagnostics are reported.

use std::time::{Duration, Instant};

use super::*;
use crate::model::{LearnerSpec, Resources, RestartPolicy, Spread, Workload};

#[test]
fn the_hello_example_validates() {
    let application = parse_ok(HELLO);
    assert_eq!(application.name, "hello");
    let [greeter, ticker] = application.components.as_slice() else {
        panic!("expected two components");
    };
    assert_eq!(greeter.replicas, 2);
    let Workload::Process(process) = &greeter.workload else {
        panic!("greeter is a process");
    };
    assert_eq!(process.command[0], "sh");
    assert_eq!(process.env[0].name, "GREETING");
    assert_eq!(process.env[0].value, "hello");
    assert_eq!(process.restart, RestartPolicy::Always);
    assert_eq!(ticker.replicas, 1);
    assert_eq!(ticker.depends_on, ["greeter"]);
    assert_eq!(
        ticker.resources,
        Resources {
            cpu_millis: 100,
            memory_bytes: 16 << 20
        }
    );
    let Workload::Process(process) = &ticker.workload else {
        panic!("ticker is a process");
    };
    assert_eq!(process.restart, RestartPolicy::OnFailure);
    assert_eq!(parse_ok(&application.to_oam_yaml()), application);
}

#[test]
fn the_fashion_mnist_example_validates() {
    let source = include_str!("../../../../examples/fashion-mnist-delta-sum.yaml");
    let application = parse_ok(source);
    assert_eq!(application.name, "fashion-mnist");
    let [learner, dashboard] = application.components.as_slice() else {
        panic!("expected two components");
    };
    assert_eq!(learner.name, "learner");
    assert_eq!(learner.replicas, 3);
    assert_eq!(
        learner.placement.spread,
        Some(Spread {
            topology_key: None,
            max_skew: 1
        })
    );
    let Workload::Learner(spec) = &learner.workload else {
        panic!("learner is a learner");
    };
    assert_eq!(
        *spec,
        LearnerSpec {
            model: "mlp".into(),
            aggregation: "delta-sum".into(),
            epochs: 30,
            window: 5,
            peers: 2,
            ..LearnerSpec::default()
        }
    );
    assert_eq!(dashboard.name, "dashboard");
    assert_eq!(dashboard.replicas, 1);
    let Workload::Process(process) = &dashboard.workload else {
        panic!("dashboard is a process");
    };
    assert_eq!(process.command[..2], ["sh", "-c"]);
    assert_eq!(parse_ok(&application.to_oam_yaml()), application);
}

#[test]
fn diagnostics_display_as_file_line_column_path_message() {
    let diagnostics = parse_application(
        &HELLO.replace("type: process", "type: databse"),
        "hello.yaml",
    )
    .expect_err("unknown type");
    let text = diagnostics.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "hello.yaml:8:7: spec.components[0].type: unknown component type \"databse\"; \
             expected one of process, webservice, worker, learner",
            "hello.yaml:19:7: spec.components[1].type: unknown component type \"databse\"; \
             expected one of process, webservice, worker, learner",
        ]
    );
}

#[test]
fn yaml_syntax_errors_have_line_and_column() {
    let source = document("- name: web\n  type: process\n  properties: {command: [a, b}\n");
    let diagnostics = parse_err(&source);
    assert_eq!(diagnostics.len(), 1);
    let error = &diagnostics[0];
    assert!(error.message.starts_with("YAML syntax error"), "{error}");
    assert_eq!(position(error), (9, 34));
}

#[test]
fn duplicate_yaml_keys_are_errors() {
    let source = document("- name: web\n  type: process\n  name: other\n");
    let diagnostics = parse_err(&source);
    let error = at(
        &diagnostics,
        "spec.components[0].name",
        "duplicate key \"name\"",
    );
    assert!(error.message.contains("first defined at line 7"), "{error}");
    assert_eq!(position(error), (9, 7));
}

#[test]
fn wrong_api_version_and_kind() {
    let source = HELLO
        .replace("core.oam.dev/v1beta1", "core.oam.dev/v1alpha2")
        .replace("kind: Application", "kind: Deployment");
    let diagnostics = parse_err(&source);
    let api = at(
        &diagnostics,
        "apiVersion",
        "unsupported apiVersion \"core.oam.dev/v1alpha2\"",
    );
    assert!(api.message.contains("expected core.oam.dev/v1beta1"));
    assert_eq!(position(api), (1, 1));
    let kind = at(
        &diagnostics,
        "kind",
        "unsupported kind \"Deployment\"; expected Application",
    );
    assert_eq!(position(kind), (2, 1));
}

#[test]
fn empty_and_non_mapping_documents() {
    for empty in ["", "# nothing here\n", "---\n"] {
        let diagnostics = parse_err(empty);
        assert!(
            diagnostics[0].message.contains("the document is empty"),
            "{empty:?}"
        );
    }
    let diagnostics = parse_err("- just\n- a list\n");
    at(&diagnostics, "", "expected an OAM Application");
}

#[test]
fn missing_top_level_fields_are_each_reported() {
    let diagnostics = parse_err("apiVersion: core.oam.dev/v1beta1\n");
    for field in ["kind", "metadata", "spec"] {
        let missing = diagnostics
            .iter()
            .find(|d| d.message.starts_with(&format!("missing {field}")));
        assert!(missing.is_some(), "no missing {field} in {diagnostics:?}");
    }
}

#[test]
fn invalid_names() {
    let source = HELLO
        .replace("name: hello", "name: Hello_World")
        .replace("name: ticker", "name: -ticker");
    let diagnostics = parse_err(&source);
    let app_name = at(
        &diagnostics,
        "metadata.name",
        "invalid name \"Hello_World\"",
    );
    assert!(app_name.message.contains("DNS-1123"));
    assert_eq!(position(app_name), (4, 3));
    let component = at(
        &diagnostics,
        "spec.components[1].name",
        "invalid name \"-ticker\"",
    );
    assert_eq!(position(component), (18, 7));
}

#[test]
fn unknown_fields_name_the_allowed_ones_and_are_all_reported() {
    let source = document(
        "- name: web\n  type: process\n  replicas: 3\n  properties:\n    comand: [x]\n    cwd: /tmp\n",
    );
    let diagnostics = parse_err(&source);
    let replicas = at(
        &diagnostics,
        "spec.components[0].replicas",
        "unknown field \"replicas\"",
    );
    assert!(
        replicas
            .message
            .contains("expected one of name, type, properties, traits, dependsOn")
    );
    assert_eq!(position(replicas), (9, 7));
    let command = at(
        &diagnostics,
        "spec.components[0].properties.comand",
        "unknown field \"comand\"",
    );
    assert!(
        command
            .message
            .contains("expected one of command, env, workingDir, restart")
    );
    at(
        &diagnostics,
        "spec.components[0].properties.cwd",
        "unknown field \"cwd\"",
    );
    // With the typo dropped, the real problem shows too.
    at(
        &diagnostics,
        "spec.components[0].properties.command",
        "missing command",
    );
}

#[test]
fn an_empty_workflow_is_accepted_with_a_note() {
    let source = HELLO.replace("spec:\n", "spec:\n  workflow:\n    steps: []\n");
    let parsed = parse_document(&source, "app.yaml").expect("valid");
    assert_eq!(parsed.notes.len(), 1);
    assert_eq!(
        (parsed.notes[0].line, parsed.notes[0].column),
        (Some(6), Some(3))
    );
}

#[test]
fn empty_components_are_refused() {
    let diagnostics =
        parse_err(&format!("{HEADER}    []\n").replace("components:\n    []", "components: []"));
    at(&diagnostics, "spec.components", "needs at least one");
}

#[test]
fn every_problem_is_reported_at_once() {
    let source = document(
        "- name: Web
  type: process
  properties: {}
- name: db
  type: databse
- name: cache
  type: worker
  properties: {image: redis}
  traits:
    - type: scaler
      properties: {replicas: 100000}
",
    );
    let diagnostics = parse_err(&source);
    assert_eq!(diagnostics.len(), 4, "{}", Diagnostics(diagnostics.clone()));
    let lines: Vec<Option<usize>> = diagnostics.iter().map(|d| d.line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "diagnostics come in document order");
}

#[test]
fn policies() {
    let source = HELLO.to_owned()
        + "  policies:
    - name: where
      type: topology
      properties: {clusters: [edge-1], labels: {region: eu}}
    - name: tweak
      type: override
";
    let application = parse_ok(&source);
    assert_eq!(application.policies.len(), 2);
    assert_eq!(application.policies[0].kind, "topology");
    assert_eq!(
        application.policies[0].properties["clusters"],
        serde_json::json!(["edge-1"])
    );
    assert!(application.policies[1].properties.is_empty());
    assert_eq!(parse_ok(&application.to_oam_yaml()), application);

    let source = HELLO.to_owned()
        + "  policies:
    - name: where
      type: topology
    - name: where
      type: placement
    - type: override
";
    let diagnostics = parse_err(&source);
    at(
        &diagnostics,
        "spec.policies[1].name",
        "duplicate policy name \"where\"",
    );
    at(
        &diagnostics,
        "spec.policies[1].type",
        "unknown policy type \"placement\"; expected topology or override",
    );
    at(&diagnostics, "spec.policies[2]", "missing name");
}

#[test]
fn merge_keys_are_refused_with_advice() {
    let source = document(
        "- &base
  name: a
  type: process
  properties: {command: [x], restart: Never}
- <<: *base
  name: b
",
    );
    let diagnostics = parse_err(&source);
    let error = at(
        &diagnostics,
        "spec.components[1][\"<<\"]",
        "merge keys (<<) are not supported",
    );
    assert_eq!(position(error), (11, 7));
}

#[test]
fn a_billion_laughs_is_refused_quickly() {
    let mut source = String::from("lol: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..=9 {
        let aliases = vec![format!("*l{}", level - 1); 9].join(", ");
        source.push_str(&format!("l{level}: &l{level} [{aliases}]\n"));
    }
    let started = Instant::now();
    let diagnostics = parse_err(&source);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(diagnostics.len(), 1);
    assert!(
        diagnostics[0]
            .message
            .contains("YAML aliases expand to more than 100000 nodes; refusing (alias bomb?)"),
        "{}",
        diagnostics[0]
    );
    assert!(diagnostics[0].line.is_some());
}

#[test]
fn oversized_documents_are_refused_before_parsing() {
    let huge = "x".repeat(50 << 20);
    let started = Instant::now();
    let diagnostics = parse_err(&huge);
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(diagnostics.len(), 1);
    assert_eq!(
        diagnostics[0].message,
        format!(
            "file is {} bytes; applications are limited to 1 MiB",
            50 << 20
        )
    );
    assert_eq!(diagnostics[0].line, None);
    assert_eq!(
        diagnostics[0].to_string(),
        format!(
            "app.yaml: file is {} bytes; applications are limited to 1 MiB",
            50 << 20
        )
    );
    // Exactly the limit is still parsed (and fails for other reasons).
    let at_limit = format!("# {}\n", "x".repeat(MAX_DOCUMENT_BYTES - 3));
    assert_eq!(at_limit.len(), MAX_DOCUMENT_BYTES);
    assert!(parse_err(&at_limit)[0].message.contains("empty"));
}

#[test]
fn byte_order_marks_and_crlf_line_ends_are_accepted() {
    let with_bom = format!("\u{feff}{HELLO}");
    assert_eq!(parse_ok(&with_bom).name, "hello");
    let crlf = HELLO.replace('\n', "\r\n");
    assert_eq!(parse_ok(&crlf), parse_ok(HELLO));
}

#[test]
fn diagnostics_are_a_standard_error() {
    fn assert_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}
    let diagnostics = parse_application("", "empty.yaml").expect_err("empty");
    assert_error(&diagnostics);
}
