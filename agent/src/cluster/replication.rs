//! Replicated cluster state: desired applications and observed nodes and workloads.
//!
//! Each map is a last-writer-wins map on hybrid logical clocks (see [`orchestrator::state`]),
//! so merging is commutative, associative and idempotent and every agent converges whatever
//! order updates arrive in. [`Replica`] is the pure core (no I/O); [`ReplicatedState`] adds
//! persistence in sled, so a restarted agent starts from everything it had accepted.

use std::net::SocketAddr;
use std::sync::Arc;

use orchestrator::WorkloadId;
use orchestrator::plan::NodeInfo;
use orchestrator::state::{Clock, Digest, Entry, LwwMap, Timestamp};
use serde::{Deserialize, Serialize};

use crate::api::WorkloadState;
use crate::maintenance::Maintenance;
use crate::rollout::activity::Activity;
use crate::store::StoredApp;
use crate::trust::authority::{Authority, encode};
use crate::trust::revocation::Revocation;
use crate::trust::seal::Sealer;
use crate::trust::statement::{Map, statement};

/// How long a deletion is remembered. An agent partitioned away for longer than this could
/// bring a deleted entry back; a day covers any partition an operator would not notice.
pub const TOMBSTONE_TTL_MS: u64 = 24 * 3600 * 1000;

/// What a node tells the cluster about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub info: NodeInfo,
    pub address: SocketAddr,
    pub version: String,
    /// Set when the node shuts down cleanly, so others show it as `left`, not `dead`.
    #[serde(default)]
    pub left: bool,
    /// Where its replicas are reached (`gossipd --node-ip`), when that is not the IP of
    /// `address`: forwarders on other nodes connect there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_ip: Option<std::net::IpAddr>,
}

/// A replica's status as reported by the node that runs it. Keyed `APP/COMPONENT/REPLICA@NODE`,
/// so two nodes running the same replica (briefly, after a partition heals) never overwrite
/// each other's reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadRecord {
    pub id: WorkloadId,
    pub node: String,
    pub state: WorkloadState,
    pub restarts: u32,
    pub message: String,
    pub pid: Option<u32>,
    /// The definition it runs, to tell a current replica from one about to be replaced.
    pub fingerprint: u64,
    /// A learner replica's latest progress report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learner: Option<orchestrator::learner_link::LearnerProgress>,
    /// When (wall-clock milliseconds, the node's clock) it entered `state`; 0 when unknown
    /// (reports from older agents, replicas not started yet).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub since_ms: u64,
    /// Why its last run ended, when it was restarted (an exit status, a failed liveness
    /// probe), as Kubernetes keeps a container's last state.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_exit: String,
    /// Its own address, where it has one (a container on a bridge network): where clients
    /// reach it, and where its network probes go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<std::net::IpAddr>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

pub fn workload_key(id: &WorkloadId, node: &str) -> String {
    format!("{id}@{node}")
}

/// A batch of entries, as pushed on change and exchanged by anti-entropy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Updates {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<(String, Entry<StoredApp>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<(String, Entry<NodeRecord>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<(String, Entry<WorkloadRecord>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revocations: Vec<(String, Entry<Revocation>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub activity: Vec<(String, Entry<Activity>)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintenance: Vec<(String, Entry<Maintenance>)>,
}

impl Updates {
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
            && self.nodes.is_empty()
            && self.workloads.is_empty()
            && self.revocations.is_empty()
            && self.activity.is_empty()
            && self.maintenance.is_empty()
    }

    /// Entries in all maps.
    pub fn len(&self) -> usize {
        self.apps.len()
            + self.nodes.len()
            + self.workloads.len()
            + self.revocations.len()
            + self.activity.len()
            + self.maintenance.len()
    }

    pub fn extend(&mut self, other: Updates) {
        self.apps.extend(other.apps);
        self.nodes.extend(other.nodes);
        self.workloads.extend(other.workloads);
        self.revocations.extend(other.revocations);
        self.activity.extend(other.activity);
        self.maintenance.extend(other.maintenance);
    }
}

/// Versions of every entry, sent to a peer so it can tell what each side lacks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateDigest {
    pub apps: Digest,
    pub nodes: Digest,
    pub workloads: Digest,
    #[serde(default)]
    pub revocations: Digest,
    #[serde(default)]
    pub activity: Digest,
    #[serde(default)]
    pub maintenance: Digest,
}

/// Keys one side wants from the other.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Wanted {
    pub apps: Vec<String>,
    pub nodes: Vec<String>,
    pub workloads: Vec<String>,
    #[serde(default)]
    pub revocations: Vec<String>,
    #[serde(default)]
    pub activity: Vec<String>,
    #[serde(default)]
    pub maintenance: Vec<String>,
}

impl Wanted {
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
            && self.nodes.is_empty()
            && self.workloads.is_empty()
            && self.revocations.is_empty()
            && self.activity.is_empty()
            && self.maintenance.is_empty()
    }
}

/// The pure replicated state of one agent.
#[derive(Debug, Clone)]
pub struct Replica {
    pub clock: Clock,
    pub apps: LwwMap<StoredApp>,
    pub nodes: LwwMap<NodeRecord>,
    pub workloads: LwwMap<WorkloadRecord>,
    /// Revoked certificates by serial: admin-sealed, never deleted (see
    /// [`crate::trust::revocation`]).
    pub revocations: LwwMap<Revocation>,
    /// Each node's events and witnessed rollouts per application, keyed `APP@NODE` (see
    /// [`crate::rollout::activity`]).
    pub activity: LwwMap<Activity>,
    /// An admin's cordon or drain of a node, keyed by node name (see [`crate::maintenance`]).
    pub maintenance: LwwMap<Maintenance>,
    /// Checks seals before any write is merged: applications must be an admin's, node
    /// records and workload status their own node's. A running agent always has one; pure tests and the cluster
    /// simulation run without.
    pub authority: Option<Authority>,
    /// Seals this node's own record and its replicas' status (a running agent's node key).
    pub sealer: Option<Arc<Sealer>>,
    /// Node records, applications and workload status purged by revocations since the store
    /// last removed them from disk.
    pub purged_nodes: Vec<String>,
    pub purged_apps: Vec<String>,
    pub purged_workloads: Vec<String>,
    pub purged_activity: Vec<String>,
    pub purged_maintenance: Vec<String>,
}

/// Whether `authority` (if any) accepts a write of `key` in `map`; logs a refusal.
fn admitted<V: Serialize>(
    authority: Option<&Authority>,
    map: Map,
    key: &str,
    entry: &Entry<V>,
    wall_ms: u64,
) -> bool {
    let Some(authority) = authority else {
        return true;
    };
    match authority.check(map, key, entry, wall_ms) {
        Ok(_) => true,
        Err(why) => {
            let what = match map {
                Map::Apps => "an application write",
                Map::Nodes => "a node record",
                Map::Workloads => "a workload status",
                Map::Revocations => "a revocation",
                Map::Activity => "an activity record",
                Map::Maintenance => "a cordon or drain",
            };
            tracing::warn!(%key, version = ?entry.version, "dropped {what}: {why}");
            false
        }
    }
}

/// Whether a workload status is filed under its own replica and node: the seal covers the key,
/// so a node could otherwise file a record naming another node's replica under its own key.
fn named_by_its_key(key: &str, entry: &Entry<WorkloadRecord>) -> bool {
    let Some(record) = &entry.value else {
        return true;
    };
    let named = workload_key(&record.id, &record.node) == key;
    if !named {
        tracing::warn!(%key, node = %record.node, "dropped a workload status filed under another key");
    }
    named
}

/// Seals `writes` of `map` with one signature (left unsealed, with an error logged, if that
/// fails: every checking agent then drops them, as it would a forgery).
fn seal_batch<V: Serialize>(sealer: &Sealer, map: Map, writes: &mut [(String, Entry<V>)]) {
    let statements: Result<Vec<Vec<u8>>, String> = writes
        .iter()
        .map(|(key, entry)| {
            statement(map, key, &entry.version, entry.value.as_ref()).map_err(|e| e.to_string())
        })
        .collect();
    let seals = statements.and_then(|s| sealer.seal_batch(&s).map_err(|e| e.to_string()));
    match seals {
        Ok(seals) => {
            for ((_, entry), seal) in writes.iter_mut().zip(seals) {
                entry.seal = Some(encode(&seal));
            }
        }
        Err(e) => tracing::error!("cannot seal this node's writes: {e}"),
    }
}

/// Merges received entries by reference: only the ones that win here are copied (into the map
/// and into the returned changes). Gossip delivers most entries to most agents several times,
/// so the losing majority costs a lookup each, and `admit` (a signature check) runs only on
/// entries that would win.
fn merge_into<'a, V: Clone + PartialEq + Serialize + 'a>(
    map: &mut LwwMap<V>,
    clock: &mut Clock,
    entries: impl IntoIterator<Item = &'a (String, Entry<V>)>,
    wall_ms: u64,
    admit: impl Fn(&str, &Entry<V>) -> bool,
) -> Vec<(String, Entry<V>)> {
    let mut changed = Vec::new();
    for (key, entry) in entries {
        if !map.would_accept(key, entry) || !admit(key, entry) {
            continue;
        }
        // A peer with a clock far ahead is refused rather than allowed to win every write.
        if clock.observe(&entry.version, wall_ms).is_err() {
            tracing::warn!(%key, "ignoring an update from a clock too far ahead");
            continue;
        }
        if map.merge_entry_ref(key, entry) {
            changed.push((key.clone(), entry.clone()));
        }
    }
    changed
}

impl Replica {
    pub fn new(node: &str) -> Self {
        Replica {
            clock: Clock::new(node),
            apps: LwwMap::new(),
            nodes: LwwMap::new(),
            workloads: LwwMap::new(),
            revocations: LwwMap::new(),
            activity: LwwMap::new(),
            maintenance: LwwMap::new(),
            authority: None,
            sealer: None,
            purged_nodes: Vec::new(),
            purged_apps: Vec::new(),
            purged_workloads: Vec::new(),
            purged_activity: Vec::new(),
            purged_maintenance: Vec::new(),
        }
    }

    /// A fresh version for a write this agent prepares for someone else to seal.
    pub fn next_version(&mut self, wall_ms: u64) -> Timestamp {
        self.clock.tick(wall_ms)
    }

    pub fn put_app(&mut self, app: StoredApp, wall_ms: u64) -> Updates {
        let version = self.clock.tick(wall_ms);
        let key = app.app.name.clone();
        self.apps.put(key.clone(), app.clone(), version.clone());
        Updates {
            apps: vec![(key, Entry::live(app, version))],
            ..Updates::default()
        }
    }

    pub fn delete_app(&mut self, name: &str, wall_ms: u64) -> Updates {
        let version = self.clock.tick(wall_ms);
        self.apps.delete(name, version.clone());
        Updates {
            apps: vec![(name.to_string(), Entry::tombstone(version))],
            ..Updates::default()
        }
    }

    /// Writes this node's own record, sealed with its key when it has one.
    pub fn put_node(&mut self, record: NodeRecord, wall_ms: u64) -> Updates {
        let version = self.clock.tick(wall_ms);
        let mut writes = vec![(record.info.name.clone(), Entry::live(record, version))];
        if let Some(sealer) = self.sealer.as_deref() {
            seal_batch(sealer, Map::Nodes, &mut writes);
        }
        let (key, entry) = &writes[0];
        self.nodes.merge_entry(key.clone(), entry.clone());
        Updates {
            nodes: writes,
            ..Updates::default()
        }
    }

    /// Writes the status of one of this node's replicas, sealed with its key when it has one.
    pub fn put_workload(&mut self, record: WorkloadRecord, wall_ms: u64) -> Updates {
        self.report_workloads(&[], vec![record], wall_ms)
    }

    /// Removes the status of a replica this node no longer runs, sealed like a write.
    pub fn delete_workload(&mut self, key: &str, wall_ms: u64) -> Updates {
        self.report_workloads(&[key.to_string()], Vec::new(), wall_ms)
    }

    /// One reconcile pass's report: removes the status of replicas this node no longer runs
    /// (`gone`, by key) and writes `changed`, all under one seal (see
    /// [`crate::trust::batch`]) when this node has a key.
    pub fn report_workloads(
        &mut self,
        gone: &[String],
        changed: Vec<WorkloadRecord>,
        wall_ms: u64,
    ) -> Updates {
        let mut writes: Vec<(String, Entry<WorkloadRecord>)> = Vec::new();
        for key in gone {
            writes.push((key.clone(), Entry::tombstone(self.clock.tick(wall_ms))));
        }
        for record in changed {
            let key = workload_key(&record.id, &record.node);
            writes.push((key, Entry::live(record, self.clock.tick(wall_ms))));
        }
        if let Some(sealer) = self.sealer.as_deref() {
            seal_batch(sealer, Map::Workloads, &mut writes);
        }
        for (key, entry) in &writes {
            self.workloads.merge_entry(key.clone(), entry.clone());
        }
        Updates {
            workloads: writes,
            ..Updates::default()
        }
    }

    /// Writes (or, with `None`, removes) this node's activity records (events, witnessed
    /// rollouts), sealed together.
    pub fn put_activity(
        &mut self,
        records: Vec<(String, Option<Activity>)>,
        wall_ms: u64,
    ) -> Updates {
        let mut writes: Vec<(String, Entry<Activity>)> = records
            .into_iter()
            .map(|(key, activity)| {
                let version = self.clock.tick(wall_ms);
                let entry = match activity {
                    Some(activity) => Entry::live(activity, version),
                    None => Entry::tombstone(version),
                };
                (key, entry)
            })
            .collect();
        if let Some(sealer) = self.sealer.as_deref() {
            seal_batch(sealer, Map::Activity, &mut writes);
        }
        for (key, entry) in &writes {
            self.activity.merge_entry(key.clone(), entry.clone());
        }
        Updates {
            activity: writes,
            ..Updates::default()
        }
    }

    /// Merges a peer's entries; returns the ones that changed this replica. Revocations go
    /// first, so a batch that carries a revocation and entries sealed with the revoked
    /// certificate never admits the latter.
    pub fn merge(&mut self, updates: &Updates, wall_ms: u64) -> Updates {
        let revocations = merge_into(
            &mut self.revocations,
            &mut self.clock,
            &updates.revocations,
            wall_ms,
            |key, entry| {
                entry.value.is_some()
                    && admitted(
                        self.authority.as_ref(),
                        Map::Revocations,
                        key,
                        entry,
                        wall_ms,
                    )
            },
        );
        self.apply_revocations(&revocations);
        let authority = self.authority.as_ref();
        Updates {
            apps: merge_into(
                &mut self.apps,
                &mut self.clock,
                &updates.apps,
                wall_ms,
                |key, entry| admitted(authority, Map::Apps, key, entry, wall_ms),
            ),
            nodes: merge_into(
                &mut self.nodes,
                &mut self.clock,
                &updates.nodes,
                wall_ms,
                |key, entry| admitted(authority, Map::Nodes, key, entry, wall_ms),
            ),
            workloads: merge_into(
                &mut self.workloads,
                &mut self.clock,
                &updates.workloads,
                wall_ms,
                |key, entry| {
                    named_by_its_key(key, entry)
                        && admitted(authority, Map::Workloads, key, entry, wall_ms)
                },
            ),
            activity: merge_into(
                &mut self.activity,
                &mut self.clock,
                &updates.activity,
                wall_ms,
                |key, entry| admitted(authority, Map::Activity, key, entry, wall_ms),
            ),
            maintenance: merge_into(
                &mut self.maintenance,
                &mut self.clock,
                &updates.maintenance,
                wall_ms,
                |key, entry| {
                    entry.value.is_some()
                        && admitted(authority, Map::Maintenance, key, entry, wall_ms)
                },
            ),
            revocations,
        }
    }

    /// Takes in newly accepted revocations: their serials join the authority's revoked set,
    /// and entries sealed with a revoked certificate are purged: node records, workload status,
    /// and application writes the revocation does not keep (they were never trustworthy;
    /// nothing replaces them until the node comes back with a new certificate, or an admin
    /// deploys again). Purged
    /// keys are left in `purged_nodes`, `purged_apps` and `purged_workloads` for the store.
    pub fn apply_revocations(&mut self, accepted: &[(String, Entry<Revocation>)]) {
        let Some(authority) = self.authority.as_ref() else {
            return;
        };
        let mut new = false;
        for (serial, entry) in accepted {
            if let Some(revocation) = &entry.value {
                new |= authority.revoked().insert(serial, revocation);
            }
        }
        if !new {
            return;
        }
        let nodes = self
            .nodes
            .purge(|key, entry| authority.void(Map::Nodes, key, entry));
        for name in &nodes {
            tracing::warn!(node = %name, "dropped the record of a node whose certificate was revoked");
        }
        let apps = self
            .apps
            .purge(|key, entry| authority.void(Map::Apps, key, entry));
        for name in &apps {
            tracing::warn!(app = %name, "dropped an application written with a revoked certificate");
        }
        let workloads = self
            .workloads
            .purge(|key, entry| authority.void(Map::Workloads, key, entry));
        let activity = self
            .activity
            .purge(|key, entry| authority.void(Map::Activity, key, entry));
        self.purged_nodes.extend(nodes);
        self.purged_activity.extend(activity);
        let maintenance = self
            .maintenance
            .purge(|key, entry| authority.void(Map::Maintenance, key, entry));
        self.purged_maintenance.extend(maintenance);
        self.purged_apps.extend(apps);
        self.purged_workloads.extend(workloads);
    }

    /// Equal fingerprints mean equal versions everywhere: a converged pair of agents exchanges
    /// just this number per anti-entropy round.
    pub fn fingerprint(&self) -> u64 {
        let parts = [
            self.apps.fingerprint(),
            self.nodes.fingerprint(),
            self.workloads.fingerprint(),
            self.revocations.fingerprint(),
            self.activity.fingerprint(),
            self.maintenance.fingerprint(),
        ];
        let bytes: Vec<u8> = parts.iter().flat_map(|p| p.to_le_bytes()).collect();
        xxhash_rust::xxh3::xxh3_64(&bytes)
    }

    pub fn digest(&self) -> StateDigest {
        StateDigest {
            apps: self.apps.digest(),
            nodes: self.nodes.digest(),
            workloads: self.workloads.digest(),
            revocations: self.revocations.digest(),
            activity: self.activity.digest(),
            maintenance: self.maintenance.digest(),
        }
    }

    /// Answering a peer's digest: what it lacks, and what we lack from it.
    pub fn answer(&self, theirs: &StateDigest) -> (Updates, Wanted) {
        let updates = Updates {
            apps: self.apps.newer_than(&theirs.apps),
            nodes: self.nodes.newer_than(&theirs.nodes),
            workloads: self.workloads.newer_than(&theirs.workloads),
            revocations: self.revocations.newer_than(&theirs.revocations),
            activity: self.activity.newer_than(&theirs.activity),
            maintenance: self.maintenance.newer_than(&theirs.maintenance),
        };
        let wanted = Wanted {
            apps: self.apps.wanted_from(&theirs.apps),
            nodes: self.nodes.wanted_from(&theirs.nodes),
            workloads: self.workloads.wanted_from(&theirs.workloads),
            revocations: self.revocations.wanted_from(&theirs.revocations),
            activity: self.activity.wanted_from(&theirs.activity),
            maintenance: self.maintenance.wanted_from(&theirs.maintenance),
        };
        (updates, wanted)
    }

    pub fn entries_for(&self, wanted: &Wanted) -> Updates {
        Updates {
            apps: self.apps.entries_for(&wanted.apps),
            nodes: self.nodes.entries_for(&wanted.nodes),
            workloads: self.workloads.entries_for(&wanted.workloads),
            revocations: self.revocations.entries_for(&wanted.revocations),
            activity: self.activity.entries_for(&wanted.activity),
            maintenance: self.maintenance.entries_for(&wanted.maintenance),
        }
    }

    /// Forgets deletions older than [`TOMBSTONE_TTL_MS`]; returns the keys to forget on disk.
    /// Application tombstones are kept for good: they are few, and a deleted application's
    /// last admin-sealed entry, replayed after its tombstone was gone, would bring it back.
    pub fn expire_tombstones(&mut self, wall_ms: u64) -> usize {
        let before = wall_ms.saturating_sub(TOMBSTONE_TTL_MS);
        self.nodes.expire_tombstones(before)
            + self.workloads.expire_tombstones(before)
            + self.activity.expire_tombstones(before)
    }
}

mod store;

pub use store::ReplicatedState;

#[cfg(test)]
mod tests;
