//! `livenessProbe` and `readinessProbe`.

use super::*;
use crate::probes::{HttpHeader, Probe, ProbeAction};

fn probes_of(component: &Component) -> (Option<Probe>, Option<Probe>) {
    let probes = component.workload.probes().cloned().unwrap_or_default();
    (probes.liveness_probe, probes.readiness_probe)
}

#[test]
fn every_handler_and_field_is_read_with_kubernetes_defaults() {
    let component = only_component(&document(
        r#"- name: web
  type: process
  properties:
    command: ["sleep", "60"]
    livenessProbe:
      tcpSocket: {port: 8080}
    readinessProbe:
      httpGet:
        path: /ready
        port: 8080
        host: 10.0.0.1
        httpHeaders: [{name: X-Probe, value: gossip}]
      initialDelaySeconds: 3
      periodSeconds: 2
      timeoutSeconds: 4
      successThreshold: 2
      failureThreshold: 5
"#,
    ));
    let (liveness, readiness) = probes_of(&component);
    assert_eq!(
        liveness,
        Some(Probe {
            action: ProbeAction::TcpSocket {
                port: 8080,
                host: None
            },
            initial_delay_seconds: 0,
            period_seconds: 10,
            timeout_seconds: 1,
            success_threshold: 1,
            failure_threshold: 3,
        })
    );
    assert_eq!(
        readiness,
        Some(Probe {
            action: ProbeAction::HttpGet {
                path: "/ready".into(),
                port: 8080,
                host: Some("10.0.0.1".into()),
                headers: vec![HttpHeader {
                    name: "X-Probe".into(),
                    value: "gossip".into()
                }],
            },
            initial_delay_seconds: 3,
            period_seconds: 2,
            timeout_seconds: 4,
            success_threshold: 2,
            failure_threshold: 5,
        })
    );
    assert_eq!(component.readiness_probe(), readiness.as_ref());
}

#[test]
fn a_container_execs_and_the_path_defaults_to_the_root() {
    let component = only_component(&document(
        r#"- name: web
  type: webservice
  properties:
    image: nginx:1.27
    livenessProbe:
      exec: {command: ["cat", "/tmp/healthy"]}
    readinessProbe:
      httpGet: {port: 80}
"#,
    ));
    let (liveness, readiness) = probes_of(&component);
    assert_eq!(
        liveness.unwrap().action,
        ProbeAction::Exec {
            command: vec!["cat".into(), "/tmp/healthy".into()]
        }
    );
    assert_eq!(
        readiness.unwrap().action,
        ProbeAction::HttpGet {
            path: "/".into(),
            port: 80,
            host: None,
            headers: vec![]
        }
    );
}

#[test]
fn a_probe_changes_the_fingerprint() {
    let plain = only_component(&document(
        "- name: web\n  type: process\n  properties:\n    command: [\"sleep\", \"60\"]\n",
    ));
    let probed = only_component(&document(
        "- name: web\n  type: process\n  properties:\n    command: [\"sleep\", \"60\"]\n    livenessProbe: {tcpSocket: {port: 80}}\n",
    ));
    assert_ne!(plain.fingerprint(), probed.fingerprint());
}

#[test]
fn each_mistake_is_reported_at_its_field() {
    let diagnostics = parse_err(&document(
        r#"- name: web
  type: process
  properties:
    command: ["sleep", "60"]
    livenessProbe:
      exec: {command: []}
      timeoutSeconds: -1
      successThreshold: 3
    readinessProbe:
      httpGet: {path: healthz, port: 0}
      grpc: {port: 9000}
"#,
    ));
    let probe = "spec.components[0].properties";
    at(
        &diagnostics,
        &format!("{probe}.livenessProbe.exec.command"),
        "command is empty",
    );
    let timeout = at(
        &diagnostics,
        &format!("{probe}.livenessProbe.timeoutSeconds"),
        "expected an integer from 1 to 86400",
    );
    assert_eq!(position(timeout), (13, 11));
    at(
        &diagnostics,
        &format!("{probe}.livenessProbe.successThreshold"),
        "must be 1 for a liveness probe",
    );
    at(
        &diagnostics,
        &format!("{probe}.readinessProbe.httpGet.path"),
        "expected an absolute path",
    );
    at(
        &diagnostics,
        &format!("{probe}.readinessProbe.httpGet.port"),
        "invalid port 0",
    );
    at(
        &diagnostics,
        &format!("{probe}.readinessProbe.grpc"),
        "not supported by gossipctl",
    );
}

#[test]
fn learners_take_no_probes() {
    let diagnostics = parse_err(&document(
        "- name: train\n  type: learner\n  properties:\n    readinessProbe: {tcpSocket: {port: 80}}\n",
    ));
    at(
        &diagnostics,
        "spec.components[0].properties.readinessProbe",
        "unknown field",
    );
}
