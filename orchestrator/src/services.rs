//! Components as services: the `expose` trait (a forwarder on every node, balancing across
//! the component's ready replicas) and the `gateway` trait (HTTP routes by host and path), in
//! KubeVela's shapes. `ingress` is read as `gateway`'s older synonym.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::diagnostics::Report;
use crate::names::check_dns_label;
use crate::path::FieldPath;

/// The node ports a `NodePort` service may use, as in Kubernetes.
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// How a service is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ServiceType {
    /// On every node's service address, at the service's port: inside the cluster.
    ClusterIP,
    /// As `ClusterIP`, and on every node's own address at the node port: from outside.
    NodePort,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

/// One port of a service: the port it is reached at, which is also the port its replicas
/// listen on (KubeVela's `targetPort: port`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    pub port: u16,
    #[serde(default)]
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// For `NodePort`: the port on every node; chosen from [`NODE_PORTS`] when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<u16>,
}

/// The `expose` trait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    #[serde(rename = "type")]
    pub kind: ServiceType,
    pub ports: Vec<ServicePort>,
}

/// The `gateway` trait: HTTP requests for `domain` (any host when left out) whose path starts
/// with a route's prefix go to the component's replicas on that route's port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gateway {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Path prefix -> the replicas' port.
    pub http: BTreeMap<String, u16>,
    /// KubeVela's ingress class; kept, since every agent runs the same gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "expose properties: a mapping with port, ports, type and annotations"
)]
struct RawExpose {
    port: Option<Vec<Value>>,
    ports: Option<Vec<Value>>,
    #[serde(rename = "type")]
    kind: Option<String>,
    annotations: Option<BTreeMap<String, String>>,
    match_labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a service port: a mapping with port, protocol, name and nodePort"
)]
struct RawServicePort {
    port: Value,
    protocol: Option<String>,
    name: Option<String>,
    node_port: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "gateway properties: a mapping with domain, http, class and classInSpec"
)]
struct RawGateway {
    domain: Option<String>,
    http: Option<BTreeMap<String, Value>>,
    class: Option<String>,
    class_in_spec: Option<bool>,
    secret_name: Option<String>,
    gateway_host: Option<String>,
    path_type: Option<String>,
    name: Option<String>,
}

/// A port number at `path`: 1 to 65535.
fn port_number(value: &Value, path: &FieldPath, report: &mut Report) -> Option<u16> {
    match value.as_i64().map(u16::try_from) {
        Some(Ok(port)) if port > 0 => Some(port),
        _ => {
            let written = serde_yaml::to_string(value).unwrap_or_default();
            report.error(
                path,
                format!("invalid port {}; expected 1 to 65535", written.trim_end()),
            );
            None
        }
    }
}

/// Decodes the `expose` trait's properties at `path`.
pub(crate) fn decode_expose(
    properties: Value,
    path: &FieldPath,
    report: &mut Report,
) -> Option<Service> {
    let raw = report.decode::<RawExpose>(properties, path)?;
    let _ = (raw.annotations, raw.match_labels);
    let kind = match raw.kind.as_deref() {
        None | Some("ClusterIP") => Some(ServiceType::ClusterIP),
        Some("NodePort") => Some(ServiceType::NodePort),
        Some(other @ ("LoadBalancer" | "ExternalName")) => {
            report.error(
                &path.key("type"),
                format!(
                    "type {other} is valid in KubeVela, not supported by gossipctl; expected ClusterIP or NodePort"
                ),
            );
            None
        }
        Some(other) => {
            report.error(
                &path.key("type"),
                format!("unknown service type {other:?}; expected ClusterIP or NodePort"),
            );
            None
        }
    };
    let mut ports = Vec::new();
    let mut valid = true;
    let field = if raw.port.is_some() { "port" } else { "ports" };
    match (raw.port, raw.ports) {
        (Some(_), Some(_)) => {
            report.error(
                &path.key("port"),
                "set either port (a list of numbers) or ports, not both",
            );
            valid = false;
        }
        (None, None) => {
            report.error(
                path,
                "missing ports; expected port: [8080] or ports: [{port: 8080}]",
            );
            valid = false;
        }
        (Some(list), None) => {
            for (index, value) in list.iter().enumerate() {
                match port_number(value, &path.key("port").index(index), report) {
                    Some(port) => ports.push(ServicePort {
                        port,
                        protocol: Protocol::Tcp,
                        name: None,
                        node_port: None,
                    }),
                    None => valid = false,
                }
            }
        }
        (None, Some(list)) => {
            for (index, value) in list.into_iter().enumerate() {
                let entry_path = path.key("ports").index(index);
                match decode_service_port(value, &entry_path, report) {
                    Some(port) => ports.push(port),
                    None => valid = false,
                }
            }
        }
    }
    let kind = kind?;
    if !valid {
        return None;
    }
    let ports_path = path.key(field);
    if ports.is_empty() {
        report.error(&ports_path, "a service needs at least one port");
        return None;
    }
    let mut seen = BTreeSet::new();
    for (index, port) in ports.iter().enumerate() {
        if !seen.insert((port.port, port.protocol)) {
            report.error(
                &ports_path.index(index),
                format!(
                    "port {} {} is listed twice",
                    port.port,
                    port.protocol.name()
                ),
            );
            return None;
        }
        if port.node_port.is_some() && kind != ServiceType::NodePort {
            report.error(
                &path.key("ports").index(index).key("nodePort"),
                "nodePort is only valid with type: NodePort",
            );
            return None;
        }
    }
    Some(Service { kind, ports })
}

fn decode_service_port(value: Value, path: &FieldPath, report: &mut Report) -> Option<ServicePort> {
    // A bare number is the port, as in `port: [8080]`.
    if value.is_number() {
        let port = port_number(&value, path, report)?;
        return Some(ServicePort {
            port,
            protocol: Protocol::Tcp,
            name: None,
            node_port: None,
        });
    }
    let raw = report.decode::<RawServicePort>(value, path)?;
    let port = port_number(&raw.port, &path.key("port"), report);
    let protocol = match raw.protocol.as_deref() {
        None | Some("TCP") => Some(Protocol::Tcp),
        Some("UDP") => Some(Protocol::Udp),
        Some("SCTP") => {
            report.error(
                &path.key("protocol"),
                "protocol SCTP is valid in KubeVela, not supported by gossipctl; expected TCP or UDP",
            );
            None
        }
        Some(other) => {
            report.error(
                &path.key("protocol"),
                format!("unknown protocol {other:?}; expected TCP or UDP"),
            );
            None
        }
    };
    let name_ok = raw
        .name
        .as_ref()
        .is_none_or(|name| report.check(&path.key("name"), check_dns_label(name)));
    let node_port = match &raw.node_port {
        None => Some(None),
        Some(value) => {
            let at = path.key("nodePort");
            match value.as_i64().map(u16::try_from) {
                Some(Ok(n)) if NODE_PORTS.contains(&n) => Some(Some(n)),
                _ => {
                    let written = serde_yaml::to_string(value).unwrap_or_default();
                    report.error(
                        &at,
                        format!(
                            "invalid nodePort {}; expected {} to {}",
                            written.trim_end(),
                            NODE_PORTS.start(),
                            NODE_PORTS.end()
                        ),
                    );
                    None
                }
            }
        }
    };
    if !name_ok {
        return None;
    }
    Some(ServicePort {
        port: port?,
        protocol: protocol?,
        name: raw.name,
        node_port: node_port?,
    })
}

/// Decodes the `gateway` (or `ingress`) trait's properties at `path`.
pub(crate) fn decode_gateway(
    properties: Value,
    path: &FieldPath,
    report: &mut Report,
) -> Option<Gateway> {
    let raw = report.decode::<RawGateway>(properties, path)?;
    let _ = (raw.class_in_spec, raw.path_type, raw.name);
    for (field, value) in [
        ("secretName", &raw.secret_name),
        ("gatewayHost", &raw.gateway_host),
    ] {
        if value.is_some() {
            report.error(
                &path.key(field),
                format!("{field} is valid in KubeVela, not supported by gossipctl (the gateway serves plain HTTP)"),
            );
            return None;
        }
    }
    if let Some(domain) = &raw.domain {
        let valid = !domain.is_empty()
            && domain.len() <= 253
            && domain
                .split('.')
                .all(|label| check_dns_label(label).is_ok() || label == "*");
        if !valid {
            report.error(
                &path.key("domain"),
                format!("invalid domain {domain:?}; expected a DNS name such as api.example.com"),
            );
            return None;
        }
    }
    let Some(routes) = raw.http else {
        report.error(path, "missing http; expected http: {\"/\": 8080}");
        return None;
    };
    if routes.is_empty() {
        report.error(&path.key("http"), "http needs at least one route");
        return None;
    }
    let mut http = BTreeMap::new();
    let mut valid = true;
    for (prefix, port) in routes {
        let at = path.key("http").key(&prefix);
        if !prefix.starts_with('/') {
            report.error(
                &at,
                format!("invalid path {prefix:?}; a route is a path prefix starting with /"),
            );
            valid = false;
            continue;
        }
        match port_number(&port, &at, report) {
            Some(port) => {
                http.insert(prefix, port);
            }
            None => valid = false,
        }
    }
    valid.then_some(Gateway {
        domain: raw.domain,
        http,
        class: raw.class,
    })
}
