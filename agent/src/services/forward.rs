//! The forwarders: one listener per service port (and node port), each connection or datagram
//! flow sent to one of the service's ready replicas, this node's first. The thin async shell
//! around [`super::table`] and [`super::network::binds`]: which replicas, and where to listen,
//! are decided there.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use orchestrator::services::Protocol;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use super::network::{Bind, Network, Target, binds};
use super::splice;
use super::table::{Backend, ServiceTable};

/// How long a connection attempt to one replica may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A UDP flow (one client address) with no datagram in either direction for this long ends.
const UDP_IDLE: Duration = Duration::from_secs(60);
/// How often listeners that could not be bound are tried again.
const RETRY_BINDS: Duration = Duration::from_secs(5);

/// What the forwarders carried, per service port (`app/component:port/protocol`).
#[derive(Debug, Default)]
pub struct Traffic {
    ports: std::sync::Mutex<BTreeMap<String, Arc<Counters>>>,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub failed: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl Traffic {
    fn counters(&self, target: &Target) -> Arc<Counters> {
        let mut ports = self.ports.lock().expect("traffic lock");
        ports.entry(target.label()).or_default().clone()
    }

    /// `(label, connections, failed, bytes in, bytes out)` for every port that carried any.
    pub fn snapshot(&self) -> Vec<(String, u64, u64, u64, u64)> {
        let ports = self.ports.lock().expect("traffic lock");
        ports
            .iter()
            .map(|(label, c)| {
                (
                    label.clone(),
                    c.connections.load(Ordering::Relaxed),
                    c.failed.load(Ordering::Relaxed),
                    c.bytes_in.load(Ordering::Relaxed),
                    c.bytes_out.load(Ordering::Relaxed),
                )
            })
            .collect()
    }
}

/// Runs this node's listeners, following `table`: a listener starts when its service port
/// appears and stops when it goes (connections in flight carry on). Never returns while
/// `table` has a sender.
pub async fn run(
    network: Network,
    mut table: watch::Receiver<Arc<ServiceTable>>,
    traffic: Arc<Traffic>,
) {
    let mut running: BTreeMap<Bind, (Target, JoinHandle<()>)> = BTreeMap::new();
    let mut failing: BTreeMap<Bind, String> = BTreeMap::new();
    loop {
        let current = table.borrow_and_update().clone();
        let wanted = binds(&current, &network);
        running.retain(|bind, (target, task)| {
            let keep = wanted.get(bind) == Some(target) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        failing.retain(|bind, _| wanted.contains_key(bind));
        for (bind, target) in wanted {
            if running.contains_key(&bind) {
                continue;
            }
            let counters = traffic.counters(&target);
            match listen(bind, target.clone(), table.clone(), counters).await {
                Ok(task) => {
                    if failing.remove(&bind).is_some() {
                        tracing::info!(address = %bind.address, service = %target.label(), "now serving");
                    }
                    running.insert(bind, (target, task));
                }
                Err(e) => {
                    let why = e.to_string();
                    if failing.get(&bind) != Some(&why) {
                        tracing::warn!(address = %bind.address, service = %target.label(), "cannot serve: {why}");
                    }
                    failing.insert(bind, why);
                }
            }
        }
        tokio::select! {
            changed = table.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep(RETRY_BINDS), if !failing.is_empty() => {}
        }
    }
    for (_, (_, task)) in running {
        task.abort();
    }
}

async fn listen(
    bind: Bind,
    target: Target,
    table: watch::Receiver<Arc<ServiceTable>>,
    counters: Arc<Counters>,
) -> std::io::Result<JoinHandle<()>> {
    let picker = Arc::new(Picker {
        target,
        table,
        next: AtomicUsize::new(0),
    });
    match bind.protocol {
        Protocol::Tcp => {
            let listener = TcpListener::bind(bind.address).await?;
            Ok(tokio::spawn(serve_tcp(listener, picker, counters)))
        }
        Protocol::Udp => {
            let socket = UdpSocket::bind(bind.address).await?;
            Ok(tokio::spawn(serve_udp(Arc::new(socket), picker, counters)))
        }
    }
}

/// Chooses replicas for one service port, round-robin over the current candidates.
struct Picker {
    target: Target,
    table: watch::Receiver<Arc<ServiceTable>>,
    next: AtomicUsize,
}

impl Picker {
    /// The candidates in the order to try them: the next in turn first.
    fn candidates(&self) -> Vec<Backend> {
        let table = self.table.borrow().clone();
        let Some(port) = table
            .find(&self.target.app, &self.target.component)
            .and_then(|s| {
                s.ports.iter().find(|p| {
                    p.spec.port == self.target.port && p.spec.protocol == self.target.protocol
                })
            })
        else {
            return Vec::new();
        };
        let mut candidates = port.backends.candidates().to_vec();
        if !candidates.is_empty() {
            let turn = self.next.fetch_add(1, Ordering::Relaxed) % candidates.len();
            candidates.rotate_left(turn);
        }
        candidates
    }
}

async fn serve_tcp(listener: TcpListener, picker: Arc<Picker>, counters: Arc<Counters>) {
    loop {
        let (client, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, say: back off rather than spin.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let picker = picker.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            counters.connections.fetch_add(1, Ordering::Relaxed);
            match connect(&picker).await {
                Some(upstream) => {
                    let _ = client.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    if let Ok((sent, received)) = splice::both_ways(&client, &upstream).await {
                        counters.bytes_in.fetch_add(sent, Ordering::Relaxed);
                        counters.bytes_out.fetch_add(received, Ordering::Relaxed);
                    }
                }
                None => {
                    // No replica answers: the client sees the connection close at once and
                    // reconnects, as it would to a Kubernetes service without endpoints.
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

/// A connection to the first candidate that accepts one.
async fn connect(picker: &Picker) -> Option<TcpStream> {
    for backend in picker.candidates() {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend.address)).await {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(e)) => {
                tracing::debug!(replica = %backend.replica, address = %backend.address, "connect: {e}");
            }
            Err(_) => {
                tracing::debug!(replica = %backend.replica, address = %backend.address, "connect: timed out");
            }
        }
    }
    None
}

/// UDP: each client address is a flow with its own upstream socket, connected to the replica
/// chosen for its first datagram; replies go back from the service's address.
async fn serve_udp(socket: Arc<UdpSocket>, picker: Arc<Picker>, counters: Arc<Counters>) {
    let flows: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buffer = vec![0u8; 65_536];
    loop {
        let (length, client) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(e) => {
                tracing::debug!("udp receive: {e}");
                continue;
            }
        };
        let datagram = &buffer[..length];
        let existing = flows.lock().await.get(&client).cloned();
        let upstream = match existing {
            Some(upstream) => upstream,
            None => {
                let Some(backend) = picker.candidates().into_iter().next() else {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let unspecified: SocketAddr = if backend.address.is_ipv4() {
                    "0.0.0.0:0".parse().expect("address")
                } else {
                    "[::]:0".parse().expect("address")
                };
                let upstream = match UdpSocket::bind(unspecified).await {
                    Ok(s) if s.connect(backend.address).await.is_ok() => Arc::new(s),
                    _ => {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                counters.connections.fetch_add(1, Ordering::Relaxed);
                flows.lock().await.insert(client, upstream.clone());
                tokio::spawn(relay_replies(
                    socket.clone(),
                    upstream.clone(),
                    client,
                    flows.clone(),
                    counters.clone(),
                ));
                upstream
            }
        };
        if upstream.send(datagram).await.is_ok() {
            counters
                .bytes_in
                .fetch_add(length as u64, Ordering::Relaxed);
        }
    }
}

async fn relay_replies(
    socket: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    client: SocketAddr,
    flows: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>>,
    counters: Arc<Counters>,
) {
    let mut buffer = vec![0u8; 65_536];
    // Until idle, or the replica's port is gone (ICMP unreachable): the next datagram from
    // this client starts a new flow, to a replica that answers.
    while let Ok(Ok(length)) = tokio::time::timeout(UDP_IDLE, upstream.recv(&mut buffer)).await {
        if socket.send_to(&buffer[..length], client).await.is_ok() {
            counters
                .bytes_out
                .fetch_add(length as u64, Ordering::Relaxed);
        }
    }
    flows.lock().await.remove(&client);
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator::WorkloadId;
    use orchestrator::services::{ServicePort, ServiceType};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::services::network::ServiceNet;
    use crate::services::table::{Port, Service};

    /// A replica that answers every connection with its name.
    async fn replica(name: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(name.as_bytes()).await;
            }
        });
        address
    }

    fn table(backends: &[(u32, SocketAddr)]) -> ServiceTable {
        let backend = |(replica, address): &(u32, SocketAddr)| Backend {
            replica: WorkloadId {
                app: "shop".into(),
                component: "api".into(),
                replica: *replica,
            },
            node: "a".into(),
            address: *address,
        };
        ServiceTable {
            services: vec![Service {
                app: "shop".into(),
                component: "api".into(),
                kind: ServiceType::ClusterIP,
                slot: 3,
                ports: vec![Port {
                    spec: ServicePort {
                        port: 8080,
                        protocol: Protocol::Tcp,
                        name: None,
                        node_port: None,
                    },
                    node_port: None,
                    backends: crate::services::table::Backends {
                        local: backends.iter().map(backend).collect(),
                        remote: vec![],
                    },
                }],
            }],
            routes: vec![],
        }
    }

    async fn fetch(address: SocketAddr) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer).await;
        answer
    }

    #[tokio::test]
    async fn datagrams_flow_to_a_replica_and_answers_come_back() {
        let replica = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let replica_address = replica.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buffer = [0u8; 512];
            while let Ok((length, from)) = replica.recv_from(&mut buffer).await {
                let mut answer = b"echo ".to_vec();
                answer.extend_from_slice(&buffer[..length]);
                let _ = replica.send_to(&answer, from).await;
            }
        });
        let mut udp = table(&[(0, replica_address)]);
        udp.services[0].ports[0].spec.protocol = Protocol::Udp;
        let network = Network {
            node_ip: "127.0.0.1".parse().unwrap(),
            service_net: "127.68.0.0/16".parse::<ServiceNet>().unwrap(),
        };
        let service = SocketAddr::new(network.service_net.address(3).into(), 8080);
        let (_sender, receiver) = watch::channel(Arc::new(udp));
        let traffic = Arc::new(Traffic::default());
        tokio::spawn(run(network, receiver, traffic.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;

        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buffer = [0u8; 512];
        for word in ["one", "two"] {
            client.send_to(word.as_bytes(), service).await.unwrap();
            let (length, from) =
                tokio::time::timeout(Duration::from_secs(2), client.recv_from(&mut buffer))
                    .await
                    .expect("an answer")
                    .unwrap();
            assert_eq!(from, service, "answers come from the service's address");
            assert_eq!(&buffer[..length], format!("echo {word}").as_bytes());
        }
        let (label, flows, failed, bytes_in, bytes_out) = traffic.snapshot().remove(0);
        assert_eq!(label, "shop/api:8080/UDP");
        assert_eq!((flows, failed, bytes_in, bytes_out), (1, 0, 6, 16));
    }

    #[tokio::test]
    async fn connections_go_round_robin_and_follow_the_table() {
        let (one, two) = (replica("one").await, replica("two").await);
        let network = Network {
            node_ip: "127.0.0.1".parse().unwrap(),
            service_net: "127.67.0.0/16".parse::<ServiceNet>().unwrap(),
        };
        let service = SocketAddr::new(network.service_net.address(3).into(), 8080);
        let (sender, receiver) = watch::channel(Arc::new(table(&[(0, one), (1, two)])));
        let traffic = Arc::new(Traffic::default());
        tokio::spawn(run(network, receiver, traffic.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;

        let mut seen = vec![fetch(service).await, fetch(service).await];
        seen.sort();
        assert_eq!(seen, ["one", "two"], "both replicas take connections");

        // A replica that left the table takes no new connection.
        sender.send(Arc::new(table(&[(1, two)]))).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..4 {
            assert_eq!(fetch(service).await, "two");
        }
        // A replica that stopped answering is skipped.
        let gone: SocketAddr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        sender
            .send(Arc::new(table(&[(0, gone), (1, two)])))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..4 {
            assert_eq!(fetch(service).await, "two");
        }
        // No ready replica: the connection closes at once.
        sender.send(Arc::new(table(&[]))).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(fetch(service).await, "");
        let (label, connections, failed, _, out) = traffic.snapshot().remove(0);
        assert_eq!(label, "shop/api:8080/TCP");
        assert_eq!((connections, failed), (11, 1));
        assert_eq!(out, 30, "ten answers of three bytes");

        // A service that is deleted stops listening.
        sender.send(Arc::new(ServiceTable::default())).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(service).await.is_err());
    }
}
