//! The workload runtimes this node offers beyond `process`, which every node has.

use std::collections::BTreeSet;

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
