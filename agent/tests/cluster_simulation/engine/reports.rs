//! What the agents run and how they tell each other: changes become rumours (`Node::spread`,
//! `sync::spread`), and each agent's reconciler runs and reports the replicas it owns.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::rc::Rc;

use agent::api::WorkloadState;
use agent::cluster::replication::{Updates, WorkloadRecord, workload_key};
use agent::store::StoredApp;
use orchestrator::WorkloadId;

use super::{RECONCILE_MIN_GAP, SPREAD_ROUND, STARTUP, Sim};
use crate::events::{Event, SyncMessage};
use crate::outcome::Coverage;

impl Sim {
    /// `Node::spread`: changes this node learned become rumours, and its reconciler wakes
    /// when the applications changed.
    pub(super) fn learned(&mut self, node: usize, updates: Updates, local: bool) {
        if updates.is_empty() {
            return;
        }
        if !updates.apps.is_empty() || !updates.nodes.is_empty() {
            self.wake_reconciler(node);
        }
        if self.scenario.push_to_all {
            // The baseline: the writer pushes each change at once to every active member,
            // and nobody passes on what it receives.
            if local {
                let message = SyncMessage::Push {
                    updates: Rc::new(updates),
                };
                let bytes = message.wire_bytes();
                for peer in self.active_peers(node) {
                    self.send_sized(node, peer, message.clone(), bytes);
                }
            }
            return;
        }
        let members = self.active_peers(node).len();
        self.nodes[node].rumours.offer(updates, members);
    }

    /// `sync::spread`: one round of rumours to a few random members.
    pub(super) fn spread(&mut self, node: usize) {
        if self.nodes[node].crashed {
            return;
        }
        self.schedule(self.now + SPREAD_ROUND, Event::Spread { node });
        if self.nodes[node].rumours.pending() == 0 {
            return;
        }
        let peers = self.active_peers(node);
        let addrs: Vec<SocketAddr> = peers.iter().map(|&p| self.nodes[p].addr).collect();
        let Some(round) = self.nodes[node].rumours.round(&addrs, &mut self.rng) else {
            return;
        };
        let message = SyncMessage::Push {
            updates: Rc::new(round.updates),
        };
        let bytes = message.wire_bytes();
        for target in round.targets {
            let to = self.by_addr[&target];
            self.send_sized(node, to, message.clone(), bytes);
        }
    }

    pub(super) fn wake_reconciler(&mut self, node: usize) {
        if self.scenario.reports && !self.nodes[node].reconcile_due {
            self.nodes[node].reconcile_due = true;
            self.schedule(self.now + RECONCILE_MIN_GAP, Event::Reconcile { node });
        }
    }

    /// The reconciler, as far as the cluster sees it: the node runs the replicas it owns and
    /// reports their state (`pending`, then `running` after [`STARTUP`]), and removes the
    /// reports of replicas it no longer owns. Ownership is consistent hashing over the node's
    /// own view of the active members, a stand-in for the plan (whose agreement the other
    /// tests check) that costs `replicas x log members` instead of a plan per node per wake.
    pub(super) fn reconcile(&mut self, node: usize) {
        self.nodes[node].reconcile_due = false;
        if self.nodes[node].crashed {
            return;
        }
        let ring = match &self.nodes[node].ring {
            Some(ring) => Rc::clone(ring),
            None => {
                let mut members: Vec<usize> = self.active_peers(node);
                members.push(node);
                let ring = Rc::new(Ring::new(
                    members.iter().map(|&m| self.nodes[m].name.as_str()),
                ));
                self.nodes[node].ring = Some(Rc::clone(&ring));
                ring
            }
        };
        let me = self.nodes[node].name.clone();
        let apps_fingerprint = self.nodes[node].replica.apps.fingerprint();
        let owned = match &self.nodes[node].owned {
            Some(owned) if Rc::ptr_eq(&owned.ring, &ring) && owned.apps == apps_fingerprint => {
                Rc::clone(&owned.ids)
            }
            _ => {
                let mut ids = BTreeSet::new();
                for (_, stored) in self.nodes[node].replica.apps.iter() {
                    for (hash, id) in self.replica_ids.of(stored).iter() {
                        if ring.owner_of_hash(*hash) == me {
                            ids.insert(id.clone());
                        }
                    }
                }
                let ids = Rc::new(ids);
                self.nodes[node].owned = Some(Owned {
                    ring: Rc::clone(&ring),
                    apps: apps_fingerprint,
                    ids: Rc::clone(&ids),
                });
                ids
            }
        };
        let wall = self.wall_ms(node);
        let sim_node = &mut self.nodes[node];
        let mut updates = Updates::default();
        let gone: Vec<WorkloadId> = sim_node
            .runs
            .keys()
            .filter(|id| !owned.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            sim_node.runs.remove(&id);
            updates.extend(
                sim_node
                    .replica
                    .delete_workload(&workload_key(&id, &me), wall),
            );
        }
        let mut starting = false;
        for id in owned.iter() {
            let state = match sim_node.runs.get(id) {
                None => WorkloadState::Pending,
                Some(WorkloadState::Pending) => WorkloadState::Running,
                Some(_) => continue,
            };
            starting |= state == WorkloadState::Pending;
            sim_node.runs.insert(id.clone(), state);
            let record = WorkloadRecord {
                id: id.clone(),
                node: me.clone(),
                state,
                restarts: 0,
                message: String::new(),
                pid: None,
                fingerprint: 1,
                learner: None,
                since_ms: 0,
                last_exit: String::new(),
                address: None,
            };
            updates.extend(sim_node.replica.put_workload(record, wall));
        }
        if starting {
            sim_node.reconcile_due = true;
            self.schedule(self.now + STARTUP, Event::Reconcile { node });
        }
        self.learned(node, updates, true);
    }

    /// How the replicas of every application are reported, as the first live node sees it:
    /// each should be `running` on exactly one live node.
    pub(super) fn coverage(&self) -> Coverage {
        let Some(observer) = self.nodes.iter().find(|n| !n.crashed) else {
            return Coverage::default();
        };
        let live = self.live_names();
        let mut running: HashMap<&WorkloadId, usize> = HashMap::new();
        for (_, record) in observer.replica.workloads.iter() {
            if record.state == WorkloadState::Running && live.contains(record.node.as_str()) {
                *running.entry(&record.id).or_default() += 1;
            }
        }
        let mut coverage = Coverage::default();
        for (_, stored) in observer.replica.apps.iter() {
            for component in &stored.app.components {
                for replica in 0..component.replicas {
                    let id = WorkloadId {
                        app: stored.app.name.clone(),
                        component: component.name.clone(),
                        replica,
                    };
                    coverage.wanted += 1;
                    match running.get(&id).copied().unwrap_or(0) {
                        0 => coverage.missing += 1,
                        1 => coverage.running_once += 1,
                        _ => coverage.duplicated += 1,
                    }
                }
            }
        }
        coverage
    }
}

/// Consistent hashing over member names, 16 points per member: who owns a replica in
/// [`Sim::reconcile`]. A member's death moves only its own replicas. Kept per node, like
/// its active peers, until its member list changes.
pub(super) struct Ring(Vec<(u64, String)>);

impl Ring {
    fn new<'a>(members: impl Iterator<Item = &'a str>) -> Self {
        let mut points: Vec<(u64, String)> = members
            .flat_map(|m| (0..16u8).map(move |v| (hash(&[m.as_bytes(), &[v]]), m.to_string())))
            .collect();
        points.sort();
        Ring(points)
    }

    fn owner_of_hash(&self, h: u64) -> &str {
        let i = self.0.partition_point(|(p, _)| *p < h) % self.0.len();
        &self.0[i].1
    }
}

/// The replicas a node owned when it last reconciled, and what that was computed from: kept
/// until the ring or the applications change, so a wake-up for a node record costs nothing.
pub(super) struct Owned {
    ring: Rc<Ring>,
    apps: u64,
    ids: Rc<BTreeSet<WorkloadId>>,
}

/// Every application's replica ids with their ring hashes, by application name and generation.
#[derive(Default)]
pub(super) struct ReplicaIds(HashMap<(String, u64), HashedIds>);

/// An application's replica ids, each with its hash on the ring.
type HashedIds = Rc<Vec<(u64, WorkloadId)>>;

impl ReplicaIds {
    fn of(&mut self, stored: &StoredApp) -> HashedIds {
        let key = (stored.app.name.clone(), stored.generation);
        let ids = self.0.entry(key).or_insert_with(|| {
            let ids = stored.app.components.iter().flat_map(|c| {
                (0..c.replicas).map(|replica| WorkloadId {
                    app: stored.app.name.clone(),
                    component: c.name.clone(),
                    replica,
                })
            });
            Rc::new(
                ids.map(|id| (hash(&[id.to_string().as_bytes()]), id))
                    .collect(),
            )
        });
        Rc::clone(ids)
    }
}

fn hash(parts: &[&[u8]]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&parts.concat())
}
