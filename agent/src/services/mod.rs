//! Services between components: a component with the `expose` trait is served by every agent,
//! at its own address in the node's service network and, for `NodePort`, on the node's address,
//! balancing across its ready replicas; its name resolves on every agent.
//!
//! [`table`] decides (pure), [`network`] says where to listen (pure), [`forward`] and [`dns`]
//! move the bytes.

pub mod dns;
pub mod forward;
pub mod gateway;
pub mod network;
mod splice;
pub mod table;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::api::{EndpointView, ServicePortView, ServiceView};
use forward::Traffic;
use network::Network;
use table::ServiceTable;

/// This agent's services: the current table, and what its forwarders carried.
pub struct Services {
    pub network: Network,
    /// Where this agent answers names, when it does.
    pub names: Option<SocketAddr>,
    /// Where this agent serves the HTTP gateway, when it does.
    pub gateway: Option<SocketAddr>,
    table: watch::Sender<Arc<ServiceTable>>,
    pub traffic: Arc<Traffic>,
}

impl Services {
    pub fn new(network: Network, names: Option<SocketAddr>, gateway: Option<SocketAddr>) -> Self {
        Services {
            network,
            names,
            gateway,
            table: watch::Sender::new(Arc::default()),
            traffic: Arc::default(),
        }
    }

    pub fn current(&self) -> Arc<ServiceTable> {
        self.table.borrow().clone()
    }

    /// Replaces the table, waking the forwarders and the names server only if it changed.
    pub fn update(&self, table: ServiceTable) {
        self.table.send_if_modified(|current| {
            if **current == table {
                false
            } else {
                *current = Arc::new(table);
                true
            }
        });
    }

    /// Starts the forwarders and, when asked for, the names server and the gateway.
    pub fn spawn(&self) {
        if let Some(address) = self.gateway {
            let table = self.table.subscribe();
            tokio::spawn(async move {
                if let Err(e) = gateway::serve(address, table).await {
                    tracing::error!(%address, "cannot serve the HTTP gateway: {e}");
                }
            });
        }
        tokio::spawn(forward::run(
            self.network,
            self.table.subscribe(),
            self.traffic.clone(),
        ));
        if let Some(address) = self.names {
            let net = self.network.service_net;
            let table = self.table.subscribe();
            tokio::spawn(async move {
                if let Err(e) = dns::serve(address, net, table).await {
                    tracing::warn!(%address, "cannot answer names: {e}");
                }
            });
        }
    }

    /// Every service as `get services` shows it.
    pub fn views(&self) -> Vec<ServiceView> {
        let net = self.network.service_net;
        self.current()
            .services
            .iter()
            .map(|service| {
                let first = service.ports.first();
                ServiceView {
                    name: service.name(),
                    app: service.app.clone(),
                    component: service.component.clone(),
                    kind: format!("{:?}", service.kind),
                    address: net.address(service.slot).to_string(),
                    ports: service
                        .ports
                        .iter()
                        .map(|p| ServicePortView {
                            port: p.spec.port,
                            protocol: p.spec.protocol.name().to_string(),
                            name: p.spec.name.clone(),
                            node_port: p.node_port,
                        })
                        .collect(),
                    endpoints: first
                        .map(|p| p.backends.local.iter().chain(&p.backends.remote))
                        .into_iter()
                        .flatten()
                        .map(|b| EndpointView {
                            replica: b.replica.to_string(),
                            node: b.node.clone(),
                            address: b.address.to_string(),
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// What a new replica of `app` finds in its environment about the network: the node's
    /// address (`GOSSIP_NODE_IP`, where a process replica of a service listens), the names
    /// server (`GOSSIP_DNS`), and its application's services (see [`ServiceTable::env`]).
    pub fn env(&self, app: &str) -> Vec<(String, String)> {
        let net = self.network.service_net;
        let mut env = vec![(
            "GOSSIP_NODE_IP".to_string(),
            self.network.node_ip.to_string(),
        )];
        if let Some(names) = self.names {
            let server = if names.port() == 53 {
                names.ip().to_string()
            } else {
                names.to_string()
            };
            env.push(("GOSSIP_DNS".to_string(), server));
        }
        env.extend(self.current().env(app, |service| {
            std::net::IpAddr::V4(net.address(service.slot))
        }));
        env
    }
}
