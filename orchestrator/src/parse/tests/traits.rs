//! Traits: scaler, affinity, spread, resource.

use super::*;
use crate::model::{MatchExpression, Operator, PreferredTerm, Resources, Spread};

#[test]
fn scaler_trait() {
    let scaled = |replicas: &str| {
        document(&format!(
            "- name: web\n  type: process\n  properties: {{command: [x]}}\n  traits:\n    - type: scaler\n      properties: {{replicas: {replicas}}}\n"
        ))
    };
    assert_eq!(only_component(&scaled("0")).replicas, 0);
    assert_eq!(only_component(&scaled("10000")).replicas, 10_000);
    for bad in ["10001", "-1"] {
        let diagnostics = parse_err(&scaled(bad));
        let error = at(
            &diagnostics,
            "spec.components[0].traits[0].properties.replicas",
            "replicas must be between 0 and 10000",
        );
        assert_eq!(position(error), (12, 24));
    }
    let diagnostics = parse_err(&scaled("two"));
    at(
        &diagnostics,
        "spec.components[0].traits[0].properties.replicas",
        "invalid type: string \"two\"",
    );
}

#[test]
fn unknown_and_duplicate_traits() {
    let source = document(
        "- name: web
  type: process
  properties: {command: [x]}
  traits:
    - type: autoscaler
    - type: scaler
      properties: {replicas: 2}
    - type: scaler
      properties: {replicas: 3}
",
    );
    let diagnostics = parse_err(&source);
    let unknown = at(&diagnostics, "spec.components[0].traits[0].type", "");
    assert_eq!(
        unknown.message,
        "unknown trait type \"autoscaler\"; expected one of scaler, affinity, spread, \
         topologyspreadconstraints, resource, rollout, expose, gateway, ingress"
    );
    assert_eq!(position(unknown), (11, 11));
    let duplicate = at(
        &diagnostics,
        "spec.components[0].traits[2].type",
        "duplicate trait \"scaler\"",
    );
    assert!(
        duplicate.message.contains("first defined at line 12"),
        "{duplicate}"
    );
}

#[test]
fn affinity_trait_in_kubevela_shape() {
    let source = document(
        "- name: db
  type: process
  properties: {command: [x]}
- name: web
  type: process
  properties: {command: [x]}
  traits:
    - type: affinity
      properties:
        nodeSelector: {kubernetes.io/arch: amd64}
        nodeAffinity:
          required:
            nodeSelectorTerms:
              - matchExpressions:
                  - {key: topology.kubernetes.io/zone, operator: In, values: [a, b]}
                  - {key: gpu, operator: DoesNotExist}
          preferred:
            - weight: 50
              preference:
                matchExpressions: [{key: disk, operator: NotIn, values: [hdd]}]
        podAffinity: {components: [db]}
- name: cache
  type: process
  properties: {command: [x]}
  traits:
    - type: affinity
      properties:
        podAntiAffinity: {components: [db, web]}
",
    );
    let application = parse_ok(&source);
    let web = &application.components[1].placement;
    assert_eq!(web.node_selector["kubernetes.io/arch"], "amd64");
    assert_eq!(
        web.required_terms,
        [vec![
            MatchExpression {
                key: "topology.kubernetes.io/zone".into(),
                operator: Operator::In,
                values: vec!["a".into(), "b".into()],
            },
            MatchExpression {
                key: "gpu".into(),
                operator: Operator::DoesNotExist,
                values: vec![],
            },
        ]]
    );
    assert_eq!(
        web.preferred,
        [PreferredTerm {
            weight: 50,
            expressions: vec![MatchExpression {
                key: "disk".into(),
                operator: Operator::NotIn,
                values: vec!["hdd".into()],
            }],
        }]
    );
    assert_eq!(web.colocate_with, ["db"]);
    assert_eq!(application.components[2].placement.avoid, ["db", "web"]);
}

#[test]
fn affinity_errors() {
    let source = document(
        "- name: web
  type: process
  properties: {command: [x]}
  traits:
    - type: affinity
      properties:
        nodeSelector: {\"bad key\": x}
        nodeAffinity:
          required:
            nodeSelectorTerms:
              - matchExpressions:
                  - {key: zone, operator: In}
                  - {key: gpu, operator: Exists, values: [yes]}
                  - {key: ssd, operator: Maybe}
          preferred:
            - {weight: 0, preference: {matchExpressions: [{key: a, operator: Exists}]}}
        podAffinity: {components: [web, ghost]}
",
    );
    let diagnostics = parse_err(&source);
    let properties = "spec.components[0].traits[0].properties";
    at(
        &diagnostics,
        &format!("{properties}.nodeSelector[\"bad key\"]"),
        "invalid label key \"bad key\"",
    );
    let expressions =
        format!("{properties}.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions");
    let in_without_values = at(
        &diagnostics,
        &format!("{expressions}[0].values"),
        "operator In needs at least one value",
    );
    // `values` is absent: reported where the expression starts.
    assert_eq!(position(in_without_values), (18, 25));
    at(
        &diagnostics,
        &format!("{expressions}[1].values"),
        "operator Exists takes no values",
    );
    at(
        &diagnostics,
        &format!("{expressions}[2].operator"),
        "expected one of In, NotIn, Exists, DoesNotExist",
    );
    at(
        &diagnostics,
        &format!("{properties}.nodeAffinity.preferred[0].weight"),
        "weight must be between 1 and 100",
    );
    at(
        &diagnostics,
        &format!("{properties}.podAffinity.components[0]"),
        "names the component itself",
    );
    let ghost = at(
        &diagnostics,
        &format!("{properties}.podAffinity.components[1]"),
        "unknown component \"ghost\"",
    );
    assert!(ghost.message.contains("expected one of web"));
    assert_eq!(position(ghost), (23, 45));
}

#[test]
fn spread_traits() {
    let spread = |trait_yaml: &str| {
        document(&format!(
            "- name: web\n  type: process\n  properties: {{command: [x]}}\n  traits:\n    - {trait_yaml}\n"
        ))
    };
    let default = Spread {
        topology_key: None,
        max_skew: 1,
    };
    assert_eq!(
        only_component(&spread("type: spread")).placement.spread,
        Some(default.clone())
    );
    assert_eq!(
        only_component(&spread("{type: spread, properties: {}}"))
            .placement
            .spread,
        Some(default)
    );
    let zoned = Spread {
        topology_key: Some("zone".into()),
        max_skew: 2,
    };
    let written = "{type: spread, properties: {topologyKey: zone, maxSkew: 2}}";
    assert_eq!(
        only_component(&spread(written)).placement.spread,
        Some(zoned.clone())
    );
    let kubevela = "{type: topologyspreadconstraints, properties: {constraints: [{topologyKey: zone, maxSkew: 2}]}}";
    assert_eq!(
        only_component(&spread(kubevela)).placement.spread,
        Some(zoned)
    );

    let two = "{type: topologyspreadconstraints, properties: {constraints: [{maxSkew: 1}, {maxSkew: 2}]}}";
    let diagnostics = parse_err(&spread(two));
    at(
        &diagnostics,
        "spec.components[0].traits[0].properties.constraints[1]",
        "only one constraint is supported",
    );
    let diagnostics = parse_err(&spread("{type: spread, properties: {maxSkew: 0}}"));
    at(
        &diagnostics,
        "spec.components[0].traits[0].properties.maxSkew",
        "maxSkew must be at least 1",
    );
}

#[test]
fn resource_trait() {
    let resource = |properties: &str| {
        document(&format!(
            "- name: web\n  type: process\n  properties: {{command: [x]}}\n  traits:\n    - type: resource\n      properties: {properties}\n"
        ))
    };
    let component = only_component(&resource("{cpu: \"0.5\", memory: 256Mi}"));
    assert_eq!(
        component.resources,
        Resources {
            cpu_millis: 500,
            memory_bytes: 256 << 20
        }
    );
    assert_eq!(
        only_component(&resource("{cpu: 2}")).resources.cpu_millis,
        2000
    );
    assert_eq!(
        only_component(&resource("{memory: 1G}"))
            .resources
            .memory_bytes,
        1_000_000_000
    );

    let diagnostics = parse_err(&resource("{cpu: 0, memory: -1Gi}"));
    let path = "spec.components[0].traits[0].properties";
    at(
        &diagnostics,
        &format!("{path}.cpu"),
        "cpu must be greater than zero",
    );
    at(&diagnostics, &format!("{path}.memory"), "negative");
    let diagnostics = parse_err(&resource("{cpu: lots}"));
    let error = at(
        &diagnostics,
        &format!("{path}.cpu"),
        "expected cores such as \"0.5\"",
    );
    assert_eq!(position(error), (12, 24));
    let diagnostics = parse_err(&resource("{}"));
    at(&diagnostics, path, "sets neither cpu nor memory");
}

#[test]
fn rollout_reads_counts_and_percentages() {
    let component = only_component(&document(
        "- name: web
  type: process
  properties: {command: [x]}
  traits:
    - type: scaler
      properties: {replicas: 8}
    - type: rollout
      properties:
        maxUnavailable: 25%
        maxSurge: 2
        minReadySeconds: 5
        progressDeadlineSeconds: 60
",
    ));
    let policy = component.rollout_policy();
    assert_eq!(
        (
            policy.max_unavailable,
            policy.max_surge,
            policy.min_ready_seconds,
            policy.progress_deadline_seconds
        ),
        (2, 2, 5, 60)
    );
    let plain = only_component(&document(
        "- name: web\n  type: webservice\n  properties: {image: nginx}\n",
    ));
    let defaults = plain.rollout_policy();
    assert_eq!(
        (
            defaults.max_unavailable,
            defaults.max_surge,
            defaults.progress_deadline_seconds
        ),
        (1, 1, 120)
    );
}

#[test]
fn rollout_mistakes_are_reported_at_their_field() {
    let diagnostics = parse_err(&document(
        "- name: a
  type: process
  properties: {command: [x]}
  traits:
    - type: rollout
      properties:
        maxUnavailable: 150%
        maxSurge: -1
        minReadySeconds: 30
        progressDeadlineSeconds: 0
- name: b
  type: process
  properties: {command: [x]}
  traits:
    - type: rollout
      properties: {maxUnavailable: 0, maxSurge: 0%}
- name: c
  type: process
  properties: {command: [x]}
  traits:
    - type: rollout
      properties: {minReadySeconds: 30, progressDeadlineSeconds: 20, maxUnavailible: 1}
",
    ));
    let trait_path = |c: usize| format!("spec.components[{c}].traits[0].properties");
    let unavailable = at(
        &diagnostics,
        &format!("{}.maxUnavailable", trait_path(0)),
        "expected a number of replicas (0 to 10000) or a percentage such as \"25%\"",
    );
    assert_eq!(position(unavailable), (13, 13));
    at(
        &diagnostics,
        &format!("{}.maxSurge", trait_path(0)),
        "invalid value -1",
    );
    at(
        &diagnostics,
        &format!("{}.progressDeadlineSeconds", trait_path(0)),
        "expected an integer from 1 to 86400",
    );
    at(
        &diagnostics,
        &format!("{}.maxSurge", trait_path(1)),
        "cannot both be 0",
    );
    at(
        &diagnostics,
        &format!("{}.maxUnavailible", trait_path(2)),
        "unknown field",
    );
}
