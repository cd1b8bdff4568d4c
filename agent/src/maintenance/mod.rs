//! Taking a node out for maintenance, as `kubectl cordon`, `drain` and `uncordon` do.
//!
//! An admin's word about a node is a replicated entry keyed by the node's name and sealed by an
//! admin, so it survives the restart of any agent, the node's own included, and no node can
//! cordon or uncordon another (or itself). Every agent reads it the same way:
//!
//! - a **cordoned** node takes no new replicas; the ones it runs stay;
//! - a **draining** node is cordoned and hands its replicas over one at a time: the lowest one
//!   it still runs is placed afresh on another node ([`moving`]), and the draining node stops
//!   its copy only once the new copy reports ready ([`hands_over`]), so a drain never takes a
//!   replica's availability away (make before break) and never moves two at once. A replica
//!   whose new copy never becomes ready (nowhere to go, a failing probe) stops the drain there,
//!   as a PodDisruptionBudget stops `kubectl drain`: `get nodes` keeps saying `draining`;
//! - **uncordon** makes it schedulable again (nothing moves back by itself).
//!
//! Pure: the node and the reconciler call these with their view.

use std::collections::{BTreeMap, BTreeSet};

use orchestrator::WorkloadId;
use serde::{Deserialize, Serialize};

use crate::api::WorkloadState;
use crate::cluster::replication::WorkloadRecord;

/// The value of a maintenance entry; its key is the node's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Maintenance {
    pub mode: Mode,
    /// When the admin asked (milliseconds since the Unix epoch, the admin's clock).
    pub at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Schedulable,
    Cordoned,
    Draining,
}

impl Mode {
    /// No new replicas.
    pub fn cordoned(self) -> bool {
        self != Mode::Schedulable
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Schedulable => "schedulable",
            Mode::Cordoned => "cordoned",
            Mode::Draining => "draining",
        })
    }
}

/// For each draining node, the replica it hands over now: the lowest one it still runs.
pub fn moving<'a>(
    draining: &BTreeSet<String>,
    records: impl IntoIterator<Item = &'a WorkloadRecord>,
) -> BTreeMap<String, WorkloadId> {
    let mut moving: BTreeMap<String, WorkloadId> = BTreeMap::new();
    for record in records {
        if !draining.contains(&record.node) || record.state == WorkloadState::Stopped {
            continue;
        }
        match moving.get(&record.node) {
            Some(lowest) if *lowest <= record.id => {}
            _ => {
                moving.insert(record.node.clone(), record.id.clone());
            }
        }
    }
    moving
}

/// Whether a node keeps running its copy of a replica now placed on another node: while it is
/// draining and the copy there does not report ready yet (`ready_there`).
pub fn hands_over(draining_here: bool, ready_there: bool) -> bool {
    draining_here && !ready_there
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(node: &str, component: &str, replica: u32, state: WorkloadState) -> WorkloadRecord {
        WorkloadRecord {
            id: WorkloadId {
                app: "shop".into(),
                component: component.into(),
                replica,
            },
            node: node.into(),
            state,
            restarts: 0,
            message: String::new(),
            pid: None,
            fingerprint: 1,
            learner: None,
            since_ms: 0,
            last_exit: String::new(),
            address: None,
        }
    }

    #[test]
    fn a_draining_node_moves_its_lowest_running_replica_first() {
        let records = [
            record("b", "web", 3, WorkloadState::Ready),
            record("b", "web", 1, WorkloadState::Stopped),
            record("b", "api", 2, WorkloadState::Running),
            record("a", "api", 0, WorkloadState::Running),
        ];
        let draining = BTreeSet::from(["b".to_string()]);
        let now = moving(&draining, &records);
        assert_eq!(now.len(), 1, "only draining nodes move replicas");
        assert_eq!(
            now["b"], records[2].id,
            "a stopping replica is already gone"
        );
        assert!(moving(&BTreeSet::new(), &records).is_empty());
    }

    #[test]
    fn the_old_copy_stays_until_the_new_one_is_ready() {
        assert!(hands_over(true, false));
        assert!(!hands_over(true, true));
        assert!(!hands_over(false, false), "only a drain waits");
    }
}
