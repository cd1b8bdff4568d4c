//! The reconciler's decision: given what should run here and what does, what to start and stop.
//!
//! Pure and synchronous; [`crate::node`] carries the actions out. Keeping the decision apart
//! from the doing is what lets the rules (replace on change, leave unchanged replicas alone,
//! honour `dependsOn`) be tested without a single process.

use std::collections::{BTreeMap, BTreeSet};

use orchestrator::WorkloadId;

/// A replica this node should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub fingerprint: u64,
    /// Components of the same application that must be ready first.
    pub depends_on: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Start(WorkloadId),
    Stop(WorkloadId),
    /// Stop the running replica, then start it with its new definition.
    Replace(WorkloadId),
    /// Not started yet; the message says why.
    Wait(WorkloadId, String),
}

/// Decides the actions that bring `running` (replica -> fingerprint) to `wanted`.
/// `ready` holds the `(app, component)` pairs whose every replica is up, for `dependsOn`.
pub fn reconcile(
    wanted: &BTreeMap<WorkloadId, Wanted>,
    running: &BTreeMap<WorkloadId, u64>,
    ready: &BTreeSet<(String, String)>,
) -> Vec<Action> {
    let mut actions: Vec<Action> = running
        .keys()
        .filter(|id| !wanted.contains_key(*id))
        .map(|id| Action::Stop(id.clone()))
        .collect();
    for (id, want) in wanted {
        match running.get(id) {
            Some(&fingerprint) if fingerprint == want.fingerprint => {}
            Some(_) => actions.push(Action::Replace(id.clone())),
            None => {
                let blocked: Vec<&str> = want
                    .depends_on
                    .iter()
                    .filter(|dep| !ready.contains(&(id.app.clone(), (*dep).clone())))
                    .map(String::as_str)
                    .collect();
                if blocked.is_empty() {
                    actions.push(Action::Start(id.clone()));
                } else {
                    let message = format!("waiting for {}", blocked.join(", "));
                    actions.push(Action::Wait(id.clone(), message));
                }
            }
        }
    }
    actions
}

/// Lets at most `max_starts` replicas start in one pass; the rest wait for the next pass,
/// with a message saying so. Stops and replacements are never held back (a stop frees the
/// node). Starting fifty processes or containers at once is the burst that starves a small
/// node of CPU, so its failure detector and its peers' pushes keep their share.
pub fn pace(actions: Vec<Action>, max_starts: usize) -> Vec<Action> {
    let mut starts = 0;
    actions
        .into_iter()
        .map(|action| match action {
            Action::Start(id) if starts >= max_starts => {
                let message = format!("queued: at most {max_starts} replicas start at once");
                Action::Wait(id, message)
            }
            Action::Start(id) => {
                starts += 1;
                Action::Start(id)
            }
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(component: &str, replica: u32) -> WorkloadId {
        WorkloadId {
            app: "app".into(),
            component: component.into(),
            replica,
        }
    }

    fn want(fingerprint: u64, depends_on: &[&str]) -> Wanted {
        Wanted {
            fingerprint,
            depends_on: depends_on.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn unchanged_replicas_are_left_alone() {
        let wanted = BTreeMap::from([(id("a", 0), want(7, &[]))]);
        let running = BTreeMap::from([(id("a", 0), 7)]);
        assert!(reconcile(&wanted, &running, &BTreeSet::new()).is_empty());
    }

    #[test]
    fn changed_replicas_are_replaced_and_unwanted_ones_stopped() {
        let wanted = BTreeMap::from([(id("a", 0), want(8, &[]))]);
        let running = BTreeMap::from([(id("a", 0), 7), (id("a", 1), 7)]);
        let actions = reconcile(&wanted, &running, &BTreeSet::new());
        assert_eq!(
            actions,
            vec![Action::Stop(id("a", 1)), Action::Replace(id("a", 0))]
        );
    }

    #[test]
    fn starts_beyond_the_pace_wait_and_stops_never_do() {
        let wanted: BTreeMap<WorkloadId, Wanted> =
            (0..5).map(|i| (id("a", i), want(1, &[]))).collect();
        let running = BTreeMap::from([(id("old", 0), 1), (id("old", 1), 1)]);
        let actions = pace(reconcile(&wanted, &running, &BTreeSet::new()), 2);
        let starts = actions
            .iter()
            .filter(|a| matches!(a, Action::Start(_)))
            .count();
        let stops = actions
            .iter()
            .filter(|a| matches!(a, Action::Stop(_)))
            .count();
        let queued: Vec<&Action> = actions
            .iter()
            .filter(|a| matches!(a, Action::Wait(_, m) if m.starts_with("queued")))
            .collect();
        assert_eq!((starts, stops, queued.len()), (2, 2, 3));
        // Every wanted replica is either started or queued: none is forgotten.
        assert_eq!(actions.len(), 7);
    }

    #[test]
    fn a_replica_waits_for_the_components_it_depends_on() {
        let wanted = BTreeMap::from([(id("b", 0), want(1, &["a"]))]);
        let none = reconcile(&wanted, &BTreeMap::new(), &BTreeSet::new());
        assert_eq!(
            none,
            vec![Action::Wait(id("b", 0), "waiting for a".to_string())]
        );
        let ready = BTreeSet::from([("app".to_string(), "a".to_string())]);
        assert_eq!(
            reconcile(&wanted, &BTreeMap::new(), &ready),
            vec![Action::Start(id("b", 0))]
        );
    }
}
