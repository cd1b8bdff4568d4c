//! Cluster membership: SWIM with suspicion (the `foca` crate), as a sans-IO state machine.
//!
//! [`Membership`] takes bytes, timer events and wall-clock-free commands and returns what to
//! send, what timers to set and how the member list changed; it never touches a socket or a
//! clock, so the same code runs in the agent (driven by [`crate::cluster::gossip`]) and in the
//! deterministic cluster simulation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use foca::{
    AccumulatingRuntime, BroadcastHandler, Codec, Config, Foca, Identity, Invalidates,
    OwnedNotification, PostcardCodec, State, Timer,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::cluster::suspicion::{
    MAX_TIMEOUT_MULTIPLIER, SuspicionNote, SuspicionTimeouts, Suspicions, Verdict,
};

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

/// Failure-detector timings. The defaults suit a LAN: indirect probes through 3 members keep
/// 5% packet loss from killing anyone, and a crashed node is declared dead about 3 s after it
/// stops (2.5-5 s measured: a first member's probe must reach it and fail, about a second or
/// two; the others check it at once and confirm; then `suspect_to_down`, see
/// [`crate::cluster::suspicion`]; a suspicion nobody else confirms lasts six times as long).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    pub probe_period: Duration,
    pub probe_rtt: Duration,
    /// The shortest suspicion: after an independent confirmation.
    pub suspect_to_down: Duration,
    /// An unconfirmed suspicion lasts this many times `suspect_to_down` (1: no dynamic
    /// suspicion, every suspicion lasts `suspect_to_down`).
    pub unconfirmed_multiplier: u32,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            probe_period: Duration::from_millis(1000),
            probe_rtt: Duration::from_millis(300),
            suspect_to_down: Duration::from_millis(1000),
            unconfirmed_multiplier: MAX_TIMEOUT_MULTIPLIER,
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
    /// The members this step declared down (by us or as we learned it).
    pub down: Vec<NodeId>,
    /// Probe cycles that ended without an ack, and acks received for our probes: the
    /// evidence [`crate::cluster::health`] weighs.
    pub probes_failed: u32,
    pub acks: u32,
    /// Of `acks`, those relayed by another member (an indirect probe's answer).
    pub indirect_acks: u32,
    /// Members this step began to suspect (our own probes failed), and suspects our own
    /// timer declared down.
    pub suspected: u32,
    pub declared: u32,
    /// Members another member suspects and we do not: check each at once (a request over
    /// our own connection, [`Membership::check_timeout`] long) and report a failure with
    /// [`Membership::check_failed`]. See [`crate::cluster::suspicion`].
    pub checks: Vec<(NodeId, u16)>,
    /// Deaths our own suspicion timer declared in this step, for the shell to tell every
    /// member at once (gossip alone needs about a second to reach fifty).
    pub notice: Option<DeathNotice>,
}

/// Members just declared down by this agent, and the members to tell directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeathNotice {
    pub states: Vec<MemberState>,
    pub to: Vec<SocketAddr>,
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
    foca: Foca<NodeId, PostcardCodec, StdRng, Notes>,
    runtime: AccumulatingRuntime<NodeId>,
    /// Lifeguard's dynamic suspicion, shared with the broadcast handler that collects the
    /// other members' notes.
    suspicions: Arc<Mutex<Suspicions>>,
    /// foca's configuration as last set (foca does not hand it back).
    config: Config,
}

/// While the member list keeps changing, an announce to one random member every this often.
pub const ANNOUNCE_WHILE_CHANGING: Duration = Duration::from_millis(250);
/// Once the member list has been quiet for [`QUIET_AFTER`], an announce this often only.
pub const ANNOUNCE_WHILE_QUIET: Duration = Duration::from_secs(30);
/// How long the member list must stay unchanged before announces slow down.
pub const QUIET_AFTER: Duration = Duration::from_secs(10);

/// foca's custom broadcasts carry [`SuspicionNote`]s: a note is passed on (foca retransmits it
/// like a membership update) only the first time this member hears it.
pub struct Notes(Arc<Mutex<Suspicions>>);

/// A custom broadcast that is not a suspicion note.
#[derive(Debug, thiserror::Error)]
#[error("malformed suspicion note: {0}")]
pub struct NoteError(String);

/// A note in foca's retransmission backlog; an identical note replaces it.
pub struct NoteKey(SuspicionNote);

impl Invalidates for NoteKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl BroadcastHandler<NodeId> for Notes {
    type Key = NoteKey;
    type Error = NoteError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&NodeId>,
    ) -> Result<Option<NoteKey>, NoteError> {
        let note: SuspicionNote =
            postcard::from_bytes(data).map_err(|e| NoteError(e.to_string()))?;
        // `sender` is none for our own notes, which always go out.
        let news = sender.is_none() || lock(&self.0).confirm(&note);
        Ok(news.then_some(NoteKey(note)))
    }
}

fn lock(suspicions: &Mutex<Suspicions>) -> std::sync::MutexGuard<'_, Suspicions> {
    // The lock is never held across a call that could panic midway; a poisoned one still
    // holds consistent data.
    suspicions.lock().unwrap_or_else(|e| e.into_inner())
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
        // An announce to one random member every 250 ms brings back that member's view of the
        // cluster: an agent that missed some of many joins at once (SWIM's gossip of fifty
        // simultaneous joins leaves about one start in seven with such a gap) closes it within
        // a second instead of ten. (Every second instead, the cluster simulation's fifty
        // agents started together saw each other after 1.0 s typically; every 250 ms, 0.75 s.)
        // That is about four 1 kB datagrams each way per agent per second, so it slows down
        // once the member list is quiet (`pace_announces`).
        config.periodic_announce = Some(foca::PeriodicParams {
            frequency: ANNOUNCE_WHILE_CHANGING,
            num_members: NonZeroUsize::new(1).expect("non-zero"),
        });
        config.periodic_announce_to_down_members = Some(foca::PeriodicParams {
            frequency: Duration::from_secs(5),
            num_members: NonZeroUsize::new(2).expect("non-zero"),
        });
        // Remember the dead long enough to tell them so if they come back, then forget them.
        config.remove_down_after = Some(Duration::from_secs(15 * 60));
        let suspicions = Arc::new(Mutex::new(Suspicions::new(
            &me.name,
            SuspicionTimeouts {
                max: timings.suspect_to_down * timings.unconfirmed_multiplier.max(1),
                ..SuspicionTimeouts::around(timings.suspect_to_down)
            },
        )));
        let foca = Foca::with_custom_broadcast(
            me,
            config.clone(),
            StdRng::seed_from_u64(seed),
            PostcardCodec,
            Notes(suspicions.clone()),
        );
        Membership {
            foca,
            runtime: AccumulatingRuntime::new(),
            suspicions,
            config,
        }
    }

    /// Sets the periodic announce's pace for a member list unchanged for `quiet_for`: every
    /// [`ANNOUNCE_WHILE_CHANGING`] while members come and go, every [`ANNOUNCE_WHILE_QUIET`]
    /// once it has been quiet for [`QUIET_AFTER`]. A quiet cluster's views agree, and the
    /// member digests every membership packet carries (`hints`) catch any difference anyway.
    /// A change of pace takes effect when the announce timer next fires.
    pub fn pace_announces(&mut self, quiet_for: Duration) {
        let frequency = if quiet_for >= QUIET_AFTER {
            ANNOUNCE_WHILE_QUIET
        } else {
            ANNOUNCE_WHILE_CHANGING
        };
        let Some(params) = self.config.periodic_announce.as_mut() else {
            return;
        };
        if params.frequency == frequency {
            return;
        }
        params.frequency = frequency;
        // Only enabling a periodic task or changing the probe timings is refused; this is
        // neither.
        if self.foca.set_config(self.config.clone()).is_err() {
            tracing::warn!("foca refused the announce pace");
        }
    }

    /// The periodic announce's current period.
    pub fn announce_period(&self) -> Option<Duration> {
        self.config.periodic_announce.as_ref().map(|p| p.frequency)
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
        if let Timer::ChangeSuspectToDown {
            member_id,
            incarnation,
            ..
        } = &timer
        {
            // Refuted (a newer incarnation), already down, or gone: nothing to decide. (foca
            // would otherwise still send the member a `TurnUndead`.)
            let still_suspect = self.foca.iter_membership_state().any(|m| {
                m.id() == member_id
                    && m.state() == State::Suspect
                    && m.incarnation() == *incarnation
            });
            if !still_suspect {
                return Ok(Effects::default());
            }
            let members = self.foca.num_members();
            let verdict = lock(&self.suspicions).fired(&member_id.name, *incarnation, members);
            if let Verdict::Wait(next) = verdict {
                return Ok(Effects {
                    timers: vec![(next, timer)],
                    ..Effects::default()
                });
            }
        }
        let declaring = matches!(timer, Timer::ChangeSuspectToDown { .. });
        self.foca.handle_timer(timer, &mut self.runtime)?;
        let mut effects = self.drain();
        if declaring && !effects.down.is_empty() {
            effects.declared = effects.down.len() as u32;
            effects.notice = Some(self.death_notice(&effects.down));
        }
        Ok(effects)
    }

    /// The deaths of `declared` as member states, addressed to every member still alive or
    /// suspect. SWIM spreads a death by piggybacking it on a few random members' packets per
    /// round, which takes log(N) rounds; the member that declared it also tells everyone
    /// directly, one small request each, so the whole cluster acts on it within a round trip.
    /// Only the declarer does this: a death costs N requests, not N squared.
    fn death_notice(&self, declared: &[NodeId]) -> DeathNotice {
        let states = self
            .states()
            .into_iter()
            .filter(|s| s.liveness == Liveness::Down && declared.contains(&s.id))
            .collect();
        let to = self
            .others()
            .filter(|m| m.state() != State::Down)
            .map(|m| m.id().addr)
            .collect();
        DeathNotice { states, to }
    }

    /// Tells the cluster we are leaving, so peers mark us down at once instead of suspecting.
    /// How long a check of a suspected member may take before it counts as failed: half a
    /// probe period, so that a confirmed crash is declared as soon as the shortest suspicion
    /// allows.
    pub fn check_timeout(&self) -> Duration {
        self.config.probe_period / 2
    }

    /// Our check of `member` at SWIM `incarnation` (from [`Effects::checks`]) failed: announce that we suspect it
    /// too, the independent confirmation its suspicion waits for. Nothing happens when the
    /// member refuted, was declared down or renamed meanwhile.
    pub fn check_failed(
        &mut self,
        member: &NodeId,
        incarnation: u16,
    ) -> Result<Effects, MembershipError> {
        let in_question = self.foca.iter_membership_state().any(|m| {
            m.id() == member && m.incarnation() == incarnation && m.state() != State::Down
        });
        let note = if in_question {
            lock(&self.suspicions).check_failed(&member.name, incarnation)
        } else {
            None
        };
        if let Some(note) = note {
            tracing::debug!(member = %member.name, "check of a suspected member failed; confirming");
            self.broadcast(&note);
        }
        Ok(self.drain())
    }

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

    /// Hands a suspicion note to foca, which piggybacks it on its packets.
    fn broadcast(&mut self, note: &SuspicionNote) {
        let mut buffer = [0u8; MAX_PACKET_BYTES];
        // Only a note larger than a packet could fail to fit, and names are short.
        let result = match postcard::to_slice(note, &mut buffer) {
            Ok(data) => self
                .foca
                .add_broadcast(data)
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "suspicion note not broadcast");
        }
    }

    fn drain(&mut self) -> Effects {
        let mut effects = Effects::default();
        while let Some((to, data)) = self.runtime.to_send() {
            effects.send.push((to.addr, data));
        }
        let mut notes = Vec::new();
        while let Some((after, timer)) = self.runtime.to_schedule() {
            // foca suspects a member after our own probes of it failed: start Lifeguard's
            // dynamic suspicion and tell the others, whose own failed probes confirm it. foca
            // sets another timer each time a probe of a suspect fails; the first one's chain
            // (see `handle_timer`) already carries the suspicion, so the others are dropped.
            if let Timer::ChangeSuspectToDown {
                member_id,
                incarnation,
                ..
            } = &timer
            {
                match lock(&self.suspicions).suspect(&member_id.name, *incarnation, after) {
                    Some(note) => {
                        effects.suspected += 1;
                        notes.push(note);
                    }
                    None => continue,
                }
            }
            effects.timers.push((after, timer));
        }
        for note in notes {
            self.broadcast(&note);
        }
        while let Some(notification) = self.runtime.to_notify() {
            match notification {
                OwnedNotification::MemberDown(id) => {
                    // An operator's record of every verdict (tests count false ones). foca
                    // reports a member that left the same way.
                    tracing::info!(
                        member = %id.name,
                        incarnation = id.incarnation,
                        "member is down (declared dead, or left)"
                    );
                    effects.changed = true;
                    lock(&self.suspicions).forget(&id.name);
                    effects.down.push(id);
                }
                OwnedNotification::Rejoin(id) => {
                    tracing::warn!(
                        incarnation = id.incarnation,
                        "a peer declared this agent down; it rejoins under a new identity"
                    );
                    effects.changed = true;
                    lock(&self.suspicions).forget(&id.name);
                }
                OwnedNotification::Rename(id, _) => {
                    effects.changed = true;
                    lock(&self.suspicions).forget(&id.name);
                }
                OwnedNotification::MemberUp(_) => effects.changed = true,
                OwnedNotification::ProbeFailed(..) => effects.probes_failed += 1,
                OwnedNotification::DataReceived(header) => match header.message {
                    foca::Message::Ack(_) => effects.acks += 1,
                    foca::Message::ForwardedAck { .. } => {
                        effects.acks += 1;
                        effects.indirect_acks += 1;
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        let due = lock(&self.suspicions).to_check();
        for (name, incarnation) in due {
            // The note may arrive before the suspicion itself does: check whatever we do not
            // already hold down.
            let in_question = self.foca.iter_membership_state().find(|m| {
                m.id().name == name && m.incarnation() == incarnation && m.state() != State::Down
            });
            if let Some(member) = in_question {
                effects.checks.push((member.id().clone(), incarnation));
            }
        }
        effects
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announces_slow_down_once_the_member_list_is_quiet_and_speed_up_when_it_changes() {
        let me = NodeId {
            name: "a".into(),
            addr: "127.0.0.1:1".parse().expect("address"),
            incarnation: 1,
        };
        let mut membership = Membership::new(me, Timings::default(), 1);
        assert_eq!(membership.announce_period(), Some(ANNOUNCE_WHILE_CHANGING));
        membership.pace_announces(QUIET_AFTER - Duration::from_millis(1));
        assert_eq!(membership.announce_period(), Some(ANNOUNCE_WHILE_CHANGING));
        membership.pace_announces(QUIET_AFTER);
        assert_eq!(membership.announce_period(), Some(ANNOUNCE_WHILE_QUIET));
        membership.pace_announces(Duration::ZERO);
        assert_eq!(membership.announce_period(), Some(ANNOUNCE_WHILE_CHANGING));
    }
}
