//! Names and the references between components.

use super::*;

#[test]
fn duplicate_component_names() {
    let source = HELLO.replace("name: ticker", "name: greeter");
    let diagnostics = parse_err(&source);
    let error = at(
        &diagnostics,
        "spec.components[1].name",
        "duplicate component name \"greeter\" (first defined at line 7)",
    );
    assert_eq!(position(error), (18, 7));
}

#[test]
fn depends_on_must_name_other_components() {
    let source = document(
        "- name: web
  type: process
  properties: {command: [x]}
  dependsOn: [web, db, db]
",
    );
    let diagnostics = parse_err(&source);
    at(
        &diagnostics,
        "spec.components[0].dependsOn[0]",
        "cannot depend on itself",
    );
    let unknown = at(
        &diagnostics,
        "spec.components[0].dependsOn[1]",
        "unknown component \"db\"; expected one of web",
    );
    assert_eq!(position(unknown), (10, 24));
    at(
        &diagnostics,
        "spec.components[0].dependsOn[2]",
        "\"db\" is listed twice",
    );
}

#[test]
fn depends_on_cycles_are_named() {
    let source = document(
        "- name: a
  type: process
  properties: {command: [x]}
  dependsOn: [b]
- name: b
  type: process
  properties: {command: [x]}
  dependsOn: [c, a]
- name: c
  type: process
  properties: {command: [x]}
",
    );
    let diagnostics = parse_err(&source);
    assert_eq!(diagnostics.len(), 1, "{}", Diagnostics(diagnostics.clone()));
    let error = at(&diagnostics, "spec.components[0].dependsOn", "");
    assert_eq!(error.message, "dependsOn cycle: a -> b -> a");
    assert_eq!(position(error), (10, 7));
}

#[test]
fn a_malformed_component_does_not_cascade() {
    let source = document(
        "- name: db
  type: process
  properties: {command: [x]}
  traits: {type: scaler}
- name: web
  type: process
  properties: {command: [x]}
  dependsOn: [db]
",
    );
    let diagnostics = parse_err(&source);
    assert_eq!(diagnostics.len(), 1, "{}", Diagnostics(diagnostics.clone()));
    let error = at(
        &diagnostics,
        "spec.components[0].traits",
        "expected a sequence",
    );
    assert_eq!(position(error), (10, 7));
}
