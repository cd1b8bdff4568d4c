//! What the simulation measures while it runs and at the end: false deaths, whether the
//! cluster has converged, and the outcome the tests check.

use std::collections::BTreeSet;

use agent::cluster::membership::{Liveness, NodeId};
use orchestrator::Application;
use orchestrator::plan::{NodeInfo, Plan, Running, plan};

use super::{Sim, SimNode, is_active};
use crate::outcome::{FalseDeath, Outcome};
use crate::virtual_time::Micros;

impl Sim {
    /// foca notifies every `Down` verdict, so checking each step's verdicts catches every live
    /// node that someone declared dead, however briefly.
    pub(super) fn record_false_deaths(&mut self, observer: usize, down: &[NodeId]) {
        for id in down {
            let name = id.name.clone();
            let Some(&subject) = self.by_addr.get(&id.addr) else {
                continue;
            };
            if self.nodes[subject].crashed {
                continue;
            }
            let death = FalseDeath {
                at_ms: self.now / 1000,
                observer: self.nodes[observer].name.clone(),
                subject: name,
                incarnation: id.incarnation,
            };
            let known = self.false_deaths.iter().any(|d| {
                (&d.observer, &d.subject, d.incarnation)
                    == (&death.observer, &death.subject, death.incarnation)
            });
            if !known {
                self.false_deaths.push(death);
            }
        }
    }

    /// How long after each crash its first and its last live observer declared it down.
    pub(super) fn record_detections(&mut self, observer: usize, down: &[NodeId]) {
        for id in down {
            let Some(&subject) = self.by_addr.get(&id.addr) else {
                continue;
            };
            let live: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| !self.nodes[i].crashed)
                .collect();
            let Some((crashed_at, knowers, detection)) = self.detections.get_mut(&subject) else {
                continue;
            };
            knowers.insert(observer);
            let after = self.now - *crashed_at;
            detection.first.get_or_insert(after);
            if detection.everywhere.is_none() && live.iter().all(|i| knowers.contains(i)) {
                detection.everywhere = Some(after);
            }
        }
    }

    /// The names of the nodes that have not crashed.
    pub(super) fn live_names(&self) -> BTreeSet<&str> {
        self.nodes
            .iter()
            .filter(|n| !n.crashed)
            .map(|n| n.name.as_str())
            .collect()
    }

    /// Notes whether the cluster is converged right now, to report when it last became so.
    pub(super) fn sample(&mut self) {
        let live = self.live_names();
        let mut views_agree = true;
        let mut suspicions = 0;
        for node in self.nodes.iter().filter(|n| !n.crashed) {
            let members = node.membership.members();
            let mut seen_active = 0;
            for (name, (_, liveness)) in &members {
                let subject_live = live.contains(name.as_str());
                match (subject_live, liveness) {
                    (true, Liveness::Suspect) => suspicions += 1,
                    (true, Liveness::Down) | (false, Liveness::Alive | Liveness::Suspect) => {
                        views_agree = false
                    }
                    _ => {}
                }
                if subject_live && is_active(*liveness) {
                    seen_active += 1;
                }
            }
            if seen_active != live.len() - 1 {
                views_agree = false;
            }
        }
        self.stats.max_suspected_live_pairs = self.stats.max_suspected_live_pairs.max(suspicions);

        let mut fingerprints = self
            .nodes
            .iter()
            .filter(|n| !n.crashed)
            .map(|n| n.replica.fingerprint());
        let first = fingerprints.next();
        let replicas_agree = fingerprints.all(|f| Some(f) == first);

        let now = self.now;
        if self.scenario.reports {
            let settled = replicas_agree && self.coverage().complete();
            if settled && self.settled_since.is_none() {
                self.settled.push(now);
            }
            track(&mut self.settled_since, settled, now);
        }
        track(&mut self.membership_converged_since, views_agree, now);
        if views_agree && self.first_full_view.is_none() {
            self.first_full_view = Some(now);
        }
        track(&mut self.replicas_converged_since, replicas_agree, now);
    }

    pub(super) fn outcome(&mut self) -> Outcome {
        self.stats.busiest_sender = self.nodes.iter().map(|n| n.sent).max().unwrap_or((0, 0));
        let mut sent: Vec<(u64, u64)> = self.nodes.iter().map(|n| n.sent).collect();
        sent.sort_unstable();
        self.stats.p99_sender = sent
            .get(sent.len().saturating_sub(1) * 99 / 100)
            .copied()
            .unwrap_or((0, 0));
        let live_nodes: Vec<&SimNode> = self.nodes.iter().filter(|n| !n.crashed).collect();
        Outcome {
            live: live_nodes.iter().map(|n| n.name.clone()).collect(),
            crashed: self
                .nodes
                .iter()
                .filter(|n| n.crashed)
                .map(|n| n.name.clone())
                .collect(),
            views: live_nodes
                .iter()
                .map(|n| {
                    let view = n
                        .membership
                        .members()
                        .into_iter()
                        .map(|(name, (id, liveness))| (name, (id.incarnation, liveness)))
                        .collect();
                    (n.name.clone(), view)
                })
                .collect(),
            fingerprints: live_nodes
                .iter()
                .map(|n| (n.name.clone(), n.replica.fingerprint()))
                .collect(),
            plans: live_nodes
                .iter()
                .map(|n| (n.name.clone(), plan_from_own_view(n)))
                .collect(),
            stats: self.stats.clone(),
            false_deaths: self.false_deaths.clone(),
            detections: self.detections.values().map(|(_, _, d)| *d).collect(),
            renewed: live_nodes
                .iter()
                .map(|n| (n.name.clone(), n.membership.me().incarnation))
                .filter(|(_, incarnation)| *incarnation > 0)
                .collect(),
            membership_converged_at: self.membership_converged_since,
            replicas_converged_at: self.replicas_converged_since,
            first_full_view_at: self.first_full_view,
            coverage: self.coverage(),
            settled: self.settled.clone(),
            end: self.now,
        }
    }
}

/// Keeps `since` at the start of the current run of converged samples.
fn track(since: &mut Option<Micros>, converged: bool, now: Micros) {
    match (converged, *since) {
        (true, None) => *since = Some(now),
        (false, _) => *since = None,
        (true, Some(_)) => {}
    }
}

/// What the agent does before reconciling: apps from its replica, nodes = itself plus every
/// member it considers alive or suspect, described by their replicated records. Nothing runs
/// yet, so `running` is empty.
fn plan_from_own_view(node: &SimNode) -> Plan {
    let apps: Vec<Application> = node
        .replica
        .apps
        .iter()
        .map(|(_, s)| s.app.clone())
        .collect();
    let mut names = vec![node.name.clone()];
    names.extend(
        node.membership
            .members()
            .into_iter()
            .filter(|(_, (_, liveness))| is_active(*liveness))
            .map(|(name, _)| name),
    );
    let infos: Vec<NodeInfo> = names
        .iter()
        .filter_map(|name| node.replica.nodes.get(name).map(|r| r.info.clone()))
        .collect();
    plan(&apps, &infos, &Running::new())
}
