//! The `expose` and `gateway` (`ingress`) traits.

use super::*;
use crate::services::{Protocol, ServiceType};

#[test]
fn expose_in_both_kubevela_shapes() {
    let short = only_component(&document(
        "- name: api
  type: process
  properties: {command: [x]}
  traits:
    - type: expose
      properties: {port: [8080, 9090]}
",
    ));
    let service = short.service.expect("a service");
    assert_eq!(service.kind, ServiceType::ClusterIP);
    let ports: Vec<u16> = service.ports.iter().map(|p| p.port).collect();
    assert_eq!(ports, [8080, 9090]);

    let long = only_component(&document(
        "- name: dns
  type: process
  properties: {command: [x]}
  traits:
    - type: expose
      properties:
        type: NodePort
        ports:
          - {port: 53, protocol: UDP, name: dns, nodePort: 30053}
          - 8080
",
    ));
    let service = long.service.expect("a service");
    assert_eq!(service.kind, ServiceType::NodePort);
    assert_eq!(service.ports[0].protocol, Protocol::Udp);
    assert_eq!(service.ports[0].name.as_deref(), Some("dns"));
    assert_eq!(service.ports[0].node_port, Some(30053));
    assert_eq!(service.ports[1].protocol, Protocol::Tcp);
}

#[test]
fn expose_errors_name_the_field() {
    let source = document(
        "- name: api
  type: process
  properties: {command: [x]}
  traits:
    - type: expose
      properties:
        type: LoadBalancer
        ports:
          - {port: 70000}
          - {port: 80, protocol: SCTP}
          - {port: 81, nodePort: 80}
",
    );
    let diagnostics = parse_err(&source);
    let kind = at(
        &diagnostics,
        "spec.components[0].traits[0].properties.type",
        "type LoadBalancer is valid in KubeVela, not supported by gossipctl",
    );
    assert_eq!(position(kind), (13, 13));
    let port = at(
        &diagnostics,
        "spec.components[0].traits[0].properties.ports[0].port",
        "invalid port 70000; expected 1 to 65535",
    );
    assert_eq!(position(port), (15, 18));
    at(
        &diagnostics,
        "spec.components[0].traits[0].properties.ports[1].protocol",
        "protocol SCTP is valid in KubeVela, not supported by gossipctl",
    );
    at(
        &diagnostics,
        "spec.components[0].traits[0].properties.ports[2].nodePort",
        "invalid nodePort 80; expected 30000 to 32767",
    );

    let twice = parse_err(&document(
        "- name: api
  type: process
  properties: {command: [x]}
  traits:
    - type: expose
      properties: {port: [8080, 8080]}
",
    ));
    at(
        &twice,
        "spec.components[0].traits[0].properties.port[1]",
        "port 8080 TCP is listed twice",
    );
    let cluster_node_port = parse_err(&document(
        "- name: api
  type: process
  properties: {command: [x]}
  traits:
    - type: expose
      properties: {ports: [{port: 80, nodePort: 30080}]}
",
    ));
    at(
        &cluster_node_port,
        "spec.components[0].traits[0].properties.ports[0].nodePort",
        "nodePort is only valid with type: NodePort",
    );
}

#[test]
fn gateway_and_its_older_synonym_ingress() {
    let gateway = only_component(&document(
        "- name: api
  type: process
  properties: {command: [x]}
  traits:
    - type: gateway
      properties:
        domain: api.example.com
        class: nginx
        http: {\"/\": 8080, \"/admin\": 9090}
",
    ))
    .gateway
    .expect("a gateway");
    assert_eq!(gateway.domain.as_deref(), Some("api.example.com"));
    assert_eq!(gateway.http.get("/admin"), Some(&9090));
    let ingress = only_component(&document(
        "- name: api
  type: process
  properties: {command: [x]}
  traits:
    - type: ingress
      properties: {domain: api.example.com, http: {\"/\": 8080}}
",
    ))
    .gateway
    .expect("ingress is read as a gateway");
    assert_eq!(ingress.http.get("/"), Some(&8080));

    let both = parse_err(&document(
        "- name: api
  type: process
  properties: {command: [x]}
  traits:
    - type: gateway
      properties: {http: {\"/\": 80}}
    - type: ingress
      properties: {http: {\"/\": 80}}
",
    ));
    at(
        &both,
        "spec.components[0].traits[1].type",
        "use one of gateway or ingress, once",
    );
    let bad = parse_err(&document(
        "- name: api
  type: process
  properties: {command: [x]}
  traits:
    - type: gateway
      properties: {domain: \"bad domain\", http: {\"admin\": 80}}
",
    ));
    at(
        &bad,
        "spec.components[0].traits[0].properties.domain",
        "invalid domain \"bad domain\"",
    );
    let learner = parse_err(&document(
        "- name: fl
  type: learner
  properties: {dataset: fashion-mnist}
  traits:
    - type: expose
      properties: {port: [80]}
",
    ));
    at(
        &learner,
        "spec.components[0].traits",
        "a learner cannot be exposed",
    );
}
