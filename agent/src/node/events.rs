//! What this node tells the cluster it did and why: events derived from its replicas' status
//! changes and from its own decisions, and the rollout turns it witnesses, written to its
//! activity records (see [`crate::rollout::activity`]).

use std::collections::{BTreeMap, BTreeSet};

use orchestrator::WorkloadId;
use orchestrator::rollout::Heading;

use super::{Node, View, Wanted};
use crate::cluster::replication::{Updates, WorkloadRecord};
use crate::logs::now_ms;
use crate::rollout::activity::{self, Activity, Event, activity_key};
use crate::store::StoreError;

impl Node {
    /// Writes this node's events and witnessed rollouts, per application.
    pub(super) fn record_activity(
        &self,
        view: &View,
        current: &BTreeMap<String, WorkloadRecord>,
        mut events: Vec<Event>,
    ) -> Result<Updates, StoreError> {
        let wall = now_ms();
        {
            let reported = self.reported.lock().expect("reported lock");
            let keys: BTreeSet<&String> = reported.keys().chain(current.keys()).collect();
            for key in keys {
                let (before, after) = (reported.get(key), current.get(key));
                events.extend(activity::transition(before, after, wall));
            }
        }
        let mine = |app: &str| activity_key(app, self.name());
        // Only this node's own records are copied: every pass runs this, and the other nodes'
        // records are most of the cluster's events.
        let suffix = format!("@{}", self.name());
        let before: BTreeMap<String, Activity> = self.state.read(|r| {
            r.activity
                .iter()
                .filter(|(key, _)| key.ends_with(&suffix))
                .map(|(key, activity)| (key.clone(), activity.clone()))
                .collect()
        });
        let mut records = before.clone();
        // The rollout's own turns, told by the node running the component's first replica.
        for ((app, component), decision) in &view.rollouts {
            let first = WorkloadId {
                app: app.clone(),
                component: component.clone(),
                replica: 0,
            };
            if view.plan.assignments.get(&first).map(String::as_str) != Some(self.name()) {
                continue;
            }
            let Some(stored) = view.apps.iter().find(|a| &a.app.name == app) else {
                continue;
            };
            let object = format!("{app}/{component}");
            match decision.heading {
                Heading::Forward if decision.complete() => {
                    let key = mine(app);
                    let seen = records.get(&key).and_then(|r| r.completed.get(component));
                    if seen != Some(&decision.target) {
                        let record = records.entry(key).or_default();
                        record.completed.insert(component.clone(), decision.target);
                        events.push(Event {
                            at_ms: wall,
                            reason: "RolloutComplete".into(),
                            object,
                            message: format!(
                                "generation {}: every replica runs it and is available",
                                stored.generation
                            ),
                        });
                    }
                }
                Heading::RolledBack => {
                    // Told once, by whichever node ran the first replica at the time.
                    let told = self.state.read(|r| {
                        r.activity
                            .iter()
                            .filter(|(key, _)| activity::app_of(key) == app)
                            .flat_map(|(_, a)| a.events.iter())
                            .any(|e| {
                                e.reason == "RolledBack"
                                    && e.object == object
                                    && e.at_ms >= stored.deployed_ms
                            })
                    });
                    if !told {
                        let deadline = stored
                            .app
                            .components
                            .iter()
                            .find(|c| &c.name == component)
                            .map_or(0, |c| c.rollout_policy().progress_deadline_seconds);
                        events.push(Event {
                            at_ms: wall,
                            reason: "RolledBack".into(),
                            object,
                            message: format!(
                                "generation {} was not available within its {deadline} s \
                                 progress deadline: returning to the last available definition",
                                stored.generation
                            ),
                        });
                    }
                }
                Heading::Forward => {}
            }
        }
        for event in events {
            let app = event
                .object
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string();
            records.entry(mine(&app)).or_default().record([event]);
        }
        // Records of applications that are gone go with them.
        let live: BTreeSet<String> = view.apps.iter().map(|a| mine(&a.app.name)).collect();
        let mut writes: Vec<(String, Option<Activity>)> = Vec::new();
        for (key, record) in records {
            if !live.contains(&key) {
                writes.push((key, None));
            } else if before.get(&key) != Some(&record) {
                writes.push((key, Some(record)));
            }
        }
        if writes.is_empty() {
            return Ok(Updates::default());
        }
        self.state.change_now(|r| r.put_activity(writes, wall))
    }
}

/// The event for a replica that starts on `here` because the node that ran it died or left.
pub(super) fn rescheduled(view: &View, id: &WorkloadId, here: &str) -> Option<Event> {
    let gone = view
        .records
        .values()
        .find(|r| r.id == *id && r.node != here && !view.is_active(&r.node))?;
    let state = view
        .nodes
        .get(&gone.node)
        .map_or("gone".to_string(), |(state, _)| state.to_string());
    Some(Event {
        at_ms: now_ms(),
        reason: "Rescheduled".into(),
        object: id.to_string(),
        message: format!("{} is {state}: starting it on {here}", gone.node),
    })
}

/// The event for a rollout step that replaces one of this node's replicas.
pub(super) fn replacing(
    view: &View,
    id: &WorkloadId,
    running: &BTreeMap<WorkloadId, u64>,
    wanted: &BTreeMap<WorkloadId, Wanted>,
) -> Event {
    let generation = view
        .apps
        .iter()
        .find(|a| a.app.name == id.app)
        .map_or(0, |a| a.generation);
    let heading = view
        .rollouts
        .get(&(id.app.clone(), id.component.clone()))
        .map(|d| d.heading);
    let (from, to) = (
        running.get(id).copied().unwrap_or_default(),
        wanted.get(id).map_or(0, |w| w.fingerprint),
    );
    let why = match heading {
        Some(Heading::RolledBack) => format!("rolling back generation {generation}"),
        _ => format!("rolling out generation {generation}"),
    };
    Event {
        at_ms: now_ms(),
        reason: "Replacing".into(),
        object: id.to_string(),
        message: format!(
            "{why}: definition {:08x} replaced by {:08x}",
            from >> 32,
            to >> 32
        ),
    }
}
