//! Deterministic simulation of a whole cluster's membership and replication cores, with no
//! sockets, threads or clocks.
//!
//! Every agent runs SWIM ([`Membership`]) and an LWW replica ([`Replica`]), and places work by
//! running the same pure [`plan`] on its own view. That design is only correct if, once the
//! network settles, every live agent ends up with the same view: the same live members and the
//! same replicated state, hence the same plan. Real clusters of 100+ machines are too slow and
//! too irreproducible to test that, so this file drives the sans-IO cores of 100+ agents from a
//! discrete-event loop instead:
//!
//! - a virtual clock and a priority queue of `(time, seq, event)`, where `seq` breaks ties so a
//!   run is a pure function of its seed;
//! - a network that delays every message by 1-20 ms and drops a configurable fraction;
//! - the same shell logic as the agent (`gossip.rs`, `sync.rs`): re-announce to the seeds while
//!   alone, push local writes to every active member, and run anti-entropy (fingerprint, then
//!   digest, then the missing entries) at once with each new member and every 2 s with the next
//!   active member, round-robin;
//! - crashes: a crashed node silently stops processing anything.
//!
//! Each test ends with the properties the design promises: every live node sees exactly the
//! live nodes (and the crashed ones as down or forgotten), holds the same replica, and computes
//! the same plan, which puts nothing on a crashed node. Replicas must agree within seconds of
//! a deploy; membership is checked only after [`settle_time`], whose doc says why that is
//! minutes rather than seconds at this size. Each run prints its statistics (`--nocapture`).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use agent::membership::{
    Effects, Liveness, MemberState, Membership, MembershipError, NodeId, Timings,
};
use agent::replication::{NodeRecord, Replica, StateDigest, Updates, Wanted};
use agent::store::StoredApp;
use bytes::Bytes;
use foca::Timer;
use orchestrator::plan::{NodeInfo, Plan, Running, plan};
use orchestrator::{
    Application, Component, Placement, ProcessSpec, Resources, RestartPolicy, Spread, Workload,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Virtual time is kept in microseconds so that foca's sub-second timers and the 1-20 ms
/// network delays compose without rounding.
type Micros = u64;

const fn ms(millis: u64) -> Micros {
    millis * 1000
}

const fn secs(seconds: u64) -> Micros {
    seconds * 1_000_000
}

/// The wall clock at virtual time zero. Any realistic epoch will do; it keeps the HLC
/// versions looking like the ones a real agent writes.
const EPOCH_WALL_MS: u64 = 1_700_000_000_000;

/// The agent's period for re-announcing to the seeds while alone (`gossip::REANNOUNCE`).
const REANNOUNCE: Micros = secs(1);

/// The agent's period for starting an anti-entropy round (`sync::ANTI_ENTROPY_PERIOD`).
const ANTI_ENTROPY_PERIOD: Micros = secs(2);

/// `sync::MEMBER_LISTS_EVERY`: at most one member-list swap per agent this often.
const MEMBER_LISTS_EVERY: Micros = secs(10);

/// How often the simulator checks whether the cluster has converged, to report when it did.
const SAMPLE_EVERY: Micros = ms(250);

/// The seeds every node announces to, by index (the agent's `--seed` list).
const SEEDS: [usize; 3] = [0, 1, 2];

/// How the batch application looks before and after node 1 scales it down, so the final plans
/// also show that a later deploy from another node wins everywhere.
const BATCH_REPLICAS_FIRST: u32 = 150;
const BATCH_REPLICAS_SECOND: u32 = 140;
const CACHE_REPLICAS: u32 = 12;
const SENSOR_REPLICAS: u32 = 9;

/// One run of the simulation.
#[derive(Debug, Clone)]
struct Scenario {
    nodes: usize,
    /// Probability that any one message (SWIM datagram or sync message) is lost.
    loss: f64,
    crashes: usize,
    seed: u64,
    /// When node 0 deploys the applications, and when node 1 redeploys one of them.
    deploy_at: Micros,
    redeploy_at: Micros,
    /// Crashes happen one every `crash_every`, starting at `first_crash_at`.
    first_crash_at: Micros,
    crash_every: Micros,
    /// How long the cluster runs after the last disruption (crash or deploy).
    settle: Micros,
    /// Agents start at random instants within this long from the beginning.
    start_within: Micros,
}

impl Scenario {
    fn new(nodes: usize, loss: f64, crashes: usize, seed: u64) -> Self {
        Scenario {
            nodes,
            loss,
            crashes,
            seed,
            deploy_at: secs(5),
            redeploy_at: secs(12),
            first_crash_at: secs(20),
            crash_every: secs(2),
            settle: settle_time(nodes),
            start_within: secs(2),
        }
    }

    /// When the views and replicas must agree: the last crash, or the last deploy without.
    fn last_disruption(&self) -> Micros {
        if self.crashes == 0 {
            self.redeploy_at
        } else {
            self.first_crash_at + self.crash_every * (self.crashes as u64 - 1)
        }
    }
}

/// How long to let a cluster of `nodes` settle before checking it.
///
/// Not the 60 s one might expect. foca disseminates each membership change on a bounded number
/// of messages (`max_transmissions`, 7 for the `Config::new_lan(64)` the agent uses), so a few
/// (observer, subject) pairs miss it: a node that heard "X is suspect" but not "X is down" keeps
/// X suspect, with no timer of its own, until it probes X itself; a node that never heard of a
/// joiner waits for a periodic announce or a probe. foca probes members in shuffled rounds, so
/// the same member comes up again within two rounds of N probe periods. Hence 2N s (probe
/// period 1 s), plus a margin for the last probe's suspicion to play out.
/// `membership_converges_within_60_s_of_the_last_crash` shows the shorter bound failing.
///
/// Under loss this is a rule of thumb rather than a bound: refuted suspicions still make foca
/// 2.0.0 send the suspect a `TurnUndead` (its `ChangeSuspectToDown` handler ignores whether the
/// suspicion still held), so live nodes keep rejoining under new incarnations throughout a run,
/// and each rejoin has a dissemination tail of its own.
fn settle_time(nodes: usize) -> Micros {
    secs(2 * nodes as u64 + 20)
}

/// Every deploy must have reached every live replica this soon: writes are pushed to every
/// member at once and anti-entropy repairs lost pushes within a few 2 s rounds.
const REPLICAS_CONVERGE_WITHIN: Micros = secs(10);

/// The anti-entropy protocol of `sync.rs`, one message per hop. In the agent these are
/// request/response pairs on a QUIC stream; a lost one ends the round, as a timeout would.
#[derive(Debug)]
enum SyncMessage {
    Fingerprint {
        fingerprint: u64,
        members: u64,
    },
    InSync {
        in_sync: bool,
        members_in_sync: bool,
    },
    /// Membership anti-entropy: a member list; `answer` asks for the receiver's in return.
    Members {
        states: Vec<MemberState>,
        answer: bool,
    },
    Digest {
        digest: StateDigest,
    },
    Reply {
        updates: Updates,
        wanted: Wanted,
    },
    Push {
        updates: Updates,
    },
}

#[derive(Debug)]
enum Event {
    /// The agent starts: it writes its own node record and announces itself to the seeds.
    Start {
        node: usize,
    },
    /// `gossip::Shell`'s timer: re-announce to the seeds while alone.
    Reannounce {
        node: usize,
    },
    /// `sync::run`'s timer: one anti-entropy round with the next active peer.
    AntiEntropy {
        node: usize,
    },
    Swim {
        from: usize,
        to: usize,
        packet: Bytes,
    },
    Timer {
        node: usize,
        timer: Timer<NodeId>,
    },
    Sync {
        from: usize,
        to: usize,
        message: SyncMessage,
    },
    Deploy {
        node: usize,
        app: Box<StoredApp>,
    },
    Crash {
        node: usize,
    },
    Sample,
}

/// A queued event. Ordered by `(at, seq)` only, reversed, so `BinaryHeap` pops the earliest
/// event first and events at the same instant in the order they were scheduled.
struct Scheduled {
    at: Micros,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Counters a run reports; compared whole by the determinism test.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Stats {
    events: u64,
    swim_sent: u64,
    swim_lost: u64,
    /// Datagrams that reached a crashed node (and were ignored by it).
    swim_to_crashed: u64,
    /// Datagrams to an address no node owns; should stay zero.
    swim_unroutable: u64,
    /// Errors from `handle_packet`/`handle_timer`/`announce`, by message. Counted, not fatal:
    /// the agent only logs them too.
    membership_errors: BTreeMap<String, u64>,
    sync_sent: u64,
    sync_lost: u64,
    sync_to_crashed: u64,
    sync_rounds: u64,
    sync_rounds_in_sync: u64,
    /// The most anti-entropy rounds one node served within one second of virtual time.
    max_rounds_served_per_second: u64,
    /// Which node served them, and in which second of virtual time.
    busiest: Option<(String, u64)>,
    /// Entries carried by anti-entropy replies and pushes (eager pushes included).
    sync_entries_sent: u64,
    /// The most (observer, live subject) pairs in `Suspect` seen at one sample: how much
    /// transient false suspicion the loss causes.
    max_suspected_live_pairs: u64,
}

/// A live node declared `Down` by another node, as seen when the observer's member list
/// changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FalseDeath {
    at_ms: u64,
    observer: String,
    subject: String,
    incarnation: u64,
}

struct SimNode {
    name: String,
    addr: SocketAddr,
    membership: Membership,
    replica: Replica,
    crashed: bool,
    /// This node's wall clock runs this far ahead of the others, so versions are not all
    /// written against one perfect clock.
    skew_ms: u64,
    /// The agent's round-robin position over its active peers (`sync::run`).
    round: usize,
    /// The active peers `sync::run` already knows; a peer outside this set gets an exchange at
    /// once when it appears.
    synced: BTreeSet<usize>,
    /// Anti-entropy rounds served in the current second, for the load statistic.
    served: (u64, u64),
    /// When this node last swapped member lists (`Node::may_swap_member_lists`).
    last_member_lists: Option<Micros>,
}

/// Everything a run ends with; two runs with the same seed must produce equal outcomes.
#[derive(Debug, PartialEq)]
struct Outcome {
    live: BTreeSet<String>,
    crashed: BTreeSet<String>,
    /// Per live node: every other member it knows, with incarnation and liveness.
    views: BTreeMap<String, BTreeMap<String, (u64, Liveness)>>,
    fingerprints: BTreeMap<String, u64>,
    plans: BTreeMap<String, Plan>,
    stats: Stats,
    false_deaths: Vec<FalseDeath>,
    /// Live nodes that had to rejoin under a new incarnation (after a false `Down`), with it.
    renewed: BTreeMap<String, u64>,
    /// When the membership views, and the replicas, last became (and then stayed) converged.
    membership_converged_at: Option<Micros>,
    replicas_converged_at: Option<Micros>,
    /// The first instant at which every live node saw every other live node as active.
    first_full_view_at: Option<Micros>,
    end: Micros,
}

struct Sim {
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
    membership_converged_since: Option<Micros>,
    replicas_converged_since: Option<Micros>,
    first_full_view: Option<Micros>,
}

fn node_name(index: usize) -> String {
    format!("node-{index:03}")
}

/// Unique per node; nothing is bound, the simulator only routes by it.
fn node_addr(index: usize) -> SocketAddr {
    let [_, _, hi, lo] = (index as u32).to_be_bytes();
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, hi, lo), 7946))
}

fn zone_of(index: usize) -> &'static str {
    ["a", "b", "c"][index % 3]
}

fn node_record(index: usize) -> NodeRecord {
    NodeRecord {
        info: NodeInfo {
            name: node_name(index),
            labels: BTreeMap::from([("zone".to_string(), zone_of(index).to_string())]),
            capacity: Resources {
                cpu_millis: 4000,
                memory_bytes: 8 << 30,
            },
            runtimes: BTreeSet::from(["process".to_string()]),
        },
        address: node_addr(index),
        version: "sim".into(),
        left: false,
    }
}

fn process_component(name: &str, replicas: u32, placement: Placement) -> Component {
    Component {
        name: name.into(),
        workload: Workload::Process(ProcessSpec {
            command: vec!["sleep".into(), "infinity".into()],
            env: vec![],
            working_dir: None,
            restart: RestartPolicy::Always,
        }),
        replicas,
        placement,
        resources: Resources {
            cpu_millis: 250,
            memory_bytes: 128 << 20,
        },
        depends_on: vec![],
    }
}

/// A plain scaled-out process: most of the placement work, and the one that gets redeployed.
fn batch_app(replicas: u32, generation: u64) -> StoredApp {
    StoredApp {
        app: Application {
            name: "batch".into(),
            components: vec![process_component("worker", replicas, Placement::default())],
            policies: vec![],
        },
        generation,
    }
}

/// Placement intents that depend on node labels: one replica per node within zone b, and an
/// even spread over zones, so a plan is only right if every node record is known.
fn edge_app() -> StoredApp {
    let cache = Placement {
        node_selector: BTreeMap::from([("zone".to_string(), "b".to_string())]),
        spread: Some(Spread {
            topology_key: None,
            max_skew: 1,
        }),
        ..Placement::default()
    };
    let sensor = Placement {
        spread: Some(Spread {
            topology_key: Some("zone".into()),
            max_skew: 1,
        }),
        ..Placement::default()
    };
    StoredApp {
        app: Application {
            name: "edge".into(),
            components: vec![
                process_component("cache", CACHE_REPLICAS, cache),
                process_component("sensor", SENSOR_REPLICAS, sensor),
            ],
            policies: vec![],
        },
        generation: 1,
    }
}

/// The members a node treats as live, as the agent's `active_peers` does.
fn is_active(liveness: Liveness) -> bool {
    liveness != Liveness::Down
}

impl Sim {
    fn new(scenario: Scenario) -> Self {
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
                    membership: Membership::new(id, Timings::default(), membership_seed),
                    replica: Replica::new(&node_name(i)),
                    crashed: false,
                    skew_ms: rng.random_range(0..=50),
                    round: 0,
                    synced: BTreeSet::new(),
                    served: (0, 0),
                    last_member_lists: None,
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
            membership_converged_since: None,
            first_full_view: None,
            replicas_converged_since: None,
        };
        sim.schedule_script();
        sim
    }

    /// Agents start within the first two seconds (a fleet rollout, not a lockstep), node 0
    /// deploys, node 1 redeploys, then some non-seed nodes crash.
    fn schedule_script(&mut self) {
        for node in 0..self.nodes.len() {
            let start = self.rng.random_range(0..self.scenario.start_within);
            self.schedule(start, Event::Start { node });
        }
        let deploy_at = self.scenario.deploy_at;
        self.schedule(
            deploy_at,
            Event::Deploy {
                node: 0,
                app: Box::new(batch_app(BATCH_REPLICAS_FIRST, 1)),
            },
        );
        self.schedule(
            deploy_at,
            Event::Deploy {
                node: 0,
                app: Box::new(edge_app()),
            },
        );
        let redeploy_at = self.scenario.redeploy_at;
        self.schedule(
            redeploy_at,
            Event::Deploy {
                node: 1,
                app: Box::new(batch_app(BATCH_REPLICAS_SECOND, 2)),
            },
        );
        // Victims are never seeds nor deployers, so the script itself stays meaningful.
        let mut victims = BTreeSet::new();
        assert!(
            self.scenario.crashes + SEEDS.len() < self.nodes.len(),
            "test bug: too many crashes for the cluster size"
        );
        while victims.len() < self.scenario.crashes {
            victims.insert(self.rng.random_range(SEEDS.len()..self.nodes.len()));
        }
        for (k, node) in victims.into_iter().enumerate() {
            let at = self.scenario.first_crash_at + self.scenario.crash_every * k as u64;
            self.schedule(at, Event::Crash { node });
        }
        self.schedule(SAMPLE_EVERY, Event::Sample);
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

    /// Whether the network drops the next message, and otherwise when it arrives.
    fn transit(&mut self) -> Option<Micros> {
        if self.scenario.loss > 0.0 && self.rng.random_bool(self.scenario.loss) {
            None
        } else {
            Some(self.now + self.rng.random_range(ms(1)..=ms(20)))
        }
    }

    fn run(mut self) -> Outcome {
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
            Event::Swim { from, to, packet } => self.deliver_swim(from, to, &packet),
            Event::Timer { node, timer } => {
                if !self.nodes[node].crashed {
                    let step = self.nodes[node].membership.handle_timer(timer);
                    self.apply(node, step);
                }
            }
            Event::Sync { from, to, message } => self.deliver_sync(from, to, message),
            Event::Deploy { node, app } => {
                let wall = self.wall_ms(node);
                let updates = self.nodes[node].replica.put_app(*app, wall);
                self.push_to_all(node, updates);
            }
            Event::Crash { node } => self.nodes[node].crashed = true,
            Event::Sample => {
                self.sample();
                self.schedule(self.now + SAMPLE_EVERY, Event::Sample);
            }
        }
    }

    fn start(&mut self, node: usize) {
        let wall = self.wall_ms(node);
        // Alone, the node has nobody to push its record to; anti-entropy will carry it.
        self.nodes[node].replica.put_node(node_record(node), wall);
        self.announce_to_seeds(node);
        // Both loops start with the process; their first round comes one period later.
        self.schedule(self.now + REANNOUNCE, Event::Reannounce { node });
        self.schedule(self.now + ANTI_ENTROPY_PERIOD, Event::AntiEntropy { node });
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
        if self.nodes[node].membership.active_members() == 0 {
            self.announce_to_seeds(node);
        }
    }

    /// `sync::run` starts one round per period with the next active peer in name order.
    fn anti_entropy(&mut self, node: usize) {
        if self.nodes[node].crashed {
            return;
        }
        self.schedule(self.now + ANTI_ENTROPY_PERIOD, Event::AntiEntropy { node });
        let peers = self.active_peers(node);
        if peers.is_empty() {
            return;
        }
        let me = &mut self.nodes[node];
        let peer = peers[me.round % peers.len()];
        me.round = me.round.wrapping_add(1);
        self.start_round(node, peer);
    }

    /// `sync::run` also exchanges at once with every member it has not seen active before, so a
    /// joining agent gets the cluster's state (and the cluster its record) in one round trip.
    /// foca flags every change of the active set (join, death, rejoin) as `changed`, so that is
    /// when to look.
    fn sync_with_new_members(&mut self, node: usize) {
        let active: BTreeSet<usize> = self.active_peers(node).into_iter().collect();
        let new: Vec<usize> = active
            .difference(&self.nodes[node].synced)
            .copied()
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
        peers
    }

    /// The eager push of `Node::broadcast`: every local write goes to every active member.
    fn push_to_all(&mut self, node: usize, updates: Updates) {
        for peer in self.active_peers(node) {
            self.send_sync(
                node,
                peer,
                SyncMessage::Push {
                    updates: updates.clone(),
                },
            );
        }
    }

    fn send_sync(&mut self, from: usize, to: usize, message: SyncMessage) {
        self.stats.sync_sent += 1;
        if let SyncMessage::Reply { updates, .. } | SyncMessage::Push { updates } = &message {
            self.stats.sync_entries_sent +=
                (updates.apps.len() + updates.nodes.len() + updates.workloads.len()) as u64;
        }
        match self.transit() {
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
                Some(SyncMessage::Reply { updates, wanted })
            }
            SyncMessage::Reply { updates, wanted } => {
                replica.merge(updates, wall);
                (!wanted.is_empty()).then(|| SyncMessage::Push {
                    updates: replica.entries_for(&wanted),
                })
            }
            SyncMessage::Push { updates } => {
                replica.merge(updates, wall);
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

    fn deliver_swim(&mut self, from: usize, to: usize, packet: &[u8]) {
        if self.nodes[to].crashed {
            self.stats.swim_to_crashed += 1;
            return;
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
        for (addr, packet) in effects.send {
            self.stats.swim_sent += 1;
            let Some(&to) = self.by_addr.get(&addr) else {
                self.stats.swim_unroutable += 1;
                continue;
            };
            match self.transit() {
                Some(at) => self.schedule(
                    at,
                    Event::Swim {
                        from: node,
                        to,
                        packet,
                    },
                ),
                None => self.stats.swim_lost += 1,
            }
        }
        for (after, timer) in effects.timers {
            let at = self.now + duration_micros(after);
            self.schedule(at, Event::Timer { node, timer });
        }
        if effects.changed {
            self.record_false_deaths(node);
            self.sync_with_new_members(node);
        }
    }

    /// foca notifies every `Down` verdict, so checking on each change catches every live node
    /// that someone declared dead, however briefly.
    fn record_false_deaths(&mut self, observer: usize) {
        for (name, (id, liveness)) in self.nodes[observer].membership.members() {
            if liveness != Liveness::Down {
                continue;
            }
            let Some(&subject) = self.by_addr.get(&id.addr) else {
                continue;
            };
            if self.nodes[subject].crashed {
                continue;
            }
            let death = FalseDeath {
                at_ms: self.now / 1000,
                observer: self.nodes[observer].name.clone(),
                subject: name,
                incarnation: id.incarnation,
            };
            let known = self.false_deaths.iter().any(|d| {
                (&d.observer, &d.subject, d.incarnation)
                    == (&death.observer, &death.subject, death.incarnation)
            });
            if !known {
                self.false_deaths.push(death);
            }
        }
    }

    /// Notes whether the cluster is converged right now, to report when it last became so.
    fn sample(&mut self) {
        let live: BTreeSet<&str> = self
            .nodes
            .iter()
            .filter(|n| !n.crashed)
            .map(|n| n.name.as_str())
            .collect();
        let mut views_agree = true;
        let mut suspicions = 0;
        for node in self.nodes.iter().filter(|n| !n.crashed) {
            let members = node.membership.members();
            let mut seen_active = 0;
            for (name, (_, liveness)) in &members {
                let subject_live = live.contains(name.as_str());
                match (subject_live, liveness) {
                    (true, Liveness::Suspect) => suspicions += 1,
                    (true, Liveness::Down) | (false, Liveness::Alive | Liveness::Suspect) => {
                        views_agree = false
                    }
                    _ => {}
                }
                if subject_live && is_active(*liveness) {
                    seen_active += 1;
                }
            }
            if seen_active != live.len() - 1 {
                views_agree = false;
            }
        }
        self.stats.max_suspected_live_pairs = self.stats.max_suspected_live_pairs.max(suspicions);

        let mut fingerprints = self
            .nodes
            .iter()
            .filter(|n| !n.crashed)
            .map(|n| n.replica.fingerprint());
        let first = fingerprints.next();
        let replicas_agree = fingerprints.all(|f| Some(f) == first);

        let now = self.now;
        track(&mut self.membership_converged_since, views_agree, now);
        if views_agree && self.first_full_view.is_none() {
            self.first_full_view = Some(now);
        }
        track(&mut self.replicas_converged_since, replicas_agree, now);
    }

    fn outcome(&self) -> Outcome {
        let live_nodes: Vec<&SimNode> = self.nodes.iter().filter(|n| !n.crashed).collect();
        Outcome {
            live: live_nodes.iter().map(|n| n.name.clone()).collect(),
            crashed: self
                .nodes
                .iter()
                .filter(|n| n.crashed)
                .map(|n| n.name.clone())
                .collect(),
            views: live_nodes
                .iter()
                .map(|n| {
                    let view = n
                        .membership
                        .members()
                        .into_iter()
                        .map(|(name, (id, liveness))| (name, (id.incarnation, liveness)))
                        .collect();
                    (n.name.clone(), view)
                })
                .collect(),
            fingerprints: live_nodes
                .iter()
                .map(|n| (n.name.clone(), n.replica.fingerprint()))
                .collect(),
            plans: live_nodes
                .iter()
                .map(|n| (n.name.clone(), plan_from_own_view(n)))
                .collect(),
            stats: self.stats.clone(),
            false_deaths: self.false_deaths.clone(),
            renewed: live_nodes
                .iter()
                .map(|n| (n.name.clone(), n.membership.me().incarnation))
                .filter(|(_, incarnation)| *incarnation > 0)
                .collect(),
            membership_converged_at: self.membership_converged_since,
            replicas_converged_at: self.replicas_converged_since,
            first_full_view_at: self.first_full_view,
            end: self.now,
        }
    }
}

/// Keeps `since` at the start of the current run of converged samples.
fn track(since: &mut Option<Micros>, converged: bool, now: Micros) {
    match (converged, *since) {
        (true, None) => *since = Some(now),
        (false, _) => *since = None,
        (true, Some(_)) => {}
    }
}

/// Rounded up, so a timer never fires before its time.
fn duration_micros(d: Duration) -> Micros {
    let micros = d.as_nanos().div_ceil(1000);
    Micros::try_from(micros).expect("foca timers are far below u64::MAX microseconds")
}

/// What the agent does before reconciling: apps from its replica, nodes = itself plus every
/// member it considers alive or suspect, described by their replicated records. Nothing runs
/// yet, so `running` is empty.
fn plan_from_own_view(node: &SimNode) -> Plan {
    let apps: Vec<Application> = node
        .replica
        .apps
        .iter()
        .map(|(_, s)| s.app.clone())
        .collect();
    let mut names = vec![node.name.clone()];
    names.extend(
        node.membership
            .members()
            .into_iter()
            .filter(|(_, (_, liveness))| is_active(*liveness))
            .map(|(name, _)| name),
    );
    let infos: Vec<NodeInfo> = names
        .iter()
        .filter_map(|name| node.replica.nodes.get(name).map(|r| r.info.clone()))
        .collect();
    plan(&apps, &infos, &Running::new())
}

fn seconds(micros: Micros) -> f64 {
    micros as f64 / 1e6
}

fn report(label: &str, scenario: &Scenario, outcome: &Outcome, elapsed: Duration) {
    let since = |at: Option<Micros>| match at {
        Some(at) if at >= scenario.last_disruption() => format!(
            "{:.2} s after the last disruption (t={:.2} s)",
            seconds(at - scenario.last_disruption()),
            seconds(at)
        ),
        Some(at) => format!("before the last disruption, at t={:.2} s", seconds(at)),
        None => "never".into(),
    };
    let s = &outcome.stats;
    println!(
        "[{label}] {} nodes, {:.0}% loss, {} crashed, seed {}: \
         {:.0} s virtual in {:.2} s real, {} events",
        scenario.nodes,
        scenario.loss * 100.0,
        outcome.crashed.len(),
        scenario.seed,
        seconds(outcome.end),
        elapsed.as_secs_f64(),
        s.events,
    );
    println!(
        "  membership converged {}",
        since(outcome.membership_converged_at)
    );
    println!(
        "  replicas converged   {}",
        since(outcome.replicas_converged_at)
    );
    println!(
        "  swim: {} datagrams sent, {} lost, {} to crashed nodes, {} unroutable",
        s.swim_sent, s.swim_lost, s.swim_to_crashed, s.swim_unroutable
    );
    println!(
        "  sync: {} messages sent ({} entries), {} lost, {} to crashed nodes; \
         {} rounds, {} already in sync",
        s.sync_sent,
        s.sync_entries_sent,
        s.sync_lost,
        s.sync_to_crashed,
        s.sync_rounds,
        s.sync_rounds_in_sync,
    );
    if let Some((node, second)) = &s.busiest {
        println!(
            "  busiest: {node} served {} rounds in second {second} of the run",
            s.max_rounds_served_per_second
        );
    }
    println!(
        "  at most {} (observer, live node) pairs in Suspect at once; \
         {} false Down verdicts during the run",
        s.max_suspected_live_pairs,
        outcome.false_deaths.len()
    );
    // One line per wrongly killed identity: a verdict spreads to most of the cluster.
    let mut verdicts: BTreeMap<(&String, u64), (u64, u64, usize)> = BTreeMap::new();
    for death in &outcome.false_deaths {
        let entry = verdicts
            .entry((&death.subject, death.incarnation))
            .or_insert((death.at_ms, death.at_ms, 0));
        entry.0 = entry.0.min(death.at_ms);
        entry.1 = entry.1.max(death.at_ms);
        entry.2 += 1;
    }
    for ((subject, incarnation), (first, last, observers)) in verdicts {
        println!(
            "    live {subject} (incarnation {incarnation}) declared down by {observers} nodes \
             between t={:.3} s and t={:.3} s",
            first as f64 / 1000.0,
            last as f64 / 1000.0
        );
    }
    if !outcome.renewed.is_empty() {
        println!("  rejoined under a new incarnation: {:?}", outcome.renewed);
    }
    // Where the views still disagree at the end, to tell a slow tail from a real bug.
    let wrong = wrong_views(outcome);
    println!(
        "  at the end, {} (observer, subject) pairs are wrong; {} live nodes disagree with the \
         most common plan",
        wrong.len(),
        plan_dissenters(outcome)
    );
    for line in wrong.iter().take(10) {
        println!("    {line}");
    }
    if !s.membership_errors.is_empty() {
        println!("  membership errors: {:?}", s.membership_errors);
    }
}

/// Every (observer, subject) pair whose liveness is wrong at the end: a live node not seen as
/// alive or suspect, or a crashed one still seen so.
fn wrong_views(outcome: &Outcome) -> Vec<String> {
    let mut wrong = Vec::new();
    for (observer, view) in &outcome.views {
        for live in outcome.live.iter().filter(|n| *n != observer) {
            match view.get(live) {
                Some((_, liveness)) if is_active(*liveness) => {}
                seen => wrong.push(format!("{observer} sees live {live} as {seen:?}")),
            }
        }
        for crashed in &outcome.crashed {
            if let Some(seen @ (_, liveness)) = view.get(crashed)
                && is_active(*liveness)
            {
                wrong.push(format!("{observer} sees crashed {crashed} as {seen:?}"));
            }
        }
    }
    wrong
}

/// How many live nodes compute a plan other than the most common one.
fn plan_dissenters(outcome: &Outcome) -> usize {
    let plans: Vec<&Plan> = outcome.plans.values().collect();
    let most_common = plans
        .iter()
        .map(|p| plans.iter().filter(|q| *q == p).count())
        .max()
        .unwrap_or(0);
    plans.len() - most_common
}

/// The three end-state properties of the design; see the module docs.
fn assert_converged(outcome: &Outcome) {
    assert!(!outcome.live.is_empty(), "test bug: no live nodes");

    // 1. Every live node sees exactly the other live nodes as alive or suspect, and the crashed
    //    ones as down or not at all.
    for (observer, view) in &outcome.views {
        let active: BTreeSet<&String> = view
            .iter()
            .filter(|(_, (_, liveness))| is_active(*liveness))
            .map(|(name, _)| name)
            .collect();
        let expected: BTreeSet<&String> = outcome.live.iter().filter(|n| *n != observer).collect();
        let missing: Vec<_> = expected.difference(&active).collect();
        let extra: Vec<_> = active.difference(&expected).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{observer}'s view is wrong: live but not active {missing:?}, \
             active but crashed {extra:?}"
        );
        for crashed in &outcome.crashed {
            if let Some((_, liveness)) = view.get(crashed) {
                assert_eq!(
                    *liveness,
                    Liveness::Down,
                    "{observer} still sees crashed {crashed} as {liveness:?}"
                );
            }
        }
        for (subject, (_, liveness)) in view {
            assert!(
                !(outcome.live.contains(subject) && *liveness == Liveness::Down),
                "{observer} holds live {subject} down at the end"
            );
        }
    }
    // Same view also means the same incarnation of everyone: a node that was wrongly declared
    // down rejoins under a higher one, and all must have learned it.
    let incarnations = |observer: &String| -> BTreeMap<&String, u64> {
        outcome.views[observer]
            .iter()
            .filter(|(name, _)| outcome.live.contains(*name))
            .map(|(name, (incarnation, _))| (name, *incarnation))
            .collect()
    };
    let mut all_incarnations: BTreeMap<&String, BTreeSet<u64>> = BTreeMap::new();
    for observer in outcome.views.keys() {
        for (name, incarnation) in incarnations(observer) {
            all_incarnations
                .entry(name)
                .or_default()
                .insert(incarnation);
        }
    }
    for (name, seen) in &all_incarnations {
        assert_eq!(
            seen.len(),
            1,
            "live nodes disagree on {name}'s incarnation: {seen:?}"
        );
    }

    // 2. Every live node holds the same replicated state.
    let fingerprints: BTreeSet<u64> = outcome.fingerprints.values().copied().collect();
    assert_eq!(
        fingerprints.len(),
        1,
        "replicas differ: {} distinct fingerprints among {} live nodes",
        fingerprints.len(),
        outcome.live.len()
    );

    // 3. Every live node computes the same plan, which is complete and uses live nodes only.
    let (first_node, reference) = outcome.plans.iter().next().expect("live nodes exist");
    for (node, own) in &outcome.plans {
        if own != reference {
            let differing = reference
                .assignments
                .iter()
                .filter(|(id, host)| own.assignments.get(*id) != Some(*host))
                .count();
            panic!(
                "{node}'s plan differs from {first_node}'s: {differing} of {} assignments differ, \
                 {} vs {} unschedulable",
                reference.assignments.len(),
                own.unschedulable.len(),
                reference.unschedulable.len()
            );
        }
    }
    assert!(
        reference.unschedulable.is_empty(),
        "unschedulable: {:?}",
        reference.unschedulable
    );
    let expected = BATCH_REPLICAS_SECOND + CACHE_REPLICAS + SENSOR_REPLICAS;
    assert_eq!(
        reference.assignments.len(),
        expected as usize,
        "the plan should hold the redeployed batch ({BATCH_REPLICAS_SECOND}) and edge replicas"
    );
    for (id, host) in &reference.assignments {
        assert!(
            outcome.live.contains(host),
            "{id} is assigned to {host}, which is not live"
        );
    }
}

fn run(scenario: &Scenario, label: &str) -> Outcome {
    let started = Instant::now();
    let outcome = Sim::new(scenario.clone()).run();
    report(label, scenario, &outcome, started.elapsed());
    outcome
}

/// Deploys must reach every live replica within [`REPLICAS_CONVERGE_WITHIN`] of the last one,
/// and stay there: crashes do not change replicated state.
fn assert_replicas_converged_promptly(scenario: &Scenario, outcome: &Outcome) {
    let at = outcome
        .replicas_converged_at
        .expect("replicas never converged");
    assert!(
        at <= scenario.redeploy_at + REPLICAS_CONVERGE_WITHIN,
        "replicas converged only at t={:.2} s, more than {:.0} s after the redeploy at t={:.2} s",
        seconds(at),
        seconds(REPLICAS_CONVERGE_WITHIN),
        seconds(scenario.redeploy_at)
    );
}

/// The baseline: a reliable network, no failures. If this does not converge, nothing will.
#[test]
fn a_calm_cluster_of_120_converges_on_one_view_and_one_plan() {
    let scenario = Scenario::new(120, 0.0, 0, 1);
    let outcome = run(&scenario, "calm");
    assert_converged(&outcome);
    assert_replicas_converged_promptly(&scenario, &outcome);
    assert!(
        outcome.false_deaths.is_empty(),
        "false deaths without loss or crashes: {:?}",
        outcome.false_deaths
    );
    assert!(
        outcome.stats.membership_errors.is_empty(),
        "{:?}",
        outcome.stats.membership_errors
    );
}

/// The real configuration under stress: 5% loss on every message and five nodes crashing one
/// after another. SWIM's indirect probes and suspicion must keep loss from killing live nodes
/// for good, and anti-entropy must repair every lost push.
#[test]
fn a_lossy_cluster_of_120_with_crashes_converges_without_false_deaths() {
    let scenario = Scenario::new(120, 0.05, 5, 7);
    let outcome = run(&scenario, "lossy");
    assert_eq!(outcome.crashed.len(), 5);
    // Includes: no live node is down in any live node's view. A transient wrong verdict during
    // the run is allowed (and reported above): a node declared down, or sent a spurious
    // `TurnUndead` (see `settle_time`), rejoins under a new incarnation, and `assert_converged`
    // checks that every live node learned that one.
    assert_converged(&outcome);
    assert_replicas_converged_promptly(&scenario, &outcome);
}

/// A run is a function of its seed: otherwise a failure seen once could not be replayed.
#[test]
fn the_same_seed_replays_the_same_run() {
    let scenario = Scenario::new(100, 0.05, 3, 42);
    let first = run(&scenario, "replay 1");
    let second = run(&scenario, "replay 2");
    assert_eq!(
        first.stats, second.stats,
        "packet counts differ between replays"
    );
    assert_eq!(
        first.views, second.views,
        "final views differ between replays"
    );
    assert_eq!(first.fingerprints, second.fingerprints);
    assert!(first.plans == second.plans, "plans differ between replays");
    assert_eq!(first.false_deaths, second.false_deaths);
    assert!(first == second, "the outcomes differ between replays");
    assert_converged(&first);

    // And the seed matters, so the comparison above is not vacuous (a short run is enough).
    let mut short = scenario.clone();
    short.settle = secs(5);
    let mut other_seed = short.clone();
    other_seed.seed += 1;
    let this = Sim::new(short).run();
    let other = Sim::new(other_seed).run();
    assert_ne!(
        this.stats, other.stats,
        "a different seed should change the run"
    );
}

/// The issue's bound: converged 60 s after the last crash. Without membership anti-entropy
/// this failed at 120 nodes: a node that heard "X suspect" but missed every copy of "X down"
/// kept X as suspect until its own probe cycle reached X (up to 2N probe periods), and its
/// plan differed meanwhile. Agents now swap member lists when their membership digests differ
/// during anti-entropy, which closes that gap.
#[test]
fn membership_converges_within_60_s_of_the_last_crash() {
    let mut failures = Vec::new();
    for seed in 1..=10 {
        let mut scenario = Scenario::new(120, 0.05, 5, seed);
        scenario.settle = secs(60);
        let outcome = run(&scenario, "60 s");
        let wrong = wrong_views(&outcome);
        let dissenters = plan_dissenters(&outcome);
        if !wrong.is_empty() || dissenters > 0 {
            failures.push(format!(
                "seed {seed}: {} wrong (observer, subject) pairs, e.g. {:?}; \
                 {dissenters} nodes with another plan",
                wrong.len(),
                wrong.first()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Not part of the suite: runs many seeds and prints how long convergence took, to choose (and
/// re-check) the bounds the tests above assert:
/// ```text
/// SIM_SEEDS=20 cargo test --release -p agent --test cluster_simulation sweep -- \
///     --ignored --nocapture
/// ```
#[test]
#[ignore = "exploration tool, slow"]
fn sweep_seeds_for_convergence_times() {
    let seeds: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    for (label, loss, crashes) in [("calm", 0.0, 0), ("lossy", 0.05, 5)] {
        let mut worst: Option<Micros> = Some(0);
        let mut false_deaths = 0;
        for seed in 1..=seeds {
            let scenario = Scenario::new(120, loss, crashes, seed);
            let outcome = Sim::new(scenario.clone()).run();
            let after =
                |at: Option<Micros>| at.map(|at| at.saturating_sub(scenario.last_disruption()));
            let membership = after(outcome.membership_converged_at);
            worst = worst.zip(membership).map(|(a, b)| a.max(b));
            false_deaths += outcome.false_deaths.len();
            println!(
                "{label} seed {seed}: membership {:?} s, replicas {:?} s \
                 after the last disruption; \
                 {} false Down verdicts, {} nodes rejoined, at most {} suspected live pairs",
                membership.map(seconds),
                after(outcome.replicas_converged_at).map(seconds),
                outcome.false_deaths.len(),
                outcome.renewed.len(),
                outcome.stats.max_suspected_live_pairs,
            );
        }
        println!(
            "{label}: worst membership convergence {:?} s after the last disruption, \
             {false_deaths} false Down verdicts in all",
            worst.map(seconds)
        );
    }
}

/// `gossipctl up` starts every agent within a fraction of a second. On the protocol alone
/// (messages take 1-20 ms, nothing waits for a CPU), how soon does every agent see every other?
#[test]
fn a_cluster_of_50_started_together_has_a_full_view_within_2_s() {
    let mut times = Vec::new();
    for seed in 1..=5 {
        let mut scenario = Scenario::new(50, 0.0, 0, seed);
        scenario.start_within = ms(300);
        scenario.settle = secs(1);
        let outcome = Sim::new(scenario).run();
        times.push(outcome.first_full_view_at.map(seconds));
    }
    println!("first full view at: {times:?}");
    assert!(
        times.iter().all(|t| t.is_some_and(|t| t < 2.0)),
        "{times:?}"
    );
}
