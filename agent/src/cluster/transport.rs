//! Connections between agents: one quinn endpoint, one cached connection per peer.
//!
//! Membership packets ride QUIC datagrams on these connections and everything else (state
//! sync, proxied logs, learner calls) rides streams, so every byte between agents is mutually
//! authenticated. A pair of agents shares one connection, whichever side dialled it: both
//! sides read datagrams and serve requests on every agent connection, and an agent sends on
//! a connection its peer dialled until it has one of its own. A TLS handshake is the dearest
//! thing two agents do (a cluster of N needs N(N-1)/2 of them, all at once when it starts),
//! and acknowledgements ride the replies on a shared connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use orchestrator::WorkloadId;
use quinn::{Connection, Endpoint};
use tokio::sync::mpsc;

use crate::api::{Request, Response};
use crate::client::Responses;
use crate::cluster::counters::{Channel, ClusterCounters};
use crate::cluster::identity::{ANY_AGENT_SERVER_NAME, Role};
use crate::cluster::tls::peer_role;
use crate::wire::{WireError, read_body, read_frame, write_body, write_frame};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("peer {0}: {1}")]
    Connect(SocketAddr, String),
    #[error("peer {0} is not a cluster node")]
    NotANode(SocketAddr),
    #[error("peer {0}: {1}")]
    Stream(SocketAddr, String),
    #[error("peer {0}: {1}")]
    Wire(SocketAddr, WireError),
    #[error("peer {0} closed the request without answering")]
    NoAnswer(SocketAddr),
}

/// A membership packet and the certified name of the node that sent it.
pub type Inbound = (String, Bytes);

/// The connection to one peer, dialled or adopted. Callers that need it while a dial is under
/// way wait for that dial instead of starting their own: a burst of membership packets to a
/// new member costs one TLS handshake, not one each.
type Slot = Arc<tokio::sync::Mutex<Option<Connection>>>;

pub struct Peers {
    endpoint: Endpoint,
    connections: Mutex<HashMap<SocketAddr, Slot>>,
    inbound: mpsc::Sender<Inbound>,
    /// Connections this agent dialled, for the server to answer requests on.
    dialled: mpsc::UnboundedSender<Connection>,
    /// What the cluster layer counts, for the metrics.
    pub counters: ClusterCounters,
}

/// Connections an agent dialled: its server answers the requests peers send on them.
pub type Dialled = mpsc::UnboundedReceiver<Connection>;

impl Peers {
    pub fn new(endpoint: Endpoint, inbound: mpsc::Sender<Inbound>) -> (Arc<Self>, Dialled) {
        let (dialled, to_serve) = mpsc::unbounded_channel();
        let peers = Arc::new(Peers {
            endpoint,
            connections: Mutex::default(),
            inbound,
            dialled,
            counters: ClusterCounters::default(),
        });
        (peers, to_serve)
    }

    /// Takes in a connection another agent opened to us: its membership datagrams are read,
    /// and it carries ours too while we have no open connection to that agent. (When both
    /// dial at once, each keeps sending on its own; both connections work.)
    pub fn adopt(self: &Arc<Self>, connection: Connection) {
        let Some(Role::Node { name }) = peer_role(&connection) else {
            return;
        };
        let slot = self
            .connections
            .lock()
            .expect("connections lock")
            .entry(connection.remote_address())
            .or_default()
            .clone();
        // A dial under way holds the slot; its connection will do.
        if let Ok(mut slot) = slot.try_lock()
            && slot.as_ref().is_none_or(|c| c.close_reason().is_some())
        {
            *slot = Some(connection.clone());
        }
        self.read_datagrams(connection, name);
    }

    fn read_datagrams(self: &Arc<Self>, connection: Connection, name: String) {
        let inbound = self.inbound.clone();
        let peers = self.clone();
        tokio::spawn(async move {
            while let Ok(datagram) = connection.read_datagram().await {
                ClusterCounters::add(&peers.counters.membership_bytes[1], datagram.len() as u64);
                // A full queue means the membership loop is behind: dropping is what UDP
                // would do, and SWIM tolerates it.
                let _ = inbound.try_send((name.clone(), datagram));
            }
        });
    }

    /// The cached connection to `addr`, or a new one.
    pub async fn connection(
        self: &Arc<Self>,
        addr: SocketAddr,
    ) -> Result<Connection, TransportError> {
        let slot = self
            .connections
            .lock()
            .expect("connections lock")
            .entry(addr)
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(connection) = slot.as_ref()
            && connection.close_reason().is_none()
        {
            return Ok(connection.clone());
        }
        let connecting = self
            .endpoint
            .connect(addr, ANY_AGENT_SERVER_NAME)
            .map_err(|e| TransportError::Connect(addr, e.to_string()))?;
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| TransportError::Connect(addr, "timed out".into()))?
            .map_err(|e| TransportError::Connect(addr, e.to_string()))?;
        let Some(Role::Node { name }) = peer_role(&connection) else {
            connection.close(1u32.into(), b"not a cluster node");
            return Err(TransportError::NotANode(addr));
        };
        tracing::debug!(peer = %name, %addr, "dialled");
        *slot = Some(connection.clone());
        self.read_datagrams(connection.clone(), name);
        let _ = self.dialled.send(connection.clone());
        Ok(connection)
    }

    /// Drops the cached connection to a peer declared dead or restarted, so the next message
    /// dials afresh (a restarted peer does not know the old connection).
    pub fn forget(&self, addr: SocketAddr) {
        let slot = self
            .connections
            .lock()
            .expect("connections lock")
            .remove(&addr);
        // A dial still under way finishes into the removed slot and serves only its caller.
        if let Some(slot) = slot
            && let Ok(slot) = slot.try_lock()
            && let Some(old) = slot.as_ref()
        {
            old.close(0u32.into(), b"declared dead");
        }
    }

    /// Sends a membership packet without waiting: delivery is best effort, like UDP.
    pub fn send_datagram(self: &Arc<Self>, addr: SocketAddr, packet: Bytes) {
        let peers = self.clone();
        tokio::spawn(async move {
            match peers.connection(addr).await {
                Ok(connection) => {
                    ClusterCounters::add(&peers.counters.membership_bytes[0], packet.len() as u64);
                    if let Err(e) = connection.send_datagram(packet) {
                        tracing::debug!(%addr, "datagram not sent: {e}");
                    }
                }
                Err(e) => tracing::debug!("datagram not sent: {e}"),
            }
        });
    }

    /// Sends one request to a peer agent and returns its single answer.
    pub async fn request(
        self: &Arc<Self>,
        addr: SocketAddr,
        request: &Request,
    ) -> Result<Response, TransportError> {
        let mut responses = self.stream(addr, request).await?;
        first(&mut responses, addr).await
    }

    /// Sends one request about replicated state, counting its bytes under `channel`.
    pub async fn exchange(
        self: &Arc<Self>,
        channel: Channel,
        addr: SocketAddr,
        request: &Request,
    ) -> Result<Response, TransportError> {
        let (mut responses, sent) = self.open(addr, request).await?;
        let response = first(&mut responses, addr).await;
        let bytes = self.counters.state_bytes(channel);
        ClusterCounters::add(&bytes[0], sent);
        ClusterCounters::add(&bytes[1], responses.bytes_read());
        response
    }

    /// UDP bytes sent and received on the open connections to peers (membership, state
    /// dissemination, anti-entropy and learner traffic alike), from quinn's statistics.
    pub fn connection_bytes(&self) -> (u64, u64) {
        let slots: Vec<Slot> = self
            .connections
            .lock()
            .expect("connections lock")
            .values()
            .cloned()
            .collect();
        let mut totals = (0, 0);
        for slot in slots {
            if let Ok(guard) = slot.try_lock()
                && let Some(connection) = guard.as_ref()
            {
                let stats = connection.stats();
                totals.0 += stats.udp_tx.bytes;
                totals.1 += stats.udp_rx.bytes;
            }
        }
        totals
    }

    /// The measured round-trip time to a peer, if this agent has a connection to it.
    pub fn rtt(&self, addr: SocketAddr) -> Option<Duration> {
        let slot = self
            .connections
            .lock()
            .expect("connections lock")
            .get(&addr)?
            .clone();
        let slot = slot.try_lock().ok()?;
        let connection = slot.as_ref()?;
        connection
            .close_reason()
            .is_none()
            .then(|| connection.rtt())
    }

    /// Carries a learner's call to replica `workload`, which the agent at `addr` runs, and
    /// returns the replica's answer.
    pub async fn learner_call(
        self: &Arc<Self>,
        addr: SocketAddr,
        workload: &WorkloadId,
        from: u32,
        body: &[u8],
    ) -> Result<Vec<u8>, String> {
        let connection = self.connection(addr).await.map_err(|e| e.to_string())?;
        let (mut send, mut recv) = connection
            .open_bi()
            .await
            .map_err(|e| TransportError::Stream(addr, e.to_string()).to_string())?;
        let request = Request::LearnerCall {
            workload: workload.to_string(),
            from,
        };
        let wire = |e| TransportError::Wire(addr, e).to_string();
        write_frame(&mut send, &request).await.map_err(wire)?;
        write_body(&mut send, body).await.map_err(wire)?;
        let _ = send.finish();
        match read_frame::<Response>(&mut recv).await.map_err(wire)? {
            Some(Response::LearnerAnswer) => read_body(&mut recv).await.map_err(wire),
            Some(Response::Error { message, .. }) => Err(message),
            Some(other) => Err(format!(
                "peer {addr} answered a learner call with {other:?}"
            )),
            None => Err(TransportError::NoAnswer(addr).to_string()),
        }
    }

    /// Sends one request to a peer agent and returns its stream of answers.
    pub async fn stream(
        self: &Arc<Self>,
        addr: SocketAddr,
        request: &Request,
    ) -> Result<Responses, TransportError> {
        Ok(self.open(addr, request).await?.0)
    }

    /// Opens a stream and sends `request` on it; returns the answers to come and the bytes sent.
    async fn open(
        self: &Arc<Self>,
        addr: SocketAddr,
        request: &Request,
    ) -> Result<(Responses, u64), TransportError> {
        let connection = self.connection(addr).await?;
        let (mut send, recv) = connection
            .open_bi()
            .await
            .map_err(|e| TransportError::Stream(addr, e.to_string()))?;
        let sent = write_frame(&mut send, request)
            .await
            .map_err(|e| TransportError::Wire(addr, e))?;
        let _ = send.finish();
        Ok((Responses::new(recv, addr), sent))
    }
}

/// The single answer a request expects.
async fn first(responses: &mut Responses, addr: SocketAddr) -> Result<Response, TransportError> {
    responses
        .next()
        .await
        .map_err(|e| TransportError::Stream(addr, e.to_string()))?
        .ok_or(TransportError::NoAnswer(addr))
}
