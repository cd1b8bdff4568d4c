//! Running replicas: the supervisor that restarts them, and one runner per workload type
//! (child processes, containers through the Engine API, learner processes with their link).

pub mod capacity;
pub mod container;
pub mod env;
pub mod learner;
pub mod orphans;
pub mod probe;
pub mod process;
pub mod supervisor;

use std::collections::BTreeSet;

use crate::runtime::container::ContainerRuntime;
use crate::runtime::learner::LearnerRuntime;

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
