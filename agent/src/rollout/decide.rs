//! Every component's rollout step, from one agent's view of the replicated state.
//!
//! Pure: the same applications, status records, witnessed completions and clock give the same
//! decisions on every agent, which is what lets each agent replace only its own replicas and
//! still move the cluster one safe step at a time (see [`orchestrator::rollout`]).

use std::collections::{BTreeMap, BTreeSet};

use orchestrator::rollout::{Heading, Phase, Slot, Step, step, target};
use orchestrator::{Component, WorkloadId};

use crate::api::WorkloadState;
use crate::cluster::replication::WorkloadRecord;
use crate::store::StoredApp;

/// `(app, component)`.
pub type ComponentKey = (String, String);

/// Where one component's rollout stands, and what each of its slots should run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The definition the rollout heads for.
    pub target: u64,
    pub heading: Heading,
    pub step: Step,
}

impl Decision {
    /// How many slots to place: the desired replicas, plus surge slots while the rollout
    /// lasts.
    pub fn slots(&self) -> u32 {
        self.step
            .assign
            .keys()
            .next_back()
            .map_or(0, |last| last + 1)
    }

    /// The definition slot `replica` should run now.
    pub fn fingerprint(&self, replica: u32) -> Option<u64> {
        self.step.assign.get(&replica).copied()
    }

    pub fn complete(&self) -> bool {
        self.step.phase == Phase::Complete
    }
}

/// The definition of `component` with `fingerprint` that `stored` knows: the current one, the
/// last stable one, or one from its history.
pub fn definition<'a>(
    stored: &'a StoredApp,
    component: &str,
    fingerprint: u64,
) -> Option<&'a Component> {
    let matching = |c: &&Component| c.name == component && c.fingerprint() == fingerprint;
    stored
        .app
        .components
        .iter()
        .find(matching)
        .or_else(|| stored.stable.get(component).filter(|c| matching(c)))
        .or_else(|| {
            stored
                .history
                .iter()
                .find_map(|r| r.app.components.iter().find(matching))
        })
}

/// The slots of every component as the cluster reports them: replica -> what it runs and
/// since when it has been ready. Only live reports from active nodes count; where two nodes
/// report one replica (briefly, after a partition heals), the ready one, then the first node.
pub fn observed<'a>(
    apps: &[StoredApp],
    records: impl IntoIterator<Item = &'a WorkloadRecord>,
    active: impl Fn(&str) -> bool,
) -> BTreeMap<ComponentKey, BTreeMap<u32, Slot>> {
    let by_name: BTreeMap<&str, &StoredApp> =
        apps.iter().map(|a| (a.app.name.as_str(), a)).collect();
    let mut slots: BTreeMap<ComponentKey, BTreeMap<u32, Slot>> = BTreeMap::new();
    for record in records {
        if record.state == WorkloadState::Stopped || !active(&record.node) {
            continue;
        }
        let Some(stored) = by_name.get(record.id.app.as_str()) else {
            continue;
        };
        let probed = definition(stored, &record.id.component, record.fingerprint)
            .is_some_and(|c| c.readiness_probe().is_some());
        let ready = record.state.counts_as_ready(probed);
        let slot = Slot {
            fingerprint: record.fingerprint,
            ready_since_ms: ready.then_some(record.since_ms),
        };
        let key = (record.id.app.clone(), record.id.component.clone());
        let entry = slots.entry(key).or_default();
        match entry.get(&record.id.replica) {
            Some(seen) if seen.ready_since_ms.is_some() || slot.ready_since_ms.is_none() => {}
            _ => {
                entry.insert(record.id.replica, slot);
            }
        }
    }
    slots
}

/// Each component's decision. `completed` holds the `(app, component, fingerprint)` rollouts
/// some agent saw complete (see [`super::activity`]).
pub fn decide(
    apps: &[StoredApp],
    observed: &BTreeMap<ComponentKey, BTreeMap<u32, Slot>>,
    completed: &BTreeSet<(String, String, u64)>,
    now_ms: u64,
) -> BTreeMap<ComponentKey, Decision> {
    let empty = BTreeMap::new();
    let mut decisions = BTreeMap::new();
    for stored in apps {
        for component in &stored.app.components {
            let key = (stored.app.name.clone(), component.name.clone());
            let new = component.fingerprint();
            let policy = component.rollout_policy();
            let previous = stored
                .stable
                .get(&component.name)
                .map(Component::fingerprint);
            let done = completed.contains(&(key.0.clone(), key.1.clone(), new));
            let (target, heading) =
                target(new, previous, &policy, stored.deployed_ms, done, now_ms);
            let slots = observed.get(&key).unwrap_or(&empty);
            let step = step(component.replicas, &policy, target, slots, now_ms);
            decisions.insert(
                key,
                Decision {
                    target,
                    heading,
                    step,
                },
            );
        }
    }
    decisions
}

/// The replicas to place: every slot of every component's current step, as `WorkloadId`s
/// with the definition each should run.
pub fn slots(decisions: &BTreeMap<ComponentKey, Decision>) -> BTreeMap<WorkloadId, u64> {
    decisions
        .iter()
        .flat_map(|((app, component), decision)| {
            decision.step.assign.iter().map(|(replica, fingerprint)| {
                let id = WorkloadId {
                    app: app.clone(),
                    component: component.clone(),
                    replica: *replica,
                };
                (id, *fingerprint)
            })
        })
        .collect()
}
