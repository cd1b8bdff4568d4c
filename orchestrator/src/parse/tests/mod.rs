//! One test per rule: each asserts the path, the position and the key words of the message.

mod document;
mod kubernetes_shapes;
mod policies;
mod probes;
mod references;
mod services;
mod traits;
mod workloads;

use super::*;
use crate::model::Component;

const HELLO: &str = r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: hello
spec:
  components:
    - name: greeter
      type: process
      properties:
        command: ["sh", "-c", "while true; do echo hello from $GOSSIP_COMPONENT/$GOSSIP_REPLICA; sleep 1; done"]
        env:
          - name: GREETING
            value: hello
      traits:
        - type: scaler
          properties:
            replicas: 2
    - name: ticker
      type: process
      properties:
        command: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 2; done"]
        restart: OnFailure
      dependsOn: [greeter]
      traits:
        - type: resource
          properties:
            cpu: 100m
            memory: 16Mi
"#;

/// The lines every document in these tests starts with; components follow from line 7.
const HEADER: &str = "apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: demo
spec:
  components:
";

/// A document whose `spec.components` is `components`, written from column 1 and shifted four
/// columns right: line `n` of `components` is line `n + 6` of the document, column `c` is `c + 4`.
fn document(components: &str) -> String {
    let mut source = HEADER.to_owned();
    for line in components.lines() {
        source.push_str("    ");
        source.push_str(line);
        source.push('\n');
    }
    source
}

fn parse_ok(source: &str) -> Application {
    match parse_application(source, "app.yaml") {
        Ok(application) => application,
        Err(diagnostics) => panic!("expected a valid application, got:\n{diagnostics}"),
    }
}

fn parse_err(source: &str) -> Vec<Diagnostic> {
    match parse_application(source, "app.yaml") {
        Ok(application) => panic!("expected errors, got {application:#?}"),
        Err(diagnostics) => diagnostics.0,
    }
}

/// The only diagnostic for `path`, which must exist; its message must contain `words`.
fn at<'a>(diagnostics: &'a [Diagnostic], path: &str, words: &str) -> &'a Diagnostic {
    let matching: Vec<_> = diagnostics.iter().filter(|d| d.path == path).collect();
    let listing = Diagnostics(diagnostics.to_vec());
    assert_eq!(
        matching.len(),
        1,
        "expected one diagnostic at {path:?} in:\n{listing}"
    );
    let found = matching[0];
    assert!(
        found.message.contains(words),
        "expected {words:?} at {path:?} in:\n{listing}"
    );
    found
}

fn position(diagnostic: &Diagnostic) -> (usize, usize) {
    (diagnostic.line.unwrap_or(0), diagnostic.column.unwrap_or(0))
}

fn only_component(source: &str) -> Component {
    let mut application = parse_ok(source);
    assert_eq!(application.components.len(), 1);
    application.components.remove(0)
}
