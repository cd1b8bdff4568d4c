//! Component types and their properties.

use super::*;
use crate::model::{PortSpec, Resources, RestartPolicy, Workload};

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

#[test]
fn learner_properties_are_kept_with_sorted_keys() {
    let source = document(
        "- name: mnist
  type: learner
  properties:
    rounds: 10
    dataset: mnist
    model: {layers: [784, 128, 10], rate: 0.01, dropout: null, shuffle: true}
",
    );
    let Workload::Learner(learner) = only_component(&source).workload else {
        panic!("a learner");
    };
    let keys: Vec<&str> = learner.properties.keys().map(String::as_str).collect();
    assert_eq!(keys, ["dataset", "model", "rounds"]);
    assert_eq!(
        learner.properties["model"],
        serde_json::json!({"dropout": null, "layers": [784, 128, 10], "rate": 0.01, "shuffle": true})
    );
    let diagnostics = parse_err(&document(
        "- name: l\n  type: learner\n  properties: {1: x, rate: .inf}\n",
    ));
    at(
        &diagnostics,
        "spec.components[0].properties",
        "mapping key 1 is not a string",
    );
    at(
        &diagnostics,
        "spec.components[0].properties.rate",
        "not a finite number",
    );
}
