//! The discrete-event loop: every agent's membership and replication cores, driven through the
//! same shell logic as the agent over a simulated network.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;

use agent::api::WorkloadState;
use agent::cluster::dissemination::{Dissemination, known_entries};
use agent::cluster::health::LocalHealth;
use agent::cluster::hints::Digests;
use agent::cluster::membership::{Effects, Liveness, Membership, MembershipError, NodeId};
use agent::cluster::repair::RepairSchedule;
use agent::cluster::replication::Replica;
use orchestrator::WorkloadId;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

mod observe;
mod reports;

use crate::events::{Event, Scheduled, SyncMessage};
use crate::outcome::{Detection, FalseDeath, Outcome, Stats};
use crate::scenario::{SEEDS, Scenario, node_addr, node_name, node_record};
use crate::virtual_time::{EPOCH_WALL_MS, Micros, duration_micros, ms, secs};

/// The agent's period for re-announcing to the seeds while alone (`gossip::REANNOUNCE`).
const REANNOUNCE: Micros = secs(1);

/// The agent's period for sending pending rumours (`sync::ROUND`).
const SPREAD_ROUND: Micros = ms(100);

/// The agent's reconcile loop rests between passes four times as long as a pass took, at most
/// `node::RECONCILE_MAX_GAP`; passes cost no virtual time here, so the simulation rests the
/// most, as an agent busy with a burst does.
const RECONCILE_MIN_GAP: Micros = ms(100);

/// How long after it is started a replica reports `running` (a process's start-up).
const STARTUP: Micros = ms(500);

/// The agent's period for starting an anti-entropy round (`sync::ANTI_ENTROPY_PERIOD`).
const ANTI_ENTROPY_PERIOD: Micros = secs(2);

/// Newcomers greeted at once per change of the member list (see `sync_with_new_members`).
const GREET_PER_CHANGE: usize = 2;

/// `sync::MEMBER_LISTS_EVERY`: at most one member-list swap per agent this often.
const MEMBER_LISTS_EVERY: Micros = secs(3);

struct SimNode {
    name: String,
    addr: SocketAddr,
    membership: Membership,
    replica: Replica,
    crashed: bool,
    /// This node's wall clock runs this far ahead of the others, so versions are not all
    /// written against one perfect clock.
    skew_ms: u64,
    /// Whom `sync::run`'s rounds exchange with.
    repair: RepairSchedule,
    /// The last peer whose packet showed a different state or view (`Gossip::take_diverged`).
    diverged: Option<usize>,
    /// This node's member digest, kept until its member list next changes.
    member_digest: Option<u64>,
    /// When its active member set last changed, to pace the periodic announce.
    quiet_since: Micros,
    /// The active peers `sync::run` already knows; a peer outside this set gets an exchange at
    /// once when it appears.
    synced: BTreeSet<usize>,
    /// Anti-entropy rounds served in the current second, for the load statistic.
    served: (u64, u64),
    /// When this node last swapped member lists (`Node::may_swap_member_lists`).
    last_member_lists: Option<Micros>,
    /// The active peers, kept until the member list next changes (foca flags every change of
    /// the active set: a join, a death, a rename), so a 1,000-agent run does not rebuild
    /// member lists every round.
    active: Option<Vec<usize>>,
    /// The ownership ring over those peers and itself, kept as long as `active` is.
    ring: Option<std::rc::Rc<reports::Ring>>,
    /// The replicas this node owns, for the ring and the applications it was computed from.
    owned: Option<reports::Owned>,
    /// Lifeguard's local health multiplier (`gossip::Shell::health`).
    health: LocalHealth,
    /// The changes this node is spreading (`Node::rumours`).
    rumours: Dissemination,
    /// Sync messages and their bytes (as JSON, the agent's encoding) this node sent.
    sent: (u64, u64),
    /// Burst replicas this node runs, with the state it last reported.
    runs: BTreeMap<WorkloadId, WorkloadState>,
    /// A reconcile pass is scheduled (wake-ups coalesce, as the agent's `Notify` does).
    reconcile_due: bool,
}

pub struct Sim {
    scenario: Scenario,
    now: Micros,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    /// The network's and the shells' random choices (delays, losses, phases).
    rng: StdRng,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    stats: Stats,
    false_deaths: Vec<FalseDeath>,
    /// Per crashed node: when it crashed, and which live nodes have declared it down since.
    detections: BTreeMap<usize, (Micros, BTreeSet<usize>, Detection)>,
    membership_converged_since: Option<Micros>,
    /// With reports: since when every live node holds the same state and every replica is
    /// reported running by exactly one live node; and every instant that became true.
    settled_since: Option<Micros>,
    settled: Vec<Micros>,
    replicas_converged_since: Option<Micros>,
    first_full_view: Option<Micros>,
    /// Every application's replica ids with their hashes on the ring, computed once per
    /// application generation and shared by all nodes.
    replica_ids: reports::ReplicaIds,
}

/// The members a node treats as live, as the agent's `active_peers` does.
pub fn is_active(liveness: Liveness) -> bool {
    liveness != Liveness::Down
}

impl Sim {
    pub fn new(scenario: Scenario) -> Self {
        let mut rng = StdRng::seed_from_u64(scenario.seed);
        let nodes: Vec<SimNode> = (0..scenario.nodes)
            .map(|i| {
                let id = NodeId {
                    name: node_name(i),
                    addr: node_addr(i),
                    incarnation: 0,
                };
                let membership_seed = scenario.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i as u64;
                SimNode {
                    name: id.name.clone(),
                    addr: id.addr,
                    membership: Membership::new(id, scenario.timings, membership_seed),
                    replica: Replica::new(&node_name(i)),
                    crashed: false,
                    skew_ms: rng.random_range(0..=50),
                    repair: RepairSchedule::default(),
                    diverged: None,
                    member_digest: None,
                    quiet_since: 0,
                    synced: BTreeSet::new(),
                    served: (0, 0),
                    last_member_lists: None,
                    active: None,
                    ring: None,
                    owned: None,
                    health: LocalHealth::default(),
                    rumours: Dissemination::default(),
                    sent: (0, 0),
                    runs: BTreeMap::new(),
                    reconcile_due: false,
                }
            })
            .collect();
        let by_addr = nodes.iter().enumerate().map(|(i, n)| (n.addr, i)).collect();
        let mut sim = Sim {
            scenario,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            rng,
            nodes,
            by_addr,
            stats: Stats::default(),
            false_deaths: Vec::new(),
            detections: BTreeMap::new(),
            membership_converged_since: None,
            settled_since: None,
            settled: Vec::new(),
            first_full_view: None,
            replicas_converged_since: None,
            replica_ids: reports::ReplicaIds::default(),
        };
        let script = sim.scenario.script(&mut sim.rng);
        for (at, event) in script {
            sim.schedule(at, event);
        }
        sim.schedule(sim.scenario.sample_every, Event::Sample);
        sim
    }

    fn schedule(&mut self, at: Micros, event: Event) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            event,
        });
    }

    fn wall_ms(&self, node: usize) -> u64 {
        EPOCH_WALL_MS + self.now / 1000 + self.nodes[node].skew_ms
    }

    /// Whether the network drops the next message to `to`, and otherwise when `to` handles it.
    fn transit(&mut self, to: usize) -> Option<Micros> {
        if self.scenario.loss > 0.0 && self.rng.random_bool(self.scenario.loss) {
            return None;
        }
        let mut at = self.now + self.rng.random_range(ms(1)..=ms(20));
        if let Some(slow) = self.scenario.slow
            && slow.node == to
            && (slow.from..slow.until).contains(&self.now)
        {
            at += slow.delay;
        }
        Some(at)
    }

    pub fn run(mut self) -> Outcome {
        let end = self.scenario.last_disruption() + self.scenario.settle;
        while let Some(next) = self.queue.peek() {
            if next.at > end {
                break;
            }
            let Scheduled { at, event, .. } = self.queue.pop().expect("peeked");
            self.now = at;
            self.stats.events += 1;
            self.dispatch(event);
        }
        self.now = end;
        self.outcome()
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Start { node } => self.start(node),
            Event::Reannounce { node } => self.reannounce(node),
            Event::AntiEntropy { node } => self.anti_entropy(node),
            Event::Swim {
                from,
                to,
                digests,
                packet,
            } => self.deliver_swim(from, to, digests, &packet),
            Event::Timer { node, timer } => {
                if !self.nodes[node].crashed {
                    let step = self.nodes[node].membership.handle_timer(timer);
                    self.apply(node, step);
                }
            }
            Event::CheckDue {
                node,
                target,
                member,
                incarnation,
            } => {
                // The check is a request over QUIC, which retransmits: it fails only when the
                // target is gone or too slow to answer within the timeout.
                let timeout = duration_micros(self.nodes[node].membership.check_timeout());
                let answered = !self.nodes[target].crashed
                    && !self.scenario.slow.is_some_and(|slow| {
                        slow.node == target
                            && (slow.from..slow.until).contains(&self.now)
                            && slow.delay >= timeout
                    });
                if !self.nodes[node].crashed && !answered {
                    self.stats.checks_failed += 1;
                    let step = self.nodes[node]
                        .membership
                        .check_failed(&member, incarnation);
                    self.apply(node, step);
                }
            }
            Event::Sync { from, to, message } => self.deliver_sync(from, to, message),
            Event::Deploy { node, app } => {
                let wall = self.wall_ms(node);
                let updates = self.nodes[node].replica.put_app(*app, wall);
                self.learned(node, updates, true);
            }
            Event::Spread { node } => self.spread(node),
            Event::Reconcile { node } => self.reconcile(node),
            Event::Crash { node } => {
                self.nodes[node].crashed = true;
                self.detections
                    .insert(node, (self.now, BTreeSet::new(), Detection::default()));
            }
            Event::Sample => {
                self.sample();
                self.schedule(self.now + self.scenario.sample_every, Event::Sample);
            }
        }
    }

    fn start(&mut self, node: usize) {
        let wall = self.wall_ms(node);
        // Alone, the node has nobody to tell its record yet: the rumour waits for members.
        let record = self.nodes[node].replica.put_node(node_record(node), wall);
        self.learned(node, record, true);
        self.announce_to_seeds(node);
        // The loops start with the process; their first round comes one period later.
        self.schedule(self.now + REANNOUNCE, Event::Reannounce { node });
        self.schedule(self.now + ANTI_ENTROPY_PERIOD, Event::AntiEntropy { node });
        self.schedule(self.now + SPREAD_ROUND, Event::Spread { node });
    }

    fn announce_to_seeds(&mut self, node: usize) {
        for seed in SEEDS {
            if seed == node || seed >= self.nodes.len() {
                continue;
            }
            let addr = self.nodes[seed].addr;
            let step = self.nodes[node].membership.announce(addr);
            self.apply(node, step);
        }
    }

    /// `gossip::Shell` re-announces while it has no active member.
    fn reannounce(&mut self, node: usize) {
        if self.nodes[node].crashed {
            return;
        }
        self.schedule(self.now + REANNOUNCE, Event::Reannounce { node });
        let quiet_for = std::time::Duration::from_micros(self.now - self.nodes[node].quiet_since);
        self.nodes[node].membership.pace_announces(quiet_for);
        if self.nodes[node].membership.active_members() == 0 {
            self.announce_to_seeds(node);
        }
    }

    /// `sync::run` starts a round per period with the peer whose packet last showed a
    /// difference, and a backstop round with the next active peer now and then.
    fn anti_entropy(&mut self, node: usize) {
        if self.nodes[node].crashed {
            return;
        }
        self.schedule(self.now + ANTI_ENTROPY_PERIOD, Event::AntiEntropy { node });
        let peers = self.active_peers(node);
        let me = &mut self.nodes[node];
        let hinted = me.diverged.take();
        if let Some(peer) = me.repair.next(&peers, hinted) {
            self.start_round(node, peer);
        }
    }

    /// What `gossip::Shell` stamps on this node's membership packets.
    fn digests(&mut self, node: usize) -> Digests {
        let me = &mut self.nodes[node];
        let members = *me
            .member_digest
            .get_or_insert_with(|| me.membership.digest());
        Digests::of(me.replica.fingerprint(), members)
    }

    /// `sync::greet_newcomers`: the agent exchanges at once with a member it has not seen
    /// active before while it lacks that member's record, so a joining agent gets the
    /// cluster's state (and the cluster its record) in a round trip. foca flags every change of
    /// the active set (join, death, rejoin) as `changed`, so that is when to look. The agent
    /// greets one newcomer at a time and looks again before each, so a burst of joins costs a
    /// few exchanges, not one per newcomer: here, at most [`GREET_PER_CHANGE`] per change.
    fn sync_with_new_members(&mut self, node: usize) {
        let active: BTreeSet<usize> = self.active_peers(node).into_iter().collect();
        let new: Vec<usize> = active
            .difference(&self.nodes[node].synced)
            .copied()
            .filter(|&peer| {
                let name = &self.nodes[peer].name;
                self.nodes[node].replica.nodes.get(name).is_none()
            })
            .take(GREET_PER_CHANGE)
            .collect();
        for peer in new {
            self.start_round(node, peer);
        }
        self.nodes[node].synced = active;
    }

    fn start_round(&mut self, node: usize, peer: usize) {
        let fingerprint = self.nodes[node].replica.fingerprint();
        let members = self.nodes[node].membership.digest();
        self.send_sync(
            node,
            peer,
            SyncMessage::Fingerprint {
                fingerprint,
                members,
            },
        );
    }

    /// The node indices of the members `node` considers alive or suspect, in name order.
    fn active_peers(&mut self, node: usize) -> Vec<usize> {
        if let Some(active) = &self.nodes[node].active {
            return active.clone();
        }
        let members = self.nodes[node].membership.members();
        let mut peers = Vec::with_capacity(members.len());
        for (id, liveness) in members.values() {
            if !is_active(*liveness) {
                continue;
            }
            match self.by_addr.get(&id.addr) {
                Some(&peer) => peers.push(peer),
                None => self.stats.swim_unroutable += 1,
            }
        }
        self.nodes[node].active = Some(peers.clone());
        peers
    }

    fn send_sync(&mut self, from: usize, to: usize, message: SyncMessage) {
        let bytes = message.wire_bytes();
        self.send_sized(from, to, message, bytes);
    }

    /// [`Sim::send_sync`] for a message whose size is known (one batch sent to several
    /// members is counted once and charged to each send).
    pub(super) fn send_sized(&mut self, from: usize, to: usize, message: SyncMessage, bytes: u64) {
        self.stats.sync_sent += 1;
        self.stats.sync_bytes += bytes;
        let sent = &mut self.nodes[from].sent;
        *sent = (sent.0 + 1, sent.1 + bytes);
        let entries = match &message {
            SyncMessage::Reply { updates, .. } => updates.len(),
            SyncMessage::Push { updates } => updates.len(),
            _ => 0,
        };
        self.stats.sync_entries_sent += entries as u64;
        match self.transit(to) {
            Some(at) => self.schedule(at, Event::Sync { from, to, message }),
            None => self.stats.sync_lost += 1,
        }
    }

    fn deliver_sync(&mut self, from: usize, to: usize, message: SyncMessage) {
        if self.nodes[to].crashed {
            self.stats.sync_to_crashed += 1;
            return;
        }
        let wall = self.wall_ms(to);
        // Membership lists go to the failure detector, as `Gossip::apply` does.
        let message = match message {
            SyncMessage::Members { states, answer } => {
                let mine = self.nodes[to].membership.states();
                let step = self.nodes[to].membership.apply(states);
                self.apply(to, step);
                if answer {
                    let reply = SyncMessage::Members {
                        states: mine,
                        answer: false,
                    };
                    self.send_sync(to, from, reply);
                }
                return;
            }
            SyncMessage::InSync {
                in_sync,
                members_in_sync: false,
            } => {
                // `Node::may_swap_member_lists`: at most one swap per agent per 10 s.
                let due = self.nodes[to]
                    .last_member_lists
                    .is_none_or(|at| self.now >= at + MEMBER_LISTS_EVERY);
                if due {
                    self.nodes[to].last_member_lists = Some(self.now);
                    let states = self.nodes[to].membership.states();
                    self.send_sync(
                        to,
                        from,
                        SyncMessage::Members {
                            states,
                            answer: true,
                        },
                    );
                }
                SyncMessage::InSync {
                    in_sync,
                    members_in_sync: true,
                }
            }
            other => other,
        };
        let members_digest = self.nodes[to].membership.digest();
        let replica = &mut self.nodes[to].replica;
        let reply = match message {
            SyncMessage::Fingerprint {
                fingerprint,
                members,
            } => {
                let in_sync = replica.fingerprint() == fingerprint;
                self.count_round_served(to);
                Some(SyncMessage::InSync {
                    in_sync,
                    members_in_sync: members_digest == members,
                })
            }
            SyncMessage::InSync { in_sync: true, .. } => {
                self.stats.sync_rounds_in_sync += 1;
                None
            }
            SyncMessage::InSync { in_sync: false, .. } => Some(SyncMessage::Digest {
                digest: replica.digest(),
            }),
            SyncMessage::Digest { digest } => {
                let (updates, wanted) = replica.answer(&digest);
                Some(SyncMessage::Reply {
                    updates: Box::new(updates),
                    wanted: Box::new(wanted),
                })
            }
            SyncMessage::Reply { updates, wanted } => {
                let changed = replica.merge(&updates, wall);
                if !changed.apps.is_empty() || !changed.nodes.is_empty() {
                    self.wake_reconciler(to);
                }
                let replica = &self.nodes[to].replica;
                (!wanted.is_empty()).then(|| SyncMessage::Push {
                    updates: Rc::new(replica.entries_for(&wanted)),
                })
            }
            SyncMessage::Push { updates } => {
                self.stats.pushes_received += 1;
                self.stats.push_entries_received += updates.len() as u64;
                let changed = replica.merge(&updates, wall);
                self.stats.push_entries_new += changed.len() as u64;
                // `sync::merge`: say which entries were known (the old agent's plain
                // acknowledgement in the baseline), and pass on what is new here.
                let known = if self.scenario.push_to_all {
                    Vec::new()
                } else {
                    known_entries(&updates, &changed)
                };
                self.learned(to, changed, false);
                Some(SyncMessage::Pushed {
                    sent: updates,
                    known,
                })
            }
            SyncMessage::Pushed { sent, known } => {
                self.nodes[to].rumours.feedback(&sent, &known);
                None
            }
            SyncMessage::Members { .. } => unreachable!("member lists are handled above"),
        };
        if let Some(reply) = reply {
            self.send_sync(to, from, reply);
        }
    }

    fn count_round_served(&mut self, node: usize) {
        self.stats.sync_rounds += 1;
        let second = self.now / secs(1);
        let served = &mut self.nodes[node].served;
        if served.0 != second {
            *served = (second, 0);
        }
        served.1 += 1;
        if served.1 > self.stats.max_rounds_served_per_second {
            self.stats.max_rounds_served_per_second = served.1;
            self.stats.busiest = Some((self.nodes[node].name.clone(), second));
        }
    }

    fn deliver_swim(&mut self, from: usize, to: usize, digests: Digests, packet: &[u8]) {
        if self.nodes[to].crashed {
            self.stats.swim_to_crashed += 1;
            return;
        }
        if self.digests(to).compare(digests).any() {
            self.nodes[to].diverged = Some(from);
        }
        // The transport hands the state machine the name from the sender's certificate.
        let certified = self.nodes[from].name.clone();
        let step = self.nodes[to].membership.handle_packet(&certified, packet);
        self.apply(to, step);
    }

    /// Carries out what the state machine asked for, as `gossip::Shell::apply` does.
    fn apply(&mut self, node: usize, step: Result<Effects, MembershipError>) {
        let effects = match step {
            Ok(effects) => effects,
            Err(e) => {
                *self
                    .stats
                    .membership_errors
                    .entry(e.to_string())
                    .or_default() += 1;
                return;
            }
        };
        if effects.changed {
            self.nodes[node].member_digest = None;
            self.nodes[node].quiet_since = self.now;
        }
        for (member, incarnation) in effects.checks {
            self.stats.checks += 1;
            let Some(&target) = self.by_addr.get(&member.addr) else {
                continue;
            };
            let at = self.now + duration_micros(self.nodes[node].membership.check_timeout());
            self.schedule(
                at,
                Event::CheckDue {
                    node,
                    target,
                    member,
                    incarnation,
                },
            );
        }
        // A death this node declared goes to every member at once, as `Request::Verdict`.
        if let Some(notice) = effects.notice {
            for addr in notice.to {
                let Some(&to) = self.by_addr.get(&addr) else {
                    continue;
                };
                self.stats.verdicts += 1;
                let message = SyncMessage::Members {
                    states: notice.states.clone(),
                    answer: false,
                };
                self.send_sync(node, to, message);
            }
        }
        let digests = self.digests(node);
        for (addr, packet) in effects.send {
            self.stats.swim_sent += 1;
            let Some(&to) = self.by_addr.get(&addr) else {
                self.stats.swim_unroutable += 1;
                continue;
            };
            match self.transit(to) {
                Some(at) => self.schedule(
                    at,
                    Event::Swim {
                        from: node,
                        to,
                        digests,
                        packet,
                    },
                ),
                None => self.stats.swim_lost += 1,
            }
        }
        if effects.changed {
            self.nodes[node].active = None;
            self.nodes[node].ring = None;
        }
        // `gossip::Shell`'s Lifeguard: failed probes raise this node's health score, acks
        // lower it, and the failure detector's timers stretch by 1 + score. (Virtual timers
        // never fire late, so that input stays silent here.)
        let health = &mut self.nodes[node].health;
        for _ in 0..effects.probes_failed {
            health.probe_failed();
        }
        for _ in 0..effects.acks {
            health.acked();
        }
        for (after, timer) in effects.timers {
            let after = match timer {
                foca::Timer::ProbeRandomMember(_) | foca::Timer::SendIndirectProbe { .. } => {
                    self.nodes[node].health.scale(after)
                }
                _ => after,
            };
            let at = self.now + duration_micros(after);
            self.schedule(at, Event::Timer { node, timer });
        }
        if effects.changed {
            self.record_false_deaths(node, &effects.down);
            self.record_detections(node, &effects.down);
            self.sync_with_new_members(node);
            self.wake_reconciler(node);
        }
    }
}
