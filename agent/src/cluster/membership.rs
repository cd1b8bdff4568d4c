//! Cluster membership: SWIM with suspicion (the `foca` crate), as a sans-IO state machine.
//!
//! [`Membership`] takes bytes, timer events and wall-clock-free commands and returns what to
//! send, what timers to set and how the member list changed; it never touches a socket or a
//! clock, so the same code runs in the agent (driven by [`crate::cluster::gossip`]) and in the
//! deterministic cluster simulation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use bytes::Bytes;
use foca::{
    AccumulatingRuntime, Codec, Config, Foca, Identity, OwnedNotification, PostcardCodec, State,
    Timer,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

/// QUIC datagrams carry about 1.1-1.2 kB; SWIM packets must fit in one.
pub const MAX_PACKET_BYTES: usize = 1100;

/// A member's identity on the wire. The address is the member's unique key; the incarnation
/// lets a member that was wrongly declared dead come back under a new identity that wins over
/// the old one (a restarted agent starts from its start time, so it wins too).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId {
    pub name: String,
    pub addr: SocketAddr,
    pub incarnation: u64,
}

impl Identity for NodeId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(NodeId {
            incarnation: self.incarnation + 1,
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.incarnation > adversary.incarnation
    }
}

/// Failure-detector timings. The defaults suit a LAN: a crashed node is declared dead in about
/// 3-4 s, and indirect probes through 3 members keep 5% packet loss from killing anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    pub probe_period: Duration,
    pub probe_rtt: Duration,
    pub suspect_to_down: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            probe_period: Duration::from_millis(1000),
            probe_rtt: Duration::from_millis(300),
            suspect_to_down: Duration::from_millis(2000),
        }
    }
}

/// What the shell must do after a step of the state machine.
#[derive(Debug, Default)]
pub struct Effects {
    pub send: Vec<(SocketAddr, Bytes)>,
    pub timers: Vec<(Duration, Timer<NodeId>)>,
    /// Whether the member list changed (someone joined, was declared down, or renamed).
    pub changed: bool,
    /// Probe cycles that ended without an ack, and acks received for our probes: the
    /// evidence [`crate::cluster::health`] weighs.
    pub probes_failed: u32,
    pub acks: u32,
}

/// How this node sees another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Liveness {
    Alive,
    Suspect,
    Down,
}

/// One member as this node's failure detector holds it: exchanged during anti-entropy so a
/// node that missed a gossiped verdict (a death, a join) learns it from a peer's full list
/// instead of waiting for its own probes to get there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    pub id: NodeId,
    pub incarnation: u16,
    pub liveness: Liveness,
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("membership: {0}")]
    Foca(String),
    #[error(
        "membership packet from {claimed:?} arrived over a connection certified for {certified:?}"
    )]
    Impersonation { claimed: String, certified: String },
}

impl From<foca::Error> for MembershipError {
    fn from(e: foca::Error) -> Self {
        MembershipError::Foca(e.to_string())
    }
}

pub struct Membership {
    foca: Foca<NodeId, PostcardCodec, StdRng, foca::NoCustomBroadcast>,
    runtime: AccumulatingRuntime<NodeId>,
}

impl Membership {
    /// A member that knows nobody yet. `seed` makes the failure detector's random choices
    /// reproducible in simulation.
    pub fn new(me: NodeId, timings: Timings, seed: u64) -> Self {
        // Every membership update is retransmitted 7 times (foca's LAN sizing for 64 members).
        // A member that misses every copy of a verdict learns it from the member lists swapped
        // during anti-entropy (see `sync`).
        let mut config = Config::new_lan(NonZeroU32::new(64).expect("non-zero"));
        config.probe_period = timings.probe_period;
        config.probe_rtt = timings.probe_rtt;
        config.suspect_to_down_after = timings.suspect_to_down;
        config.max_packet_size = NonZeroUsize::new(MAX_PACKET_BYTES).expect("non-zero");
        // An announce to one random member every second brings back that member's view of
        // the cluster: an agent that missed some of many joins at once (SWIM's gossip of fifty
        // simultaneous joins leaves about one start in seven with such a gap) closes it in a
        // second or two instead of ten. About one 1 kB datagram each way per agent per second.
        config.periodic_announce = Some(foca::PeriodicParams {
            frequency: Duration::from_secs(1),
            num_members: NonZeroUsize::new(1).expect("non-zero"),
        });
        config.periodic_announce_to_down_members = Some(foca::PeriodicParams {
            frequency: Duration::from_secs(5),
            num_members: NonZeroUsize::new(2).expect("non-zero"),
        });
        // Remember the dead long enough to tell them so if they come back, then forget them.
        config.remove_down_after = Some(Duration::from_secs(15 * 60));
        let foca = Foca::new(me, config, StdRng::seed_from_u64(seed), PostcardCodec);
        Membership {
            foca,
            runtime: AccumulatingRuntime::new(),
        }
    }

    pub fn me(&self) -> &NodeId {
        self.foca.identity()
    }

    /// Asks a seed, known only by its address, to let us in.
    pub fn announce(&mut self, seed: SocketAddr) -> Result<Effects, MembershipError> {
        let dst = NodeId {
            name: String::new(),
            addr: seed,
            incarnation: 0,
        };
        self.foca.announce(dst, &mut self.runtime)?;
        Ok(self.drain())
    }

    /// A packet from a peer whose certificate names it `certified`. A packet claiming another
    /// node's identity is refused before the state machine sees it.
    pub fn handle_packet(
        &mut self,
        certified: &str,
        packet: &[u8],
    ) -> Result<Effects, MembershipError> {
        let header: foca::Header<NodeId> = PostcardCodec
            .decode_header(packet)
            .map_err(|e| MembershipError::Foca(e.to_string()))?;
        if header.src.name != certified {
            return Err(MembershipError::Impersonation {
                claimed: header.src.name,
                certified: certified.to_string(),
            });
        }
        self.foca.handle_data(packet, &mut self.runtime)?;
        Ok(self.drain())
    }

    pub fn handle_timer(&mut self, timer: Timer<NodeId>) -> Result<Effects, MembershipError> {
        self.foca.handle_timer(timer, &mut self.runtime)?;
        Ok(self.drain())
    }

    /// Tells the cluster we are leaving, so peers mark us down at once instead of suspecting.
    pub fn leave(&mut self) -> Result<Effects, MembershipError> {
        self.foca.leave_cluster(&mut self.runtime)?;
        Ok(self.drain())
    }

    /// Every other member foca tracks, with its liveness.
    pub fn members(&self) -> BTreeMap<String, (NodeId, Liveness)> {
        let mut members = BTreeMap::new();
        for member in self.others() {
            let liveness = match member.state() {
                State::Alive => Liveness::Alive,
                State::Suspect => Liveness::Suspect,
                State::Down => Liveness::Down,
            };
            let id = member.id().clone();
            if id.name.is_empty() {
                continue;
            }
            members.insert(id.name.clone(), (id, liveness));
        }
        members
    }

    /// Every other member with its SWIM incarnation and liveness, in name order.
    pub fn states(&self) -> Vec<MemberState> {
        let mut states: Vec<MemberState> = self
            .others()
            .map(|m| MemberState {
                id: m.id().clone(),
                incarnation: m.incarnation(),
                liveness: match m.state() {
                    State::Alive => Liveness::Alive,
                    State::Suspect => Liveness::Suspect,
                    State::Down => Liveness::Down,
                },
            })
            .collect();
        states.sort_by(|a, b| a.id.name.cmp(&b.id.name));
        states
    }

    /// A digest of who is in the cluster, under which identity, and who is down, ourselves
    /// counted as alive: two members whose digests match hold the same view and need not
    /// exchange lists. Suspicion and SWIM incarnations are left out: SWIM settles those itself.
    pub fn digest(&self) -> u64 {
        let me = self.foca.identity();
        let mut view: Vec<(&str, u64, bool)> = self
            .others()
            .map(|m| {
                let id = m.id();
                (id.name.as_str(), id.incarnation, m.state() == State::Down)
            })
            .collect();
        view.push((me.name.as_str(), me.incarnation, false));
        view.sort();
        let text = serde_json::to_vec(&view).expect("member view serialises");
        xxhash_rust::xxh3::xxh3_64(&text)
    }

    /// Applies a peer's member list. SWIM's precedence rules (higher incarnation wins; at equal
    /// incarnation Down beats Suspect beats Alive) decide, so stale entries change nothing, and
    /// a list that names us as suspect or down makes us refute it.
    pub fn apply(&mut self, states: Vec<MemberState>) -> Result<Effects, MembershipError> {
        let updates = states.into_iter().map(|s| {
            let state = match s.liveness {
                Liveness::Alive => State::Alive,
                Liveness::Suspect => State::Suspect,
                Liveness::Down => State::Down,
            };
            foca::Member::new(s.id, s.incarnation, state)
        });
        self.foca.apply_many(updates, true, &mut self.runtime)?;
        Ok(self.drain())
    }

    /// Every member foca tracks except any former identity of ours (a peer's list can still
    /// name our previous incarnation as down; that is not another member).
    fn others(&self) -> impl Iterator<Item = &foca::Member<NodeId>> {
        let me = self.foca.identity();
        self.foca.iter_membership_state().filter(move |m| {
            !m.id().name.is_empty() && m.id().addr != me.addr && m.id().name != me.name
        })
    }

    /// How many members are alive or suspect, not counting us.
    pub fn active_members(&self) -> usize {
        self.foca.num_members()
    }

    fn drain(&mut self) -> Effects {
        let mut effects = Effects::default();
        while let Some((to, data)) = self.runtime.to_send() {
            effects.send.push((to.addr, data));
        }
        while let Some(timer) = self.runtime.to_schedule() {
            effects.timers.push(timer);
        }
        while let Some(notification) = self.runtime.to_notify() {
            match notification {
                OwnedNotification::MemberUp(_)
                | OwnedNotification::MemberDown(_)
                | OwnedNotification::Rename(..)
                | OwnedNotification::Rejoin(_) => effects.changed = true,
                OwnedNotification::ProbeFailed(..) => effects.probes_failed += 1,
                OwnedNotification::DataReceived(header) => {
                    if matches!(
                        header.message,
                        foca::Message::Ack(_) | foca::Message::ForwardedAck { .. }
                    ) {
                        effects.acks += 1;
                    }
                }
                _ => {}
            }
        }
        effects
    }
}
