//! What one run does: the cluster's size, the network's loss, the crashes, and the applications
//! deployed to it, described by the same types the agent replicates.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use agent::cluster::membership::Timings;
use agent::cluster::replication::NodeRecord;
use agent::store::StoredApp;
use orchestrator::plan::NodeInfo;
use orchestrator::{
    Application, Component, Placement, ProcessSpec, Resources, RestartPolicy, Spread, Workload,
};

use rand::RngExt;
use rand::rngs::StdRng;

use crate::events::Event;
use crate::virtual_time::{Micros, ms, secs};

/// The seeds every node announces to, by index (the agent's `--seed` list).
pub const SEEDS: [usize; 3] = [0, 1, 2];

/// How the batch application looks before and after node 1 scales it down, so the final plans
/// also show that a later deploy from another node wins everywhere.
pub const BATCH_REPLICAS_FIRST: u32 = 150;
pub const BATCH_REPLICAS_SECOND: u32 = 140;
pub const CACHE_REPLICAS: u32 = 12;
pub const SENSOR_REPLICAS: u32 = 9;

/// One run of the simulation.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub nodes: usize,
    /// Probability that any one message (SWIM datagram or sync message) is lost.
    pub loss: f64,
    pub crashes: usize,
    pub seed: u64,
    /// When node 0 deploys the applications, and when node 1 redeploys one of them.
    pub deploy_at: Micros,
    pub redeploy_at: Micros,
    /// Crashes happen one every `crash_every`, starting at `first_crash_at`.
    pub first_crash_at: Micros,
    pub crash_every: Micros,
    /// How long the cluster runs after the last disruption (crash or deploy).
    pub settle: Micros,
    /// Agents start at random instants within this long from the beginning.
    pub start_within: Micros,
    /// Whether agents run and report the replicas they own (see `Sim::reconcile`).
    pub reports: bool,
    /// The dissemination before rumours, as a baseline: every local write pushed at once to
    /// every active member.
    pub push_to_all: bool,
    /// How often the simulator checks whether the cluster has converged.
    pub sample_every: Micros,
    /// Instead of the default applications: `(at, deploying node, app)`.
    pub apps: Option<Vec<(Micros, usize, StoredApp)>>,
    /// Every agent's failure-detector timings.
    pub timings: Timings,
    /// One starved agent: everything sent to it is handled this much later, in a window.
    pub slow: Option<Slow>,
}

/// An agent starved of CPU (a burst on its machine): it handles every message it receives
/// `delay` late between `from` and `until`, so its probes seem to go unanswered.
#[derive(Debug, Clone, Copy)]
pub struct Slow {
    pub node: usize,
    pub from: Micros,
    pub until: Micros,
    pub delay: Micros,
}

impl Scenario {
    pub fn new(nodes: usize, loss: f64, crashes: usize, seed: u64) -> Self {
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
            reports: false,
            push_to_all: false,
            sample_every: ms(250),
            apps: None,
            timings: Timings::default(),
            slow: None,
        }
    }

    /// The scale scenario: `nodes` agents that run and report their replicas; a process
    /// application of `base` replicas deployed at 5 s, a second of `burst` replicas all at
    /// once at 30 s, then `crashes` agents crashing together at 60 s (a crash wave).
    pub fn scale(nodes: usize, base: u32, burst: u32, crashes: usize, seed: u64) -> Self {
        let app = |name: &str, replicas| StoredApp {
            app: Application {
                name: name.into(),
                components: vec![process_component("worker", replicas, Placement::default())],
                policies: vec![],
            },
            generation: 1,
            deployed_ms: 0,
            stable: Default::default(),
            history: Vec::new(),
        };
        Scenario {
            deploy_at: secs(5),
            redeploy_at: secs(30),
            first_crash_at: secs(60),
            crash_every: 0,
            settle: secs(60),
            reports: true,
            sample_every: secs(1),
            apps: Some(vec![
                (secs(5), 0, app("fleet", base)),
                (secs(30), 1, app("burst", burst)),
            ]),
            ..Scenario::new(nodes, 0.0, crashes, seed)
        }
    }

    /// When the views and replicas must agree: the last crash, or the last deploy without.
    pub fn last_disruption(&self) -> Micros {
        if self.crashes == 0 {
            self.redeploy_at
        } else {
            self.first_crash_at + self.crash_every * (self.crashes as u64 - 1)
        }
    }

    /// Agents start within the first `start_within` (a fleet rollout, not a lockstep), node 0
    /// deploys, node 1 redeploys, then some non-seed nodes crash. Listed in the order they are
    /// to be scheduled, which breaks ties between events at the same instant.
    pub fn script(&self, rng: &mut StdRng) -> Vec<(Micros, Event)> {
        let mut script: Vec<(Micros, Event)> = (0..self.nodes)
            .map(|node| {
                (
                    rng.random_range(0..self.start_within),
                    Event::Start { node },
                )
            })
            .collect();
        let deploy = |at, node, app| {
            (
                at,
                Event::Deploy {
                    node,
                    app: Box::new(app),
                },
            )
        };
        match &self.apps {
            Some(apps) => {
                for (at, node, app) in apps {
                    script.push(deploy(*at, *node, app.clone()));
                }
            }
            None => {
                script.push(deploy(
                    self.deploy_at,
                    0,
                    batch_app(BATCH_REPLICAS_FIRST, 1),
                ));
                script.push(deploy(self.deploy_at, 0, edge_app()));
                script.push(deploy(
                    self.redeploy_at,
                    1,
                    batch_app(BATCH_REPLICAS_SECOND, 2),
                ));
            }
        }
        // Victims are never seeds nor deployers, so the script itself stays meaningful.
        assert!(
            self.crashes + SEEDS.len() < self.nodes,
            "test bug: too many crashes for the cluster size"
        );
        let mut victims = BTreeSet::new();
        while victims.len() < self.crashes {
            victims.insert(rng.random_range(SEEDS.len()..self.nodes));
        }
        for (k, node) in victims.into_iter().enumerate() {
            let at = self.first_crash_at + self.crash_every * k as u64;
            script.push((at, Event::Crash { node }));
        }
        script
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
pub fn settle_time(nodes: usize) -> Micros {
    secs(2 * nodes as u64 + 20)
}

/// Every deploy must have reached every live replica this soon: writes are pushed to every
/// member at once and anti-entropy repairs lost pushes within a few 2 s rounds.
pub const REPLICAS_CONVERGE_WITHIN: Micros = secs(10);

pub fn node_name(index: usize) -> String {
    format!("node-{index:03}")
}

/// Unique per node; nothing is bound, the simulator only routes by it.
pub fn node_addr(index: usize) -> SocketAddr {
    let [_, _, hi, lo] = (index as u32).to_be_bytes();
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, hi, lo), 7946))
}

pub fn zone_of(index: usize) -> &'static str {
    ["a", "b", "c"][index % 3]
}

pub fn node_record(index: usize) -> NodeRecord {
    NodeRecord {
        info: NodeInfo {
            name: node_name(index),
            labels: BTreeMap::from([("zone".to_string(), zone_of(index).to_string())]),
            capacity: Resources {
                cpu_millis: 4000,
                memory_bytes: 8 << 30,
            },
            runtimes: BTreeSet::from(["process".to_string()]),
            cordoned: false,
        },
        address: node_addr(index),
        version: "sim".into(),
        left: false,
        node_ip: None,
    }
}

pub fn process_component(name: &str, replicas: u32, placement: Placement) -> Component {
    Component {
        name: name.into(),
        workload: Workload::Process(ProcessSpec {
            command: vec!["sleep".into(), "infinity".into()],
            env: vec![],
            working_dir: None,
            restart: RestartPolicy::Always,
            probes: Default::default(),
        }),
        replicas,
        placement,
        resources: Resources {
            cpu_millis: 250,
            memory_bytes: 128 << 20,
        },
        depends_on: vec![],
        rollout: None,
        service: None,
        gateway: None,
        limits: Default::default(),
    }
}

/// A plain scaled-out process: most of the placement work, and the one that gets redeployed.
pub fn batch_app(replicas: u32, generation: u64) -> StoredApp {
    StoredApp {
        app: Application {
            name: "batch".into(),
            components: vec![process_component("worker", replicas, Placement::default())],
            policies: vec![],
        },
        generation,
        deployed_ms: 0,
        stable: Default::default(),
        history: Vec::new(),
    }
}

/// Placement intents that depend on node labels: one replica per node within zone b, and an
/// even spread over zones, so a plan is only right if every node record is known.
pub fn edge_app() -> StoredApp {
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
        deployed_ms: 0,
        stable: Default::default(),
        history: Vec::new(),
    }
}
