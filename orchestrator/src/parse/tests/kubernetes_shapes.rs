//! The Kubernetes-shaped forms of KubeVela's traits: `resource` with `requests`/`limits`,
//! `affinity` with pod affinity terms, and `topologyspreadconstraints` with a label selector.

use super::*;
use crate::model::Resources;

fn with_trait(component_type: &str, trait_yaml: &str) -> String {
    let properties = if component_type == "process" {
        "{command: [x]}"
    } else {
        "{image: busybox}"
    };
    document(&format!(
        "- name: db
  type: process
  properties: {{command: [x]}}
- name: web
  type: {component_type}
  properties: {properties}
  traits:
{trait_yaml}"
    ))
}

#[test]
fn requests_are_reserved_and_limits_bound_containers() {
    let source = with_trait(
        "webservice",
        "    - type: resource
      properties:
        requests: {cpu: 250m, memory: 64Mi}
        limits: {cpu: 1, memory: 64Mi}
",
    );
    let application = parse_ok(&source);
    let web = &application.components[1];
    assert_eq!(
        web.resources,
        Resources {
            cpu_millis: 250,
            memory_bytes: 64 << 20
        },
        "the scheduler reserves the requests"
    );
    assert_eq!(
        web.limit(),
        Resources {
            cpu_millis: 1000,
            memory_bytes: 64 << 20
        },
        "the container may use up to its limits"
    );
    assert_eq!(parse_ok(&application.to_oam_yaml()), application);

    // Kubernetes' default: a request left out is the limit.
    let only_limits = with_trait(
        "worker",
        "    - type: resource
      properties:
        limits: {cpu: 500m}
",
    );
    let web = parse_ok(&only_limits).components.remove(1);
    assert_eq!(web.resources.cpu_millis, 500);
    assert!(web.limits.is_zero(), "the limit is the reservation");

    let a_limit_changes_the_definition = with_trait(
        "webservice",
        "    - type: resource
      properties:
        requests: {cpu: 250m, memory: 64Mi}
        limits: {cpu: 2, memory: 64Mi}
",
    );
    assert_ne!(
        parse_ok(&a_limit_changes_the_definition).components[1].fingerprint(),
        parse_ok(&source).components[1].fingerprint()
    );
}

#[test]
fn resource_mistakes_are_reported_at_their_field() {
    let diagnostics = parse_err(&with_trait(
        "webservice",
        "    - type: resource
      properties:
        requests: {cpu: 2, memory: 1Gi}
        limits: {cpu: 1, memory: lots}
",
    ));
    let low = at(
        &diagnostics,
        "spec.components[1].traits[0].properties.limits.cpu",
        "limits.cpu is less than requests.cpu",
    );
    assert_eq!(position(low), (17, 22));
    at(
        &diagnostics,
        "spec.components[1].traits[0].properties.limits.memory",
        "memory quantity",
    );

    let diagnostics = parse_err(&with_trait(
        "webservice",
        "    - type: resource
      properties: {cpu: 1, requests: {cpu: 1}}
",
    ));
    at(
        &diagnostics,
        "spec.components[1].traits[0].properties.requests",
        "cpu and memory, or requests and limits, not both",
    );

    let diagnostics = parse_err(&with_trait(
        "process",
        "    - type: resource
      properties: {requests: {cpu: 1}, limits: {cpu: 2}}
",
    ));
    at(
        &diagnostics,
        "spec.components[1].traits",
        "enforced for containers (webservice, worker) only",
    );
}

#[test]
fn kubernetes_pod_affinity_terms_name_components() {
    let source = with_trait(
        "process",
        "    - type: affinity
      properties:
        podAffinity:
          required:
            - labelSelector:
                matchLabels: {app.oam.dev/component: db}
              topologyKey: kubernetes.io/hostname
- name: cache
  type: process
  properties: {command: [x]}
  traits:
    - type: affinity
      properties:
        podAntiAffinity:
          required:
            - labelSelector:
                matchExpressions:
                  - {key: app.oam.dev/component, operator: In, values: [db, web]}
              topologyKey: kubernetes.io/hostname
",
    );
    let application = parse_ok(&source);
    assert_eq!(application.components[1].placement.colocate_with, ["db"]);
    assert_eq!(application.components[2].placement.avoid, ["db", "web"]);
}

#[test]
fn pod_affinity_beyond_components_on_a_node_is_refused() {
    let diagnostics = parse_err(&with_trait(
        "process",
        "    - type: affinity
      properties:
        podAffinity:
          required:
            - labelSelector:
                matchLabels: {app: db, app.oam.dev/component: ghost}
              topologyKey: topology.kubernetes.io/zone
              namespaces: [other]
          preferred:
            - weight: 10
              podAffinityTerm: {topologyKey: kubernetes.io/hostname}
",
    ));
    let path = "spec.components[1].traits[0].properties.podAffinity";
    at(
        &diagnostics,
        &format!("{path}.required[0].topologyKey"),
        "over topologyKey \"topology.kubernetes.io/zone\" is valid in KubeVela, not supported",
    );
    at(
        &diagnostics,
        &format!("{path}.required[0].namespaces"),
        "namespaces is valid in KubeVela, not supported",
    );
    let label = at(
        &diagnostics,
        &format!("{path}.required[0].labelSelector.matchLabels.app"),
        "selecting pods by label \"app\"",
    );
    assert_eq!(position(label), (19, 35));
    at(
        &diagnostics,
        &format!("{path}.required[0].labelSelector.matchLabels[\"app.oam.dev/component\"]"),
        "unknown component \"ghost\"",
    );
    at(
        &diagnostics,
        &format!("{path}.preferred"),
        "preferred pod (anti-)affinity is valid in KubeVela",
    );
}

#[test]
fn topology_spread_constraints_in_kubernetes_shape() {
    let source = with_trait(
        "process",
        "    - type: topologyspreadconstraints
      properties:
        constraints:
          - maxSkew: 1
            topologyKey: kubernetes.io/hostname
            whenUnsatisfiable: DoNotSchedule
            labelSelector:
              matchLabels: {app.oam.dev/component: web}
",
    );
    let spread = parse_ok(&source).components[1]
        .placement
        .spread
        .clone()
        .expect("a spread");
    assert_eq!(spread.topology_key, None, "the node itself is the domain");
    assert_eq!(spread.max_skew, 1);

    let diagnostics = parse_err(&with_trait(
        "process",
        "    - type: topologyspreadconstraints
      properties:
        constraints:
          - maxSkew: 1
            topologyKey: zone
            whenUnsatisfiable: ScheduleAnyway
            minDomains: 2
            labelSelector:
              matchLabels: {app.oam.dev/component: db}
",
    ));
    let path = "spec.components[1].traits[0].properties.constraints[0]";
    at(
        &diagnostics,
        &format!("{path}.whenUnsatisfiable"),
        "ScheduleAnyway is valid in KubeVela, not supported by gossipctl",
    );
    at(
        &diagnostics,
        &format!("{path}.minDomains"),
        "minDomains is valid in KubeVela",
    );
    at(
        &diagnostics,
        &format!("{path}.labelSelector.matchLabels[\"app.oam.dev/component\"]"),
        "may select only this component",
    );
}

#[test]
fn a_container_takes_requests_and_limits_in_its_properties() {
    let source = document(
        "- name: web
  type: webservice
  properties:
    image: busybox
    requests: {cpu: 250m, memory: 64Mi}
    limits: {cpu: 500m, memory: 128Mi}
",
    );
    let web = only_component(&source);
    assert_eq!(web.resources.cpu_millis, 250);
    assert_eq!(
        web.limit(),
        Resources {
            cpu_millis: 500,
            memory_bytes: 128 << 20
        }
    );

    let diagnostics = parse_err(&with_trait(
        "webservice",
        "    - type: resource
      properties:
        requests: {cpu: 1, ephemeral-storage: 1Gi}
",
    ));
    at(
        &diagnostics,
        "spec.components[1].traits[0].properties.requests.ephemeral-storage",
        "ephemeral-storage is valid in KubeVela, not supported by gossipctl",
    );
}
