//! [`ReplicatedState`]: the pure [`Replica`] behind a lock, every change written to sled, and
//! read back (and checked like anything received) when the agent starts.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use orchestrator::state::{Clock, Entry, LwwMap, Timestamp};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Replica, Updates, admitted, named_by_its_key};
use crate::store::StoreError;
use crate::trust::authority::Authority;
use crate::trust::seal::Sealer;
use crate::trust::statement::Map;

const APPS: &str = "replicated/apps";
const NODES: &str = "replicated/nodes";
const WORKLOADS: &str = "replicated/workloads";
const REVOCATIONS: &str = "replicated/revocations";
const ACTIVITY: &str = "replicated/activity";
const MAINTENANCE: &str = "replicated/maintenance";

/// The replica behind a lock, with every change written to sled.
pub struct ReplicatedState {
    replica: Mutex<Replica>,
    /// The replica's fingerprint as of its last change, readable without the lock (the
    /// failure detector's thread stamps it on every membership packet).
    fingerprint: Arc<AtomicU64>,
    db: sled::Db,
    apps: sled::Tree,
    nodes: sled::Tree,
    workloads: sled::Tree,
    revocations: sled::Tree,
    activity: sled::Tree,
    maintenance: sled::Tree,
}

fn load<V: DeserializeOwned + Clone + PartialEq + Serialize>(
    tree: &sled::Tree,
    map: &mut LwwMap<V>,
    clock: &mut Clock,
    wall_ms: u64,
    keep: impl Fn(&str, &Entry<V>) -> bool,
) -> Result<(), StoreError> {
    for item in tree.iter() {
        let (key, value) = item?;
        let key = String::from_utf8_lossy(&key).into_owned();
        let entry: Entry<V> =
            serde_json::from_slice(&value).map_err(|source| StoreError::Corrupt {
                key: key.clone(),
                source,
            })?;
        if !keep(&key, &entry) {
            tree.remove(key.as_bytes())?;
            continue;
        }
        // Later local writes must sort after everything persisted, whatever the wall clock
        // did while the agent was down.
        let _ = clock.observe(&entry.version, wall_ms.max(entry.version.wall_ms));
        map.merge_entry(key, entry);
    }
    Ok(())
}

fn persist<V: Serialize>(
    tree: &sled::Tree,
    entries: &[(String, Entry<V>)],
) -> Result<(), StoreError> {
    for (key, entry) in entries {
        let value = serde_json::to_vec(entry).expect("entries serialise");
        tree.insert(key.as_bytes(), value)?;
    }
    Ok(())
}

impl ReplicatedState {
    /// Opens the persisted replica. With an `authority`, every persisted application entry is
    /// checked like a received one; one without a valid admin seal (written before
    /// applications were sealed, or tampered with on disk) is dropped from the store with a
    /// warning, and must be deployed again.
    pub fn open(
        db: &sled::Db,
        node: &str,
        wall_ms: u64,
        authority: Option<Authority>,
        sealer: Option<Sealer>,
    ) -> Result<Self, StoreError> {
        let apps = db.open_tree(APPS)?;
        let nodes = db.open_tree(NODES)?;
        let workloads = db.open_tree(WORKLOADS)?;
        let revocations = db.open_tree(REVOCATIONS)?;
        let activity = db.open_tree(ACTIVITY)?;
        let maintenance = db.open_tree(MAINTENANCE)?;
        let mut replica = Replica::new(node);
        // Revocations first: what they revoke is refused below like anything received.
        load(
            &revocations,
            &mut replica.revocations,
            &mut replica.clock,
            wall_ms,
            |key, entry| admitted(authority.as_ref(), Map::Revocations, key, entry, wall_ms),
        )?;
        if let Some(authority) = &authority {
            for (serial, revocation) in replica.revocations.iter() {
                authority.revoked().insert(serial, revocation);
            }
        }
        load(
            &apps,
            &mut replica.apps,
            &mut replica.clock,
            wall_ms,
            |key, entry| {
                let kept = admitted(authority.as_ref(), Map::Apps, key, entry, wall_ms);
                if !kept {
                    tracing::warn!(
                        app = %key,
                        "a stored application has no valid admin seal (written by a version \
                         before applications were signed?); it was dropped: deploy it again"
                    );
                }
                kept
            },
        )?;
        // A node record without its node's seal (from an earlier version) is dropped; the
        // node publishes a sealed one when it starts.
        load(
            &nodes,
            &mut replica.nodes,
            &mut replica.clock,
            wall_ms,
            |key, entry| admitted(authority.as_ref(), Map::Nodes, key, entry, wall_ms),
        )?;
        // So is a workload status without its node's seal: the node reports it again.
        load(
            &workloads,
            &mut replica.workloads,
            &mut replica.clock,
            wall_ms,
            |key, entry| {
                named_by_its_key(key, entry)
                    && admitted(authority.as_ref(), Map::Workloads, key, entry, wall_ms)
            },
        )?;
        load(
            &activity,
            &mut replica.activity,
            &mut replica.clock,
            wall_ms,
            |key, entry| admitted(authority.as_ref(), Map::Activity, key, entry, wall_ms),
        )?;
        load(
            &maintenance,
            &mut replica.maintenance,
            &mut replica.clock,
            wall_ms,
            |key, entry| admitted(authority.as_ref(), Map::Maintenance, key, entry, wall_ms),
        )?;
        replica.authority = authority;
        replica.sealer = sealer.map(Arc::new);
        Ok(ReplicatedState {
            fingerprint: Arc::new(AtomicU64::new(replica.fingerprint())),
            replica: Mutex::new(replica),
            db: db.clone(),
            apps,
            nodes,
            workloads,
            revocations,
            activity,
            maintenance,
        })
    }

    /// Runs `change` on the replica and persists the entries it returns. With `durable`, waits
    /// until they are on disk (a deploy is acknowledged only then).
    pub async fn change(
        &self,
        durable: bool,
        change: impl FnOnce(&mut Replica) -> Updates,
    ) -> Result<Updates, StoreError> {
        let updates = self.mutate(change);
        self.persist(&updates)?;
        if durable {
            self.db.flush_async().await?;
        }
        Ok(updates)
    }

    /// [`ReplicatedState::change`] without waiting for the disk: for observed state, which
    /// its owner reports again anyway.
    pub fn change_now(
        &self,
        change: impl FnOnce(&mut Replica) -> Updates,
    ) -> Result<Updates, StoreError> {
        let updates = self.mutate(change);
        self.persist(&updates)?;
        Ok(updates)
    }

    /// Runs `change` under the lock and publishes the fingerprint it leaves; node records a
    /// revocation purged leave the disk too.
    fn mutate<T>(&self, change: impl FnOnce(&mut Replica) -> T) -> T {
        let mut replica = self.replica.lock().expect("replica lock");
        let result = change(&mut replica);
        self.fingerprint
            .store(replica.fingerprint(), Ordering::Relaxed);
        let nodes = std::mem::take(&mut replica.purged_nodes);
        let apps = std::mem::take(&mut replica.purged_apps);
        let workloads = std::mem::take(&mut replica.purged_workloads);
        let activity = std::mem::take(&mut replica.purged_activity);
        let maintenance = std::mem::take(&mut replica.purged_maintenance);
        drop(replica);
        for (tree, key) in nodes
            .iter()
            .map(|k| (&self.nodes, k))
            .chain(apps.iter().map(|k| (&self.apps, k)))
            .chain(workloads.iter().map(|k| (&self.workloads, k)))
            .chain(activity.iter().map(|k| (&self.activity, k)))
            .chain(maintenance.iter().map(|k| (&self.maintenance, k)))
        {
            if let Err(e) = tree.remove(key.as_bytes()) {
                tracing::error!(%key, "cannot remove an entry a revocation voided: {e}");
            }
        }
        result
    }

    /// The fingerprint as of the last change, kept current by every change.
    pub fn fingerprint_handle(&self) -> Arc<AtomicU64> {
        self.fingerprint.clone()
    }

    fn persist(&self, updates: &Updates) -> Result<(), StoreError> {
        persist(&self.apps, &updates.apps)?;
        persist(&self.nodes, &updates.nodes)?;
        persist(&self.workloads, &updates.workloads)?;
        persist(&self.revocations, &updates.revocations)?;
        persist(&self.activity, &updates.activity)?;
        persist(&self.maintenance, &updates.maintenance)
    }

    /// Merges a peer's updates and persists what changed; returns it.
    pub fn merge(&self, updates: &Updates, wall_ms: u64) -> Result<Updates, StoreError> {
        let changed = self.mutate(|replica| replica.merge(updates, wall_ms));
        self.persist(&changed)?;
        Ok(changed)
    }

    /// A fresh version for a write that someone else seals before it is committed.
    pub fn next_version(&self, wall_ms: u64) -> Timestamp {
        self.replica
            .lock()
            .expect("replica lock")
            .next_version(wall_ms)
    }

    /// Reads the replica under its lock.
    pub fn read<T>(&self, read: impl FnOnce(&Replica) -> T) -> T {
        read(&self.replica.lock().expect("replica lock"))
    }

    /// Drops expired tombstones from memory and disk.
    pub fn expire_tombstones(&self, wall_ms: u64) -> Result<(), StoreError> {
        let mut replica = self.replica.lock().expect("replica lock");
        if replica.expire_tombstones(wall_ms) == 0 {
            return Ok(());
        }
        self.fingerprint
            .store(replica.fingerprint(), Ordering::Relaxed);
        for (tree, keys) in [
            (
                &self.apps,
                replica
                    .apps
                    .entries()
                    .map(|(k, _)| k.clone())
                    .collect::<Vec<_>>(),
            ),
            (
                &self.nodes,
                replica.nodes.entries().map(|(k, _)| k.clone()).collect(),
            ),
            (
                &self.workloads,
                replica
                    .workloads
                    .entries()
                    .map(|(k, _)| k.clone())
                    .collect(),
            ),
            (
                &self.activity,
                replica.activity.entries().map(|(k, _)| k.clone()).collect(),
            ),
        ] {
            let keys: HashSet<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
            for item in tree.iter().keys() {
                let key = item?;
                if !keys.contains(key.as_ref()) {
                    tree.remove(key)?;
                }
            }
        }
        Ok(())
    }
}
