//! The workload runtimes this node offers beyond `process`, which every node has.

use std::collections::BTreeSet;

use orchestrator::WorkloadId;

use crate::container::ContainerRuntime;
use crate::learner::LearnerRuntime;

#[derive(Debug, Clone, Default)]
pub struct Runtimes {
    /// Present when the `gossip-learner` program is.
    pub learner: Option<LearnerRuntime>,
    /// Present when a container engine answered at start-up.
    pub container: Option<ContainerRuntime>,
}

impl Runtimes {
    /// The names this node advertises, which placement matches against each workload's
    /// [`orchestrator::plan::required_runtime`].
    pub fn names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::from(["process".to_string()]);
        if self.learner.is_some() {
            names.insert("learner".to_string());
        }
        if self.container.is_some() {
            names.insert("container".to_string());
        }
        names
    }
}

/// The variables every replica finds in its environment, whatever runs it: who it is, how many
/// replicas its component has, and which node runs it.
pub fn replica_env(id: &WorkloadId, replicas: u32, node: &str) -> [(&'static str, String); 5] {
    [
        ("GOSSIP_APP", id.app.clone()),
        ("GOSSIP_COMPONENT", id.component.clone()),
        ("GOSSIP_REPLICA", id.replica.to_string()),
        ("GOSSIP_REPLICAS", replicas.to_string()),
        ("GOSSIP_NODE", node.to_string()),
    ]
}
