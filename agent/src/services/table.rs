//! Every service of the cluster and where its ready replicas are, from one agent's view.
//!
//! Pure: the same applications, status reports and members give every agent the same table
//! (only "local" differs: each agent prefers the replicas on its own node). The forwarders,
//! the names and the environment of new replicas all read it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use orchestrator::services::{NODE_PORTS, Protocol, ServicePort, ServiceType};
use orchestrator::{Component, Workload, WorkloadId};

use crate::api::NodeState;
use crate::cluster::replication::{NodeRecord, WorkloadRecord};
use crate::rollout::decide::definition;
use crate::store::StoredApp;

/// Where one replica serves one port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Backend {
    pub replica: WorkloadId,
    pub node: String,
    pub address: SocketAddr,
}

/// The ready replicas behind one port: on this node, and elsewhere where this node can reach
/// them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backends {
    pub local: Vec<Backend>,
    pub remote: Vec<Backend>,
}

impl Backends {
    /// The replicas a new connection may go to: this node's, when it has any (as
    /// Kubernetes' `internalTrafficPolicy: PreferLocal`), else every other reachable one.
    pub fn candidates(&self) -> &[Backend] {
        if self.local.is_empty() {
            &self.remote
        } else {
            &self.local
        }
    }

    fn push(&mut self, backend: Backend, local: bool) {
        if local {
            self.local.push(backend);
        } else {
            self.remote.push(backend);
        }
    }

    fn settle(&mut self) {
        for list in [&mut self.local, &mut self.remote] {
            list.sort();
            list.dedup_by(|a, b| a.replica == b.replica);
        }
    }
}

/// One port of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub spec: ServicePort,
    /// For `NodePort` services: the port every node serves it on.
    pub node_port: Option<u16>,
    pub backends: Backends,
}

/// One route of a component's `gateway`: HTTP requests for `domain` (any host when `None`)
/// whose path is `prefix` or below it go to the component's replicas on `port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub app: String,
    pub component: String,
    pub domain: Option<String>,
    pub prefix: String,
    pub port: u16,
    pub backends: Backends,
}

impl Route {
    /// Whether it takes a request for `host` (lower case, without a port) and `path`: the
    /// domain matches (`*.example.com` matches one label or more in front), and the prefix
    /// matches whole path segments, as a Kubernetes `Prefix` path does (`/api` takes `/api`
    /// and `/api/v1`, not `/apis`).
    pub fn takes(&self, host: &str, path: &str) -> bool {
        let domain = match self.domain.as_deref() {
            None => true,
            Some(wild) if wild.starts_with("*.") => host
                .strip_suffix(&wild[1..])
                .is_some_and(|front| !front.is_empty()),
            Some(domain) => domain.eq_ignore_ascii_case(host),
        };
        let prefix = self.prefix.trim_end_matches('/');
        domain
            && (prefix.is_empty()
                || path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/')))
    }

    /// How specific it is: an exact domain before a wildcard before none, then the longer
    /// prefix.
    fn specificity(&self) -> (u8, usize) {
        let domain = match self.domain.as_deref() {
            None => 0,
            Some(d) if d.starts_with("*.") => 1,
            Some(_) => 2,
        };
        (domain, self.prefix.trim_end_matches('/').len())
    }
}

/// A component with the `expose` trait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub app: String,
    pub component: String,
    pub kind: ServiceType,
    /// Its address among the node's service addresses (see [`cluster_slots`]).
    pub slot: u32,
    pub ports: Vec<Port>,
}

impl Service {
    /// `COMPONENT.APP.svc.gossip`.
    pub fn name(&self) -> String {
        format!("{}.{}.{DOMAIN}", self.component, self.app)
    }
}

/// The zone every agent answers for.
pub const DOMAIN: &str = "svc.gossip";

/// The services of the cluster, ordered by application and component, and the gateway's
/// routes, most specific first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceTable {
    pub services: Vec<Service>,
    pub routes: Vec<Route>,
}

impl ServiceTable {
    /// The route that takes a request for `host` (its port, if any, is ignored) and `path`:
    /// the most specific one; of two equally specific, the first by application and
    /// component.
    pub fn route(&self, host: &str, path: &str) -> Option<&Route> {
        let host = host
            .rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(name, _)| name)
            .to_ascii_lowercase();
        self.routes.iter().find(|r| r.takes(&host, path))
    }

    pub fn find(&self, app: &str, component: &str) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.app == app && s.component == component)
    }

    /// What a replica of `app` finds in its environment about its application's services, as
    /// Kubernetes sets `{SERVICE}_SERVICE_HOST` and `_PORT`:
    /// `GOSSIP_SERVICE_<APP>_<COMPONENT>_HOST` (the service's address on this node, from
    /// `address`) and `_PORT` (its first port), and `_PORT_<NAME>` for each named port.
    pub fn env(&self, app: &str, address: impl Fn(&Service) -> IpAddr) -> Vec<(String, String)> {
        let mut env = Vec::new();
        for service in self.services.iter().filter(|s| s.app == app) {
            let prefix = format!(
                "GOSSIP_SERVICE_{}_{}",
                env_part(&service.app),
                env_part(&service.component)
            );
            env.push((format!("{prefix}_HOST"), address(service).to_string()));
            if let Some(first) = service.ports.first() {
                env.push((format!("{prefix}_PORT"), first.spec.port.to_string()));
            }
            for port in &service.ports {
                if let Some(name) = &port.spec.name {
                    env.push((
                        format!("{prefix}_PORT_{}", env_part(name)),
                        port.spec.port.to_string(),
                    ));
                }
            }
        }
        env
    }
}

/// A DNS label as part of an environment variable name: upper case, `-` as `_`.
fn env_part(label: &str) -> String {
    label.to_ascii_uppercase().replace('-', "_")
}

/// Builds the table as agent `me` sees the cluster.
pub fn table<'a>(
    apps: &[StoredApp],
    nodes: &BTreeMap<String, (NodeState, NodeRecord)>,
    records: impl IntoIterator<Item = &'a WorkloadRecord>,
    me: &str,
    service_addresses: u32,
) -> ServiceTable {
    let node_ports = node_ports(apps);
    let slots = cluster_slots(apps, service_addresses);
    let mut services: BTreeMap<(String, String), Service> = BTreeMap::new();
    let mut routes = Vec::new();
    for stored in apps {
        let app = &stored.app.name;
        for component in &stored.app.components {
            let key = (app.clone(), component.name.clone());
            if let Some(spec) = &component.service {
                let ports = spec
                    .ports
                    .iter()
                    .map(|p| Port {
                        spec: p.clone(),
                        node_port: node_ports
                            .get(&(app.clone(), component.name.clone(), p.port, p.protocol))
                            .copied(),
                        backends: Backends::default(),
                    })
                    .collect();
                let service = Service {
                    app: app.clone(),
                    component: component.name.clone(),
                    kind: spec.kind,
                    slot: slots.get(&key).copied().unwrap_or_default(),
                    ports,
                };
                services.insert(key.clone(), service);
            }
            if let Some(gateway) = &component.gateway {
                for (prefix, port) in &gateway.http {
                    routes.push(Route {
                        app: app.clone(),
                        component: component.name.clone(),
                        domain: gateway.domain.as_ref().map(|d| d.to_ascii_lowercase()),
                        prefix: prefix.clone(),
                        port: *port,
                        backends: Backends::default(),
                    });
                }
            }
        }
    }
    let by_name: BTreeMap<&str, &StoredApp> =
        apps.iter().map(|a| (a.app.name.as_str(), a)).collect();
    for record in records {
        let served = services.contains_key(&(record.id.app.clone(), record.id.component.clone()))
            || routes
                .iter()
                .any(|r| r.app == record.id.app && r.component == record.id.component);
        if !served {
            continue;
        }
        let Some((state, node)) = nodes.get(&record.node) else {
            continue;
        };
        if !matches!(state, NodeState::Alive | NodeState::Suspect) {
            continue;
        }
        let Some(stored) = by_name.get(record.id.app.as_str()) else {
            continue;
        };
        // The definition the replica runs: during a rollout, old and new replicas both serve.
        let Some(definition) = definition(stored, &record.id.component, record.fingerprint) else {
            continue;
        };
        if !record
            .state
            .is_ready(definition.readiness_probe().is_some())
        {
            continue;
        }
        let local = record.node == me;
        let backend = |port: u16| {
            let address = reachable(definition, record, node, port, local)?;
            Some(Backend {
                replica: record.id.clone(),
                node: record.node.clone(),
                address,
            })
        };
        let key = (record.id.app.clone(), record.id.component.clone());
        if let Some(service) = services.get_mut(&key) {
            for port in &mut service.ports {
                if let Some(found) = backend(port.spec.port) {
                    port.backends.push(found, local);
                }
            }
        }
        for route in routes
            .iter_mut()
            .filter(|r| r.app == record.id.app && r.component == record.id.component)
        {
            if let Some(found) = backend(route.port) {
                route.backends.push(found, local);
            }
        }
    }
    for service in services.values_mut() {
        for port in &mut service.ports {
            port.backends.settle();
        }
    }
    for route in &mut routes {
        route.backends.settle();
    }
    // Most specific first; a stable sort keeps application order among equals.
    routes.sort_by_key(|r| std::cmp::Reverse(r.specificity()));
    ServiceTable {
        services: services.into_values().collect(),
        routes,
    }
}

/// Where this agent reaches `record`'s replica on `port`: a process on its node's address; a
/// container on its own address from its node, and from elsewhere on its node's address at
/// the host port it publishes `port` on (a bridge address is reachable only from its node).
fn reachable(
    definition: &Component,
    record: &WorkloadRecord,
    node: &NodeRecord,
    port: u16,
    local: bool,
) -> Option<SocketAddr> {
    let host = node.node_ip.unwrap_or(node.address.ip());
    match &definition.workload {
        Workload::Process(_) | Workload::Learner(_) => Some(SocketAddr::new(host, port)),
        Workload::Webservice(spec) | Workload::Worker(spec) => {
            if local && let Some(own) = record.address {
                return Some(SocketAddr::new(own, port));
            }
            spec.ports
                .iter()
                .find(|p| p.port == port && p.expose)
                .map(|p| SocketAddr::new(host, p.host_port.unwrap_or(p.port)))
        }
    }
}

/// The node port of every `NodePort` service port: the one it names, or one chosen from
/// [`NODE_PORTS`] (see [`allocate`]). Of two services naming one port, the first (by
/// application and component name) has it and the other is served on no node port, as
/// Kubernetes refuses the second ("port is already allocated"). A chosen port could move when
/// an application with a colliding hash is deployed: name it where clients outside the cluster
/// depend on it.
pub fn node_ports(apps: &[StoredApp]) -> BTreeMap<(String, String, u16, Protocol), u16> {
    let mut wanted = Vec::new();
    for stored in apps {
        for component in &stored.app.components {
            let Some(spec) = component.service.as_ref() else {
                continue;
            };
            if spec.kind != ServiceType::NodePort {
                continue;
            }
            for port in &spec.ports {
                let key = (
                    stored.app.name.clone(),
                    component.name.clone(),
                    port.port,
                    port.protocol,
                );
                let named = port.node_port.map(|p| u32::from(p - NODE_PORTS.start()));
                wanted.push(((port.protocol, key), named));
            }
        }
    }
    let span = u32::from(NODE_PORTS.end() - NODE_PORTS.start()) + 1;
    allocate(wanted, span)
        .into_iter()
        .map(|((_, key), slot)| (key, NODE_PORTS.start() + slot as u16))
        .collect()
}

/// Each service's slot in the service network (see [`super::network::ServiceNet`]).
pub fn cluster_slots(apps: &[StoredApp], size: u32) -> BTreeMap<(String, String), u32> {
    let wanted = apps
        .iter()
        .flat_map(|stored| {
            stored
                .app
                .components
                .iter()
                .filter(|c| c.service.is_some())
                .map(|c| (((), (stored.app.name.clone(), c.name.clone())), None))
        })
        .collect();
    allocate(wanted, size.max(1))
        .into_iter()
        .map(|((_, key), slot)| (key, slot))
        .collect()
}

/// Hands out numbers below `span`, one per key, the same on every agent: a key's own number
/// where it names one (the first key to name a number has it), else the first free number at
/// or after a hash of the key. Keys are `(space, name)`: numbers are distinct within a space.
fn allocate<S: Ord + Copy, K: Ord + std::fmt::Debug>(
    mut wanted: Vec<((S, K), Option<u32>)>,
    span: u32,
) -> BTreeMap<(S, K), u32> {
    wanted.sort();
    let mut taken: BTreeSet<(S, u32)> = BTreeSet::new();
    let mut allocated = BTreeMap::new();
    let mut unnamed = Vec::new();
    for ((space, key), named) in wanted {
        match named {
            Some(number) => {
                if taken.insert((space, number)) {
                    allocated.insert((space, key), number);
                }
            }
            None => unnamed.push((space, key)),
        }
    }
    for (space, key) in unnamed {
        let start =
            (xxhash_rust::xxh3::xxh3_64(format!("{key:?}").as_bytes()) % u64::from(span)) as u32;
        let free = (0..span)
            .map(|step| (start + step) % span)
            .find(|number| !taken.contains(&(space, *number)));
        if let Some(number) = free {
            taken.insert((space, number));
            allocated.insert((space, key), number);
        }
    }
    allocated
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::WorkloadState;
    use orchestrator::parse_application;

    fn stored(yaml: &str) -> StoredApp {
        StoredApp::first(parse_application(yaml, "app.yaml").expect("valid"), 1)
    }

    fn node(name: &str, ip: &str) -> (String, (NodeState, NodeRecord)) {
        let record = NodeRecord {
            info: orchestrator::plan::NodeInfo {
                name: name.to_string(),
                labels: Default::default(),
                capacity: Default::default(),
                runtimes: Default::default(),
                cordoned: false,
            },
            address: format!("{ip}:7946").parse().unwrap(),
            version: "test".into(),
            left: false,
            node_ip: None,
        };
        (name.to_string(), (NodeState::Alive, record))
    }

    fn report(app: &StoredApp, replica: u32, node: &str, state: WorkloadState) -> WorkloadRecord {
        WorkloadRecord {
            id: WorkloadId {
                app: app.app.name.clone(),
                component: "api".into(),
                replica,
            },
            node: node.into(),
            state,
            restarts: 0,
            message: String::new(),
            pid: None,
            fingerprint: app.app.components[0].fingerprint(),
            learner: None,
            since_ms: 1,
            last_exit: String::new(),
            address: None,
        }
    }

    const API: &str = r#"
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: shop}
spec:
  components:
    - name: api
      type: process
      properties: {command: ["true"]}
      traits:
        - type: scaler
          properties: {replicas: 3}
        - type: expose
          properties:
            type: NodePort
            ports: [{port: 8080, name: http}, {port: 9090, nodePort: 31000}]
"#;

    #[test]
    fn ready_replicas_are_backends_and_this_nodes_come_first() {
        let app = stored(API);
        let nodes: BTreeMap<_, _> = [
            node("a", "10.0.0.1"),
            node("b", "10.0.0.2"),
            node("c", "10.0.0.3"),
        ]
        .into_iter()
        .collect();
        let records = [
            report(&app, 0, "a", WorkloadState::Running),
            report(&app, 1, "b", WorkloadState::Starting),
            report(&app, 2, "c", WorkloadState::Running),
        ];
        let seen_from_b = table(std::slice::from_ref(&app), &nodes, &records, "b", 1000);
        let service = seen_from_b.find("shop", "api").expect("the service");
        assert_eq!(service.name(), "api.shop.svc.gossip");
        let http = &service.ports[0];
        assert!(
            http.backends.local.is_empty(),
            "b's replica is not ready yet"
        );
        let addresses: Vec<String> = http
            .backends
            .candidates()
            .iter()
            .map(|b| b.address.to_string())
            .collect();
        assert_eq!(addresses, ["10.0.0.1:8080", "10.0.0.3:8080"]);
        assert_eq!(service.ports[1].node_port, Some(31000));
        assert!(NODE_PORTS.contains(&http.node_port.expect("a chosen node port")));

        let seen_from_a = table(std::slice::from_ref(&app), &nodes, &records, "a", 1000);
        let local = &seen_from_a.find("shop", "api").unwrap().ports[0];
        assert_eq!(
            local.backends.candidates().len(),
            1,
            "a prefers its own replica"
        );
        assert_eq!(local.backends.candidates()[0].node, "a");

        // A dead node's replicas stop being backends at once.
        let mut without_c = nodes.clone();
        without_c.get_mut("c").unwrap().0 = NodeState::Dead;
        let after = table(std::slice::from_ref(&app), &without_c, &records, "b", 1000);
        let left: Vec<&str> = after.find("shop", "api").unwrap().ports[0]
            .backends
            .candidates()
            .iter()
            .map(|b| b.node.as_str())
            .collect();
        assert_eq!(left, ["a"]);

        let env = seen_from_b.env("shop", |_| "127.0.2.1".parse().unwrap());
        assert_eq!(
            env,
            [
                (
                    "GOSSIP_SERVICE_SHOP_API_HOST".to_string(),
                    "127.0.2.1".to_string()
                ),
                (
                    "GOSSIP_SERVICE_SHOP_API_PORT".to_string(),
                    "8080".to_string()
                ),
                (
                    "GOSSIP_SERVICE_SHOP_API_PORT_HTTP".to_string(),
                    "8080".to_string()
                ),
            ]
        );
        assert!(
            seen_from_b
                .env("other", |_| "127.0.2.1".parse().unwrap())
                .is_empty()
        );
    }

    #[test]
    fn gateway_routes_match_host_then_whole_path_segments() {
        let route = |domain: Option<&str>, prefix: &str, component: &str| Route {
            app: "shop".into(),
            component: component.into(),
            domain: domain.map(str::to_string),
            prefix: prefix.into(),
            port: 80,
            backends: Backends::default(),
        };
        let mut routes = vec![
            route(None, "/", "fallback"),
            route(Some("api.example.com"), "/", "api"),
            route(Some("api.example.com"), "/admin", "admin"),
            route(Some("*.example.com"), "/", "wild"),
        ];
        routes.sort_by_key(|r| std::cmp::Reverse(r.specificity()));
        let table = ServiceTable {
            services: vec![],
            routes,
        };
        let to = |host: &str, path: &str| table.route(host, path).map(|r| r.component.as_str());
        assert_eq!(to("api.example.com", "/admin/users"), Some("admin"));
        assert_eq!(to("API.example.com:8088", "/admin"), Some("admin"));
        assert_eq!(to("api.example.com", "/administrator"), Some("api"));
        assert_eq!(to("www.example.com", "/admin"), Some("wild"));
        assert_eq!(to("example.com", "/"), Some("fallback"));
        assert_eq!(to("10.0.0.1", "/anything"), Some("fallback"));
        let strict = ServiceTable {
            services: vec![],
            routes: vec![route(Some("api.example.com"), "/v1", "api")],
        };
        assert!(strict.route("api.example.com", "/v2").is_none());
        assert!(strict.route("other.example.com", "/v1").is_none());
    }

    #[test]
    fn chosen_node_ports_are_stable_distinct_and_avoid_named_ones() {
        let many: Vec<StoredApp> = (0..50)
            .map(|i| stored(&API.replace("name: shop", &format!("name: shop-{i}"))))
            .collect();
        let ports = node_ports(&many);
        assert_eq!(
            ports.len(),
            51,
            "50 chosen ports, and 31000 for the first that names it"
        );
        assert_eq!(
            ports[&("shop-0".to_string(), "api".to_string(), 9090, Protocol::Tcp)],
            31000
        );
        let distinct: BTreeSet<_> = ports.values().collect();
        assert_eq!(
            distinct.len(),
            51,
            "every chosen port differs from the others and 31000"
        );
        let mut reversed = many.clone();
        reversed.reverse();
        assert_eq!(node_ports(&reversed), ports, "independent of order");
        let slots = cluster_slots(&many, 64);
        assert_eq!(
            slots.values().collect::<BTreeSet<_>>().len(),
            50,
            "distinct addresses"
        );
        assert!(slots.values().all(|slot| *slot < 64));
        assert_eq!(cluster_slots(&reversed, 64), slots);
    }
}
