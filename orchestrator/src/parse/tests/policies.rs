//! `override` policies, merged as KubeVela merges them, and workflows that only deploy.

use super::*;
use crate::model::Workload;

/// Two components; policies and a workflow are appended after them (from line 25).
const BASE: &str = "apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: shop
spec:
  components:
    - name: api
      type: webservice
      properties:
        image: busybox
        port: 8080
        env:
          - {name: MODE, value: dev}
      traits:
        - type: scaler
          properties: {replicas: 1}
        - type: resource
          properties: {cpu: 100m}
        - type: rollout
          properties: {maxSurge: 1}
    - name: worker
      type: process
      properties:
        command: [sleep, '1000']
      dependsOn: [api]
";

fn with(tail: &str) -> String {
    format!("{BASE}{tail}")
}

fn component<'a>(application: &'a Application, name: &str) -> &'a Component {
    application
        .components
        .iter()
        .find(|c| c.name == name)
        .expect("component exists")
}

#[test]
fn override_changes_replicas_and_properties() {
    let application = parse_ok(&with(
        "  policies:
    - name: production
      type: override
      properties:
        components:
          - name: api
            properties:
              image: nginx
              env: [{name: MODE, value: prod}]
            traits:
              - type: scaler
                properties: {replicas: 3}
              - type: spread
                properties: {maxSkew: 1}
",
    ));
    let api = component(&application, "api");
    assert_eq!(api.replicas, 3, "the override's scaler wins");
    let Workload::Webservice(spec) = &api.workload else {
        panic!("api stays a webservice");
    };
    assert_eq!(spec.image, "nginx");
    let env: Vec<(&str, &str)> = spec
        .env
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(env, [("MODE", "prod")], "lists are replaced, not appended");
    assert_eq!(
        spec.ports[0].port, 8080,
        "fields the patch leaves out are kept"
    );
    assert_eq!(
        api.resources.cpu_millis, 100,
        "traits the patch leaves out are kept"
    );
    assert!(
        api.placement.spread.is_some(),
        "a new trait type is appended"
    );
    assert_eq!(component(&application, "worker").replicas, 1);
    assert_eq!(
        parse_ok(&application.to_oam_yaml()),
        application,
        "the override applied twice changes nothing more"
    );
}

#[test]
fn override_without_a_name_applies_to_every_component_of_its_type() {
    let application = parse_ok(&with(
        "  policies:
    - name: everywhere
      type: override
      properties:
        components:
          - type: process
            traits:
              - type: scaler
                properties: {replicas: 4}
",
    ));
    assert_eq!(component(&application, "worker").replicas, 4);
    assert_eq!(component(&application, "api").replicas, 1);
}

#[test]
fn later_policies_win_and_disable_removes_a_trait() {
    let application = parse_ok(&with(
        "  policies:
    - name: first
      type: override
      properties:
        components:
          - name: api
            traits: [{type: scaler, properties: {replicas: 2}}]
    - name: second
      type: override
      properties:
        components:
          - name: api
            traits:
              - {type: scaler, properties: {replicas: 5}}
              - {type: resource, disable: true}
",
    ));
    let api = component(&application, "api");
    assert_eq!(api.replicas, 5);
    assert_eq!(api.resources.cpu_millis, 0, "the resource trait is gone");
    assert!(api.rollout.is_some(), "the trait after it is kept");
    assert_eq!(parse_ok(&application.to_oam_yaml()), application);
}

#[test]
fn a_null_removes_a_property() {
    let application = parse_ok(&with(
        "  policies:
    - name: quiet
      type: override
      properties:
        components:
          - name: api
            properties: {env: null}
",
    ));
    let Workload::Webservice(spec) = &component(&application, "api").workload else {
        panic!("api stays a webservice");
    };
    assert!(spec.env.is_empty());
}

#[test]
fn selector_keeps_only_the_named_components() {
    let application = parse_ok(&with(
        "  policies:
    - name: only-api
      type: override
      properties:
        selector: [api]
",
    ));
    let names: Vec<&str> = application
        .components
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["api"]);

    let diagnostics = parse_err(&with(
        "  policies:
    - name: only-worker
      type: override
      properties:
        selector: [worker, cache]
",
    ));
    let error = at(
        &diagnostics,
        "spec.policies[0].properties.selector[1]",
        "\"cache\", which is not a component",
    );
    assert_eq!(position(error), (30, 28));
    let error = at(
        &diagnostics,
        "spec.components[1].dependsOn[0]",
        "left out by the override policy's selector",
    );
    assert_eq!(position(error), (25, 19));
}

#[test]
fn a_bad_overridden_value_is_reported_where_the_policy_wrote_it() {
    let diagnostics = parse_err(&with(
        "  policies:
    - name: huge
      type: override
      properties:
        components:
          - name: api
            properties: {port: 99999}
            traits:
              - type: scaler
                properties: {replicas: -1}
              - type: expose
                properties: {porst: [80]}
",
    ));
    let error = at(
        &diagnostics,
        "spec.policies[0].properties.components[0].properties.port",
        "port",
    );
    assert_eq!(position(error), (32, 26));
    let error = at(
        &diagnostics,
        "spec.policies[0].properties.components[0].traits[0].properties.replicas",
        "replicas must be between 0",
    );
    assert_eq!(position(error), (35, 30));
    let error = at(
        &diagnostics,
        "spec.policies[0].properties.components[0].traits[1].properties.porst",
        "unknown field \"porst\"",
    );
    assert_eq!(position(error), (37, 30));
}

#[test]
fn a_trait_moved_up_by_disable_is_reported_where_it_was_written() {
    let diagnostics = parse_err(&format!(
        "{}{}",
        BASE.replace("{maxSurge: 1}", "{maxSurge: lots}"),
        "  policies:
    - name: lean
      type: override
      properties:
        components:
          - name: api
            traits: [{type: scaler, disable: true}]
",
    ));
    let error = at(
        &diagnostics,
        "spec.components[0].traits[2].properties.maxSurge",
        "invalid value",
    );
    assert_eq!(position(error), (20, 24));
}

#[test]
fn override_patches_must_name_what_exists() {
    let diagnostics = parse_err(&with(
        "  policies:
    - name: typo
      type: override
      properties:
        components:
          - name: apy
            traits: [{type: scaler, properties: {replicas: 2}}]
          - name: worker
            type: webservice
          - traits: [{properties: {replicas: 2}}]
",
    ));
    at(
        &diagnostics,
        "spec.policies[0].properties.components[0].name",
        "no component named \"apy\" to override; expected one of api, worker",
    );
    at(
        &diagnostics,
        "spec.policies[0].properties.components[1].type",
        "is of type \"process\", not \"webservice\"",
    );
    at(
        &diagnostics,
        "spec.policies[0].properties.components[2].traits[0]",
        "missing type",
    );
}

#[test]
fn deploy_only_workflows_are_accepted_with_a_note() {
    let source = with(
        "  policies:
    - name: production
      type: override
      properties:
        components:
          - name: api
            traits: [{type: scaler, properties: {replicas: 3}}]
    - name: staging
      type: override
      properties:
        components:
          - name: api
            traits: [{type: scaler, properties: {replicas: 2}}]
  workflow:
    steps:
      - name: deploy-production
        type: deploy
        properties:
          policies: [production]
      - name: apply
        type: apply-component
        properties: {component: api}
",
    );
    let parsed = parse_document(&source, "app.yaml").expect("valid");
    assert_eq!(
        component(&parsed.application, "api").replicas,
        3,
        "only the override the deploy step names applies"
    );
    assert_eq!(parsed.notes.len(), 1);
    let note = &parsed.notes[0];
    assert_eq!((note.line, note.column), (Some(39), Some(3)));
    assert!(note.message.contains("dependsOn"), "{}", note.message);
    assert!(
        note.as_note()
            .starts_with("app.yaml:39:3: note: spec.workflow:")
    );
}

#[test]
fn without_a_workflow_every_override_applies() {
    let application = parse_ok(&with(
        "  policies:
    - name: two
      type: override
      properties:
        components: [{name: api, traits: [{type: scaler, properties: {replicas: 2}}]}]
    - name: where
      type: topology
      properties: {clusters: [local]}
",
    ));
    assert_eq!(component(&application, "api").replicas, 2);
    assert_eq!(
        application.policies.len(),
        2,
        "policies are kept as written"
    );
}

#[test]
fn workflows_that_do_more_than_deploy_are_refused_by_step() {
    let diagnostics = parse_err(&with(
        "  policies:
    - name: a
      type: override
    - name: b
      type: override
  workflow:
    ref: stored
    steps:
      - {name: approve, type: suspend}
      - {name: go, type: deploy, properties: {policies: [a]}}
      - {name: other, type: deploy, properties: {policies: [b, c], auto: false}}
      - {name: mine, type: frobnicate}
",
    ));
    at(
        &diagnostics,
        "spec.workflow.ref",
        "is valid in KubeVela, not supported by gossipctl",
    );
    let error = at(
        &diagnostics,
        "spec.workflow.steps[0].type",
        "workflow step type \"suspend\" is valid in KubeVela, not supported by gossipctl",
    );
    assert_eq!(position(error), (34, 25));
    at(&diagnostics, "spec.workflow.steps[2]", "several variants");
    at(
        &diagnostics,
        "spec.workflow.steps[2].properties.policies[1]",
        "no policy named \"c\"; expected one of a, b",
    );
    at(
        &diagnostics,
        "spec.workflow.steps[2].properties.auto",
        "manual approval",
    );
    at(
        &diagnostics,
        "spec.workflow.steps[3].type",
        "unknown workflow step type \"frobnicate\"",
    );
}

#[test]
fn kubevela_vocabulary_we_do_not_run_is_named_as_such() {
    let diagnostics = parse_err(&with(
        "  policies:
    - name: gc
      type: garbage-collect
",
    ));
    at(
        &diagnostics,
        "spec.policies[0].type",
        "policy type \"garbage-collect\" is valid in KubeVela, not supported by gossipctl",
    );
    let diagnostics = parse_err(
        &BASE
            .replace("type: process", "type: cron-task")
            .replace("- type: rollout", "- type: sidecar")
            .replace(
                "image: busybox",
                "image: busybox\n        imagePullPolicy: Always",
            ),
    );
    at(
        &diagnostics,
        "spec.components[1].type",
        "component type \"cron-task\" is valid in KubeVela",
    );
    at(
        &diagnostics,
        "spec.components[0].traits[2].type",
        "trait type \"sidecar\" is valid in KubeVela",
    );
    at(
        &diagnostics,
        "spec.components[0].properties.imagePullPolicy",
        "imagePullPolicy is valid in KubeVela, not supported by gossipctl",
    );
}

#[test]
fn a_workflow_without_deploy_steps_applies_no_override() {
    let application = parse_ok(&with(
        "  policies:
    - name: production
      type: override
      properties:
        components: [{name: api, traits: [{type: scaler, properties: {replicas: 3}}]}]
  workflow:
    steps:
      - {name: api, type: apply-component, properties: {component: api}}
",
    ));
    assert_eq!(component(&application, "api").replicas, 1);
}
