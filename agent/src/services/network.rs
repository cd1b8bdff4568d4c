//! The addresses a node serves services at, and which listener serves which service port.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use orchestrator::services::{Protocol, ServiceType};

use super::table::ServiceTable;

/// Where this node's replicas and services are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// The node's own address: process replicas of a service listen here
    /// (`GOSSIP_NODE_IP`), and `NodePort` services are served here.
    pub node_ip: IpAddr,
    /// Each service's cluster address on this node is one of this network's addresses
    /// (`--service-cidr`, a loopback network by default: reachable from this node only, as a
    /// Kubernetes ClusterIP is reachable from inside the cluster only).
    pub service_net: ServiceNet,
}

/// An IPv4 network of service addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceNet {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl ServiceNet {
    /// How many service addresses it holds: all but its first two (the network's own
    /// address, and the resolver's).
    pub fn size(&self) -> u32 {
        (1u32 << (32 - u32::from(self.prefix))).saturating_sub(2)
    }

    /// The address of the names server: the network's second address.
    pub fn resolver(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + 1)
    }

    /// The `slot`th service address.
    pub fn address(&self, slot: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + 2 + slot % self.size().max(1))
    }
}

impl std::str::FromStr for ServiceNet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (ip, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?}: expected an IPv4 network such as 127.64.0.0/16"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{text:?}: {ip:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (8..=24).contains(p))
            .ok_or_else(|| format!("{text:?}: the prefix must be from 8 to 24"))?;
        let mask = u32::MAX << (32 - u32::from(prefix));
        Ok(ServiceNet {
            base: Ipv4Addr::from(u32::from(ip) & mask),
            prefix,
        })
    }
}

/// One listener of this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bind {
    pub address: SocketAddr,
    pub protocol: Protocol,
}

/// The service port a listener forwards to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub app: String,
    pub component: String,
    pub port: u16,
    pub protocol: Protocol,
}

impl Target {
    /// `app/component:port/protocol`, as metrics and logs name it.
    pub fn label(&self) -> String {
        format!(
            "{}/{}:{}/{}",
            self.app,
            self.component,
            self.port,
            self.protocol.name()
        )
    }
}

/// Every listener this node should run: each service port at the service's cluster address,
/// and a `NodePort` service's ports also on the node's address at their node ports.
pub fn binds(table: &ServiceTable, network: &Network) -> BTreeMap<Bind, Target> {
    let mut binds = BTreeMap::new();
    for service in &table.services {
        let cluster_ip = IpAddr::V4(network.service_net.address(service.slot));
        for port in &service.ports {
            let target = Target {
                app: service.app.clone(),
                component: service.component.clone(),
                port: port.spec.port,
                protocol: port.spec.protocol,
            };
            binds.insert(
                Bind {
                    address: SocketAddr::new(cluster_ip, port.spec.port),
                    protocol: port.spec.protocol,
                },
                target.clone(),
            );
            if service.kind == ServiceType::NodePort
                && let Some(node_port) = port.node_port
            {
                binds
                    .entry(Bind {
                        address: SocketAddr::new(network.node_ip, node_port),
                        protocol: port.spec.protocol,
                    })
                    .or_insert(target);
            }
        }
    }
    binds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_networks_parse_and_hand_out_addresses() {
        let net: ServiceNet = "127.64.9.9/16".parse().unwrap();
        assert_eq!(net.base, Ipv4Addr::new(127, 64, 0, 0));
        assert_eq!(net.resolver(), Ipv4Addr::new(127, 64, 0, 1));
        assert_eq!(net.address(0), Ipv4Addr::new(127, 64, 0, 2));
        assert_eq!(net.address(300), Ipv4Addr::new(127, 64, 1, 46));
        assert_eq!(net.size(), 65534);
        assert!("127.64.0.0".parse::<ServiceNet>().is_err());
        assert!("127.64.0.0/30".parse::<ServiceNet>().is_err());
        assert!("::1/64".parse::<ServiceNet>().is_err());
    }
}
