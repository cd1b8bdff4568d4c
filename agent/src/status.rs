//! What `get` and `describe` show: this agent's view of nodes, workloads and applications.
//!
//! Presentation only: everything here reads the [`View`] the node computes and the local
//! waiting reasons; nothing decides or changes anything.

use std::collections::{BTreeMap, BTreeSet};

use orchestrator::plan::Plan;

use orchestrator::learner_link::LearnerProgress;

use orchestrator::Component;
use orchestrator::rollout::{Heading, Phase};

use crate::api::{
    AppDetail, AppStatus, AppView, ComponentDetail, EventView, GenerationView, LearningSummary,
    NodeDetail, NodeState, NodeView, RolloutState, RolloutView, WorkloadState, WorkloadView,
};
use crate::cluster::identity::expires_at;
use crate::cluster::replication::{WorkloadRecord, workload_key};
use crate::node::{Node, View};
use crate::rollout::activity::app_of;
use crate::rollout::decide::{ComponentKey, Decision};
use crate::store::StoredApp;
use crate::trust::authority::Authority;

impl Node {
    /// Every node with a record, then every revoked name that has none (a node whose
    /// certificate was revoked and that has not come back with a new one).
    pub fn node_views(&self) -> Vec<NodeView> {
        let view = self.view();
        let expiries: BTreeMap<String, i64> = {
            let mut cache = self.expiries.lock().expect("expiries lock");
            self.state.read(|r| {
                r.nodes
                    .entries()
                    .filter_map(|(name, entry)| {
                        let cached = cache.get(name).filter(|(v, _)| *v == entry.version);
                        let expiry = match cached {
                            Some((_, expiry)) => *expiry,
                            None => {
                                let expiry = Authority::certificate_of(entry)
                                    .and_then(|certificate| expires_at(&certificate));
                                cache.insert(name.clone(), (entry.version.clone(), expiry));
                                expiry
                            }
                        };
                        Some((name.clone(), expiry?))
                    })
                    .collect()
            })
        };
        let mut views: Vec<NodeView> = view
            .nodes
            .iter()
            .map(|(name, (state, record))| NodeView {
                name: name.clone(),
                address: record.address.to_string(),
                state: *state,
                labels: record.info.labels.clone(),
                capacity: record.info.capacity,
                runtimes: record.info.runtimes.iter().cloned().collect(),
                workloads: view.plan.for_node(name).count(),
                version: record.version.clone(),
                certificate_expires: expiries.get(name).copied(),
                maintenance: view.maintenance.get(name).copied(),
                node_ip: record.node_ip.unwrap_or(record.address.ip()).to_string(),
            })
            .collect();
        let revoked: BTreeSet<String> = self.state.read(|r| {
            r.revocations
                .iter()
                .map(|(_, revocation)| revocation.name.clone())
                .collect()
        });
        for name in revoked {
            if !view.nodes.contains_key(&name) {
                views.push(NodeView {
                    name,
                    address: "-".into(),
                    state: NodeState::Revoked,
                    labels: Default::default(),
                    capacity: Default::default(),
                    runtimes: Vec::new(),
                    workloads: 0,
                    version: "-".into(),
                    certificate_expires: None,
                    maintenance: None,
                    node_ip: String::new(),
                });
            }
        }
        views
    }

    pub fn describe_node(&self, name: &str) -> Option<NodeDetail> {
        let summary = self.node_views().into_iter().find(|n| n.name == name)?;
        let workloads = self
            .workload_views()
            .into_iter()
            .filter(|w| w.node == name)
            .collect();
        Some(NodeDetail { summary, workloads })
    }

    pub fn workload_views(&self) -> Vec<WorkloadView> {
        let view = self.view();
        self.views(&view).into_iter().map(|(w, _)| w).collect()
    }

    /// Each replica's view, and whether it is up: running its current definition (or, for
    /// run-to-completion policies, finished successfully), and whether it is also ready.
    fn views(&self, view: &View) -> Vec<(WorkloadView, Health)> {
        let waiting = self.waiting.lock().expect("waiting lock");
        let mut views = Vec::new();
        for (id, node) in &view.plan.assignments {
            // During a rollout a replica may rightly run an earlier definition.
            let component = view.definition(id);
            let kind = component.map_or("process", |c| c.workload.type_name());
            let record = view.records.get(&workload_key(id, node));
            let current =
                |r: &WorkloadRecord| component.is_some_and(|c| c.fingerprint() == r.fingerprint);
            let probed = component.is_some_and(|c| c.readiness_probe().is_some());
            let (state, restarts, message, pid, up) = match record {
                Some(r) => {
                    let message = if current(r) {
                        r.message.clone()
                    } else {
                        "replacing with the new definition".to_string()
                    };
                    let up = current(r) && (r.state.is_up() || r.state == WorkloadState::Succeeded);
                    (r.state, r.restarts, message, r.pid, up)
                }
                None if node == self.name() => {
                    let message = waiting.get(id).cloned().unwrap_or_default();
                    (WorkloadState::Pending, 0, message, None, false)
                }
                None => {
                    let message = format!("waiting for {node} to start it");
                    (WorkloadState::Pending, 0, message, None, false)
                }
            };
            // A replica that moved resumes from where its previous run got: show that run's
            // progress until the new one reports.
            let learner = record.and_then(|r| r.learner.clone()).or_else(|| {
                view.records
                    .values()
                    .filter(|r| r.id == *id)
                    .filter_map(|r| r.learner.clone())
                    .max_by_key(|p| p.epoch)
            });
            let workload = WorkloadView {
                id: id.to_string(),
                app: id.app.clone(),
                component: id.component.clone(),
                replica: id.replica,
                kind: kind.to_string(),
                node: node.clone(),
                state,
                restarts,
                message,
                pid,
                learner,
                since_ms: record.map(|r| r.since_ms).filter(|ms| *ms > 0),
                address: record.and_then(|r| r.address).map(|a| a.to_string()),
            };
            let ready = up && state.is_ready(probed);
            views.push((workload, Health { up, ready }));
        }
        // Replicas still running where the plan no longer puts them: being stopped.
        for record in view.records.values() {
            let assigned = view.plan.assignments.get(&record.id) == Some(&record.node);
            if !assigned && view.is_active(&record.node) {
                let workload = WorkloadView {
                    id: record.id.to_string(),
                    app: record.id.app.clone(),
                    component: record.id.component.clone(),
                    replica: record.id.replica,
                    kind: view
                        .component(&record.id)
                        .map_or("process", |c| c.workload.type_name())
                        .to_string(),
                    node: record.node.clone(),
                    state: record.state,
                    restarts: record.restarts,
                    message: "stopping: no longer placed here".to_string(),
                    pid: record.pid,
                    since_ms: Some(record.since_ms).filter(|ms| *ms > 0),
                    address: record.address.map(|a| a.to_string()),
                    learner: record.learner.clone(),
                };
                views.push((workload, Health::default()));
            }
        }
        views
    }

    pub fn app_views(&self) -> Vec<AppView> {
        self.app_details().into_iter().map(|d| d.summary).collect()
    }

    pub fn describe_app(&self, name: &str) -> Option<AppDetail> {
        self.app_details()
            .into_iter()
            .find(|d| d.summary.name == name)
    }

    fn app_details(&self) -> Vec<AppDetail> {
        let view = self.view();
        let views = self.views(&view);
        let mut names: BTreeSet<String> = view.apps.iter().map(|a| a.app.name.clone()).collect();
        names.extend(views.iter().map(|(v, _)| v.app.clone()));
        names
            .into_iter()
            .map(|name| {
                let stored = view.apps.iter().find(|a| a.app.name == name);
                let workloads: Vec<(WorkloadView, Health)> = views
                    .iter()
                    .filter(|(v, _)| v.app == name)
                    .cloned()
                    .collect();
                let mut detail = app_detail(&name, stored, &view, workloads);
                let events = self.events(Some(&name));
                let skip = events.len().saturating_sub(EVENTS_DESCRIBED);
                detail.events = events.into_iter().skip(skip).collect();
                detail
            })
            .collect()
    }

    /// Every agent's events (of application `app`, or all), oldest first.
    pub fn events(&self, app: Option<&str>) -> Vec<EventView> {
        let mut events: Vec<EventView> = self.state.read(|r| {
            r.activity
                .iter()
                .filter(|(key, _)| app.is_none_or(|app| app_of(key) == app))
                .flat_map(|(key, activity)| {
                    let node = key.rsplit_once('@').map_or("", |(_, node)| node);
                    activity.events.iter().map(move |e| EventView {
                        at_ms: e.at_ms,
                        node: node.to_string(),
                        reason: e.reason.clone(),
                        object: e.object.clone(),
                        message: e.message.clone(),
                    })
                })
                .collect()
        });
        events.sort_by(|a, b| (a.at_ms, &a.node).cmp(&(b.at_ms, &b.node)));
        events
    }

    /// An application's generations, newest first; `None` if it is not deployed.
    pub fn generations(&self, app: &str) -> Option<Vec<GenerationView>> {
        let stored = self.state.read(|r| r.apps.get(app).cloned())?;
        let mut list = vec![(stored.generation, stored.deployed_ms, &stored.app)];
        list.extend(
            stored
                .history
                .iter()
                .map(|r| (r.generation, r.deployed_ms, &r.app)),
        );
        let views = list
            .iter()
            .enumerate()
            .map(|(i, (generation, deployed_ms, app))| {
                let before = list.get(i + 1).map(|(_, _, a)| *a);
                let changed = app
                    .components
                    .iter()
                    .filter(|c| {
                        before.is_none_or(|b| {
                            !b.components
                                .iter()
                                .any(|o| o.name == c.name && o.fingerprint() == c.fingerprint())
                        })
                    })
                    .map(|c| c.name.clone())
                    .collect();
                GenerationView {
                    generation: *generation,
                    deployed_ms: *deployed_ms,
                    changed,
                    current: i == 0,
                }
            })
            .collect();
        Some(views)
    }
}

/// Events `describe app` shows, like `kubectl describe`.
const EVENTS_DESCRIBED: usize = 12;

/// A component's rollout as `describe app` shows it.
fn rollout_view(stored: &StoredApp, component: &Component, decision: &Decision) -> RolloutView {
    let on_target = |fingerprint: &&u64| **fingerprint == decision.target;
    let updated = decision.step.assign.values().filter(on_target).count() as u32;
    let available = match decision.step.phase {
        Phase::Complete => component.replicas,
        Phase::Progressing { available } => available,
    };
    let state = match (decision.heading, decision.complete()) {
        (Heading::RolledBack, _) => RolloutState::RolledBack,
        (Heading::Forward, true) => RolloutState::Complete,
        (Heading::Forward, false) => RolloutState::Progressing,
    };
    // Only a rollout with a definition to return to has a deadline.
    let returns = stored
        .stable
        .get(&component.name)
        .is_some_and(|c| c.fingerprint() != component.fingerprint());
    let deadline_ms = (state == RolloutState::Progressing && returns).then(|| {
        let seconds = component.rollout_policy().progress_deadline_seconds;
        stored.deployed_ms + u64::from(seconds) * 1000
    });
    RolloutView {
        state,
        updated,
        outdated: decision.step.assign.len() as u32 - updated,
        available,
        deadline_ms,
    }
}

/// Whether a replica is up (running its current definition, or finished where that is
/// success) and ready (up, and its readiness probe passes or it has none).
#[derive(Debug, Clone, Copy, Default)]
struct Health {
    up: bool,
    ready: bool,
}

fn app_detail(
    name: &str,
    stored: Option<&StoredApp>,
    view: &View,
    entries: Vec<(WorkloadView, Health)>,
) -> AppDetail {
    let plan: &Plan = &view.plan;
    let rollouts: &BTreeMap<ComponentKey, Decision> = &view.rollouts;
    let count = |component: &str, counted: fn(&Health) -> bool| {
        entries
            .iter()
            .filter(|(w, health)| counted(health) && w.component == component)
            .count() as u32
    };
    let workloads: Vec<WorkloadView> = entries.iter().map(|(w, _)| w.clone()).collect();
    let Some(stored) = stored else {
        let summary = AppView {
            name: name.to_string(),
            components: 0,
            status: AppStatus::Deleting,
            message: format!("{} replicas stopping", workloads.len()),
            generation: 0,
        };
        return AppDetail {
            summary,
            components: vec![],
            workloads,
            events: vec![],
        };
    };
    let components: Vec<ComponentDetail> = stored
        .app
        .components
        .iter()
        .map(|c| ComponentDetail {
            name: c.name.clone(),
            kind: c.workload.type_name().to_string(),
            replicas: c.replicas,
            running: count(&c.name, |h| h.up),
            ready: count(&c.name, |h| h.ready),
            unschedulable: plan
                .unschedulable
                .get(&(name.to_string(), c.name.clone()))
                .cloned(),
            depends_on: c.depends_on.clone(),
            rollout: rollouts
                .get(&(name.to_string(), c.name.clone()))
                .map(|d| rollout_view(stored, c, d)),
            learning: learning_summary(
                workloads
                    .iter()
                    .filter(|w| w.component == c.name)
                    .filter_map(|w| Some((w.node.as_str(), w.learner.as_ref()?))),
            ),
        })
        .collect();
    let unschedulable: Vec<String> = components
        .iter()
        .filter_map(|c| Some(format!("{}: {}", c.name, c.unschedulable.as_ref()?)))
        .collect();
    let failed: Vec<&str> = workloads
        .iter()
        .filter(|w| w.state == WorkloadState::Failed)
        .map(|w| w.id.as_str())
        .collect();
    let wanted: u32 = components.iter().map(|c| c.replicas).sum();
    let up: u32 = components.iter().map(|c| c.running).sum();
    let rolled_back: Vec<&str> = components
        .iter()
        .filter(|c| {
            c.rollout
                .as_ref()
                .is_some_and(|r| r.state == RolloutState::RolledBack)
        })
        .map(|c| c.name.as_str())
        .collect();
    let rolling: Vec<String> = components
        .iter()
        .filter_map(|c| {
            let r = c.rollout.as_ref()?;
            (r.state == RolloutState::Progressing && r.outdated > 0)
                .then(|| format!("{} {}/{} updated", c.name, r.updated, c.replicas))
        })
        .collect();
    let (status, message) = if !rolled_back.is_empty() {
        (
            AppStatus::RolledBack,
            format!(
                "generation {} rolled back ({}): not available within the progress deadline",
                stored.generation,
                rolled_back.join(", ")
            ),
        )
    } else if !unschedulable.is_empty() {
        (AppStatus::Unschedulable, unschedulable.join("; "))
    } else if !failed.is_empty() {
        (
            AppStatus::Degraded,
            format!("failed: {}", failed.join(", ")),
        )
    } else if !rolling.is_empty() {
        (
            AppStatus::Progressing,
            format!("rolling out: {}", rolling.join(", ")),
        )
    } else if up == wanted && workloads.len() as u32 == wanted {
        (AppStatus::Running, format!("{up}/{wanted} replicas up"))
    } else {
        (AppStatus::Progressing, format!("{up}/{wanted} replicas up"))
    };
    AppDetail {
        summary: AppView {
            name: name.to_string(),
            components: components.len(),
            status,
            message,
            generation: stored.generation,
        },
        components,
        workloads,
        events: vec![],
    }
}

/// Progress and accuracy across a learner component's replicas; `None` before any reported.
fn learning_summary<'a>(
    reports: impl Iterator<Item = (&'a str, &'a LearnerProgress)>,
) -> Option<LearningSummary> {
    let reports: Vec<(&str, &LearnerProgress)> = reports.collect();
    let first = reports.first()?.1;
    let mut accuracies: Vec<f64> = reports.iter().map(|(_, p)| p.test_accuracy).collect();
    accuracies.sort_by(f64::total_cmp);
    let n = accuracies.len();
    let median = if n % 2 == 1 {
        accuracies[n / 2]
    } else {
        (accuracies[n / 2 - 1] + accuracies[n / 2]) / 2.0
    };
    Some(LearningSummary {
        reporting: n as u32,
        epoch_min: reports.iter().map(|(_, p)| p.epoch).min().unwrap_or(0),
        epoch_max: reports.iter().map(|(_, p)| p.epoch).max().unwrap_or(0),
        epochs: first.epochs,
        accuracy_min: accuracies[0],
        accuracy_median: median,
        accuracy_max: accuracies[n - 1],
        finished: reports.iter().filter(|(_, p)| p.finished()).count() as u32,
        final_models: reports
            .iter()
            .filter_map(|(node, p)| Some(format!("{node}:{}", p.final_model.as_ref()?)))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(epoch: u64, accuracy: f64, model: Option<&str>) -> LearnerProgress {
        LearnerProgress {
            epoch,
            epochs: 30,
            test_accuracy: accuracy,
            final_model: model.map(str::to_string),
            ..LearnerProgress::default()
        }
    }

    #[test]
    fn learning_summary_spans_the_replicas() {
        assert!(learning_summary(std::iter::empty()).is_none());
        let reports = [
            report(30, 0.80, Some("/d/model.bpk")),
            report(12, 0.60, None),
            report(20, 0.70, None),
            report(25, 0.75, None),
        ];
        let nodes = ["a", "b", "c", "d"];
        let summary = learning_summary(nodes.iter().copied().zip(reports.iter())).unwrap();
        assert_eq!(
            (summary.epoch_min, summary.epoch_max, summary.epochs),
            (12, 30, 30)
        );
        assert_eq!(summary.accuracy_min, 0.60);
        assert!((summary.accuracy_median - 0.725).abs() < 1e-12);
        assert_eq!(summary.accuracy_max, 0.80);
        assert_eq!(summary.finished, 1);
        assert_eq!(summary.final_models, vec!["a:/d/model.bpk".to_string()]);
    }
}
