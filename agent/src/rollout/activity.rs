//! What each agent did to an application and why: its events, and the rollouts it saw
//! complete. One record per application and node, keyed `APP@NODE` and sealed by that node,
//! so an agent can speak only for itself; the events are bounded per record.
//!
//! Events are derived from what the agent reports anyway: comparing a replica's status
//! before and after a reconcile pass says it started, became ready, failed, restarted (and
//! why: a failed liveness probe, an exit) or stopped ([`transition`]). The agent records its
//! own decisions beside them: a replica replaced by a rollout step. The rollout's own turns (complete, rolled back) are recorded by the agent
//! running the component's first replica, so each is told once.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::api::WorkloadState;
use crate::cluster::replication::WorkloadRecord;

/// Events kept per application and node, newest last.
pub const EVENTS_KEPT: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// Component -> the definition (fingerprint) whose rollout this node last saw complete.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub completed: BTreeMap<String, u64>,
    /// Newest last, at most [`EVENTS_KEPT`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
}

/// One thing an agent did or saw, as `kubectl get events` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock milliseconds on the recording node.
    pub at_ms: u64,
    /// What happened, in one word: `Started`, `Ready`, `NotReady`, `Failed`, `Restarted`,
    /// `Stopping`, `Stopped`, `Succeeded`, `Rescheduled`, `Replacing`, `RolloutComplete`,
    /// `RolledBack`, `Drained`.
    pub reason: String,
    /// The replica (`APP/COMPONENT/REPLICA`) or component (`APP/COMPONENT`) it concerns.
    pub object: String,
    pub message: String,
}

impl Activity {
    /// Appends `events`, dropping the oldest beyond [`EVENTS_KEPT`].
    pub fn record(&mut self, events: impl IntoIterator<Item = Event>) {
        self.events.extend(events);
        if self.events.len() > EVENTS_KEPT {
            let excess = self.events.len() - EVENTS_KEPT;
            self.events.drain(..excess);
        }
    }
}

/// `APP@NODE`.
pub fn activity_key(app: &str, node: &str) -> String {
    format!("{app}@{node}")
}

/// The application an activity key is about.
pub fn app_of(key: &str) -> &str {
    key.rsplit_once('@').map_or(key, |(app, _)| app)
}

/// Every `(app, component, fingerprint)` rollout some node saw complete.
pub fn completed<'a>(
    records: impl IntoIterator<Item = (&'a String, &'a Activity)>,
) -> BTreeSet<(String, String, u64)> {
    records
        .into_iter()
        .flat_map(|(key, activity)| {
            let app = app_of(key).to_string();
            activity
                .completed
                .iter()
                .map(move |(component, fingerprint)| (app.clone(), component.clone(), *fingerprint))
        })
        .collect()
}

/// The events that a replica's status changing from `before` to `after` tells, at `now_ms`
/// (a replica seen for the first time already ready both started and became ready).
pub fn transition(
    before: Option<&WorkloadRecord>,
    after: Option<&WorkloadRecord>,
    now_ms: u64,
) -> Vec<Event> {
    let mut events = Vec::new();
    let Some(record) = after.or(before) else {
        return events;
    };
    let mut tell = |reason: &str, message: String| {
        events.push(Event {
            at_ms: now_ms,
            reason: reason.to_string(),
            object: record.id.to_string(),
            message,
        })
    };
    let Some(after) = after else {
        // A replica asked to stop was reported as stopping first; that was its event.
        if before.is_none_or(|b| b.state != WorkloadState::Stopped) {
            tell("Stopped", format!("stopped on {}", record.node));
        }
        return events;
    };
    let message = |default: String| {
        if after.message.is_empty() {
            default
        } else {
            after.message.clone()
        }
    };
    // What the same run of the same definition already was.
    let was = |state: &dyn Fn(WorkloadState) -> bool| {
        before.is_some_and(|b| b.fingerprint == after.fingerprint && state(b.state))
    };
    let restarted = before.is_some_and(|b| after.restarts > b.restarts);
    if restarted {
        let why = if after.last_exit.is_empty() {
            String::new()
        } else {
            format!(": {}", after.last_exit)
        };
        tell(
            "Restarted",
            format!("restart {} on {}{why}", after.restarts, after.node),
        );
    } else if after.state.is_up() && !was(&WorkloadState::is_up) {
        let pid = after
            .pid
            .map_or(String::new(), |pid| format!("pid {pid}, "));
        tell(
            "Started",
            format!(
                "started on {} ({pid}definition {:08x})",
                after.node,
                after.fingerprint >> 32
            ),
        );
    }
    let is = |state: WorkloadState| after.state == state && (restarted || !was(&|s| s == state));
    if is(WorkloadState::Ready) {
        tell("Ready", format!("ready on {}", after.node));
    } else if !restarted
        && after.state == WorkloadState::Running
        && was(&|s| s == WorkloadState::Ready)
    {
        tell("NotReady", message("readiness probe failing".to_string()));
    } else if is(WorkloadState::Failed) && !restarted {
        tell("Failed", message("failed".to_string()));
    } else if is(WorkloadState::Succeeded) {
        tell("Succeeded", "finished".to_string());
    } else if is(WorkloadState::Stopped) {
        tell("Stopping", format!("stopping on {}", after.node));
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator::WorkloadId;

    fn record(state: WorkloadState, restarts: u32, fingerprint: u64) -> WorkloadRecord {
        WorkloadRecord {
            id: WorkloadId {
                app: "shop".into(),
                component: "web".into(),
                replica: 0,
            },
            node: "node-1".into(),
            state,
            restarts,
            message: String::new(),
            pid: Some(42),
            fingerprint,
            learner: None,
            since_ms: 0,
            last_exit: String::new(),
            address: None,
        }
    }

    fn reasons(before: Option<&WorkloadRecord>, after: Option<&WorkloadRecord>) -> Vec<String> {
        transition(before, after, 7)
            .into_iter()
            .map(|e| e.reason)
            .collect()
    }

    #[test]
    fn status_changes_tell_what_happened() {
        let pending = record(WorkloadState::Pending, 0, 1);
        let running = record(WorkloadState::Running, 0, 1);
        let ready = record(WorkloadState::Ready, 0, 1);
        let mut restarted = record(WorkloadState::Running, 1, 1);
        restarted.last_exit = "liveness probe failed: exit status 1".into();
        let replaced = record(WorkloadState::Running, 0, 2);
        let stopping = record(WorkloadState::Stopped, 0, 1);
        assert_eq!(reasons(None, Some(&running)), ["Started"]);
        assert_eq!(reasons(Some(&pending), Some(&running)), ["Started"]);
        assert_eq!(reasons(Some(&running), Some(&ready)), ["Ready"]);
        assert_eq!(
            reasons(Some(&pending), Some(&ready)),
            ["Started", "Ready"],
            "ready at its first report: both"
        );
        assert!(reasons(Some(&ready), Some(&ready)).is_empty());
        let events = transition(Some(&ready), Some(&restarted), 7);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason, "Restarted");
        assert_eq!(
            events[0].message,
            "restart 1 on node-1: liveness probe failed: exit status 1"
        );
        assert_eq!(reasons(Some(&ready), Some(&stopping)), ["Stopping"]);
        assert!(reasons(Some(&stopping), None).is_empty(), "told once");
        assert_eq!(
            reasons(Some(&stopping), Some(&replaced)),
            ["Started"],
            "a replaced replica starts on its new definition"
        );
        assert_eq!(reasons(Some(&ready), None), ["Stopped"]);
        let mut unready = running.clone();
        unready.message = "not ready: exited with status 1".into();
        let told = transition(Some(&ready), Some(&unready), 7);
        assert_eq!(told[0].reason, "NotReady");
        assert_eq!(told[0].message, "not ready: exited with status 1");
        assert!(reasons(None, Some(&pending)).is_empty());
    }

    #[test]
    fn events_are_bounded_and_completions_are_collected_by_application() {
        let mut activity = Activity::default();
        activity.record((0..100).map(|i| Event {
            at_ms: i,
            reason: "Started".into(),
            object: "shop/web/0".into(),
            message: String::new(),
        }));
        assert_eq!(activity.events.len(), EVENTS_KEPT);
        assert_eq!(activity.events[0].at_ms, 100 - EVENTS_KEPT as u64);
        activity.completed.insert("web".into(), 9);
        let key = activity_key("shop", "node-1");
        let all = completed([(&key, &activity)]);
        assert_eq!(all, BTreeSet::from([("shop".into(), "web".into(), 9)]));
    }
}
