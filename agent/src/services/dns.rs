//! Names: every agent answers for `svc.gossip` (hickory-dns' authoritative server), from the
//! service table. `COMPONENT.APP.svc.gossip` has an A record, the service's address on the
//! answering node, and SRV records with its ports: `_PORTNAME._tcp.COMPONENT.APP.svc.gossip`
//! for a named port, and every port at the service's own name. Anything else is answered
//! "no such name" (or refused outside the zone): this is not a general resolver.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::proto::rr::rdata::{A, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use tokio::sync::watch;

use super::network::ServiceNet;
use super::table::{DOMAIN, ServiceTable};

/// Answers are good for this long: a moved replica changes no address (the service address
/// stays), so only new and deleted services wait on it.
const TTL: u32 = 5;

/// The zone's records for `table`, as this node serves them.
pub fn records(table: &ServiceTable, net: &ServiceNet, serial: u32) -> Vec<Record> {
    let origin = Name::from_str(&format!("{DOMAIN}.")).expect("zone name");
    let resolver = Name::from_str(&format!("ns.{DOMAIN}.")).expect("resolver name");
    let soa = SOA::new(
        resolver.clone(),
        Name::from_str(&format!("hostmaster.{DOMAIN}.")).expect("mailbox"),
        serial,
        60,
        10,
        600,
        TTL,
    );
    let mut records = vec![
        Record::from_rdata(origin.clone(), TTL, RData::SOA(soa)),
        Record::from_rdata(resolver, TTL, RData::A(A(net.resolver()))),
    ];
    for service in &table.services {
        let Ok(name) = Name::from_str(&format!("{}.", service.name())) else {
            continue;
        };
        let address = net.address(service.slot);
        records.push(Record::from_rdata(name.clone(), TTL, RData::A(A(address))));
        for port in &service.ports {
            let srv = || RData::SRV(SRV::new(0, 0, port.spec.port, name.clone()));
            records.push(Record::from_rdata(name.clone(), TTL, srv()));
            if let Some(port_name) = &port.spec.name {
                let protocol = port.spec.protocol.name().to_ascii_lowercase();
                if let Ok(named) = Name::from_str(&format!("_{port_name}._{protocol}.{name}")) {
                    records.push(Record::from_rdata(named, TTL, srv()));
                }
            }
        }
    }
    records
}

/// The catalog for one version of the table.
fn catalog(table: &ServiceTable, net: &ServiceNet, serial: u32) -> Catalog {
    let origin = Name::from_str(&format!("{DOMAIN}.")).expect("zone name");
    let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        origin.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    );
    for record in records(table, net, serial) {
        zone.upsert_mut(record, serial);
    }
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&origin), vec![Arc::new(zone)]);
    catalog
}

/// A request handler whose zone follows the service table: the server owns it, the loop
/// that follows the table replaces its catalog.
struct Names {
    current: Arc<RwLock<Arc<Catalog>>>,
}

#[async_trait::async_trait]
impl RequestHandler for Names {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let catalog = self.current.read().expect("names lock").clone();
        catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

/// Serves names on `address` (UDP and TCP) until the table's sender goes away.
pub async fn serve(
    address: SocketAddr,
    net: ServiceNet,
    mut table: watch::Receiver<Arc<ServiceTable>>,
) -> std::io::Result<()> {
    let udp = tokio::net::UdpSocket::bind(address).await?;
    let tcp = tokio::net::TcpListener::bind(address).await?;
    let mut serial = 1u32;
    let current = Arc::new(RwLock::new(Arc::new(catalog(
        &table.borrow_and_update(),
        &net,
        serial,
    ))));
    let mut server = Server::new(Names {
        current: current.clone(),
    });
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 64);
    let follow = async {
        while table.changed().await.is_ok() {
            serial = serial.wrapping_add(1);
            let next = catalog(&table.borrow_and_update(), &net, serial);
            *current.write().expect("names lock") = Arc::new(next);
        }
    };
    tokio::select! {
        _ = follow => {}
        done = server.block_until_done() => {
            if let Err(e) = done {
                tracing::warn!("names server stopped: {e}");
            }
        }
    }
    Ok(())
}

/// The default names address: the service network's resolver address, port 53.
pub fn default_address(net: &ServiceNet) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(net.resolver()), 53)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_server::proto::op::{Message, Query, ResponseCode};
    use hickory_server::proto::rr::RecordType;
    use orchestrator::services::{Protocol, ServicePort, ServiceType};

    use crate::services::table::{Port, Service};

    fn table() -> ServiceTable {
        let port = |port: u16, name: Option<&str>| Port {
            spec: ServicePort {
                port,
                protocol: Protocol::Tcp,
                name: name.map(str::to_string),
                node_port: None,
            },
            node_port: None,
            backends: Default::default(),
        };
        ServiceTable {
            services: vec![Service {
                app: "shop".into(),
                component: "api".into(),
                kind: ServiceType::ClusterIP,
                slot: 7,
                ports: vec![port(8080, Some("http")), port(9090, None)],
            }],
            routes: vec![],
        }
    }

    async fn ask(server: SocketAddr, name: &str, kind: RecordType) -> Message {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut query = Message::query();
        query.add_query(Query::query(Name::from_str(name).unwrap(), kind));
        socket
            .send_to(&query.to_vec().unwrap(), server)
            .await
            .unwrap();
        let mut buffer = vec![0u8; 4096];
        let length = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buffer))
            .await
            .expect("an answer")
            .unwrap();
        Message::from_vec(&buffer[..length]).unwrap()
    }

    #[tokio::test]
    async fn names_resolve_to_the_service_address_and_follow_the_table() {
        let net: ServiceNet = "127.66.0.0/16".parse().unwrap();
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let (sender, receiver) = watch::channel(Arc::new(table()));
        tokio::spawn(serve(address, net, receiver));
        tokio::time::sleep(Duration::from_millis(200)).await;

        let a = ask(address, "api.shop.svc.gossip.", RecordType::A).await;
        let addresses: Vec<String> = a.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(addresses, [net.address(7).to_string()]);

        let srv = ask(address, "_http._tcp.api.shop.svc.gossip.", RecordType::SRV).await;
        assert_eq!(srv.answers.len(), 1);
        assert!(srv.answers[0].data.to_string().contains("8080"), "{srv:?}");
        let all = ask(address, "api.shop.svc.gossip.", RecordType::SRV).await;
        assert_eq!(all.answers.len(), 2, "one SRV record per port");
        // IPv4 only: the name exists, with no IPv6 address, so resolvers use the A record.
        let aaaa = ask(address, "api.shop.svc.gossip.", RecordType::AAAA).await;
        assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
        assert!(aaaa.answers.is_empty(), "{aaaa:?}");

        let missing = ask(address, "web.shop.svc.gossip.", RecordType::A).await;
        assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);

        sender.send(Arc::new(ServiceTable::default())).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let gone = ask(address, "api.shop.svc.gossip.", RecordType::A).await;
        assert_eq!(
            gone.metadata.response_code,
            ResponseCode::NXDomain,
            "deleted services go"
        );
    }
}
