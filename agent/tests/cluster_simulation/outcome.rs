//! What a run ends with, its report, and the properties the design promises of it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agent::cluster::membership::Liveness;
use orchestrator::plan::Plan;

use crate::engine::is_active;
use crate::scenario::{
    BATCH_REPLICAS_SECOND, CACHE_REPLICAS, REPLICAS_CONVERGE_WITHIN, SENSOR_REPLICAS, Scenario,
};
use crate::virtual_time::{Micros, seconds};

/// Counters a run reports; compared whole by the determinism test.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub events: u64,
    pub swim_sent: u64,
    pub swim_lost: u64,
    /// Datagrams that reached a crashed node (and were ignored by it).
    pub swim_to_crashed: u64,
    /// Datagrams to an address no node owns; should stay zero.
    pub swim_unroutable: u64,
    /// Checks of a member another suspects, and how many of them failed (confirmations).
    pub checks: u64,
    pub checks_failed: u64,
    /// Deaths told directly by their declarer, one per recipient.
    pub verdicts: u64,
    /// Errors from `handle_packet`/`handle_timer`/`announce`, by message. Counted, not fatal:
    /// the agent only logs them too.
    pub membership_errors: BTreeMap<String, u64>,
    pub sync_sent: u64,
    pub sync_lost: u64,
    pub sync_to_crashed: u64,
    pub sync_rounds: u64,
    pub sync_rounds_in_sync: u64,
    /// The most anti-entropy rounds one node served within one second of virtual time.
    pub max_rounds_served_per_second: u64,
    /// Which node served them, and in which second of virtual time.
    pub busiest: Option<(String, u64)>,
    /// Entries carried by anti-entropy replies and pushes (rumours included).
    pub sync_entries_sent: u64,
    /// Bytes of every sync message, as JSON frames.
    pub sync_bytes: u64,
    /// Rumour batches received, the entries they carried, and how many were new to the
    /// receiver (the rest is the price of the epidemic's redundancy).
    pub pushes_received: u64,
    pub push_entries_received: u64,
    pub push_entries_new: u64,
    /// Sync messages and bytes sent by the node that sent the most, over the whole run.
    pub busiest_sender: (u64, u64),
    /// The 99th percentile over nodes of sync messages and bytes sent (the busiest are the
    /// seeds, which every starting agent meets first).
    pub p99_sender: (u64, u64),
    /// The most (observer, live subject) pairs in `Suspect` seen at one sample: how much
    /// transient false suspicion the loss causes.
    pub max_suspected_live_pairs: u64,
}

/// Replicas of every application, by how many live nodes report them running.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    pub wanted: u64,
    pub running_once: u64,
    pub duplicated: u64,
    pub missing: u64,
}

impl Coverage {
    pub fn complete(&self) -> bool {
        self.running_once == self.wanted
    }
}

/// How long after a crash the first live node, and the last one alive at that moment,
/// declared it down (whether by its own verdict or by hearing another's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Detection {
    pub first: Option<Micros>,
    pub everywhere: Option<Micros>,
}

/// A live node declared `Down` by another node, as seen when the observer's member list
/// changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FalseDeath {
    pub at_ms: u64,
    pub observer: String,
    pub subject: String,
    pub incarnation: u64,
}

/// Everything a run ends with; two runs with the same seed must produce equal outcomes.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub live: BTreeSet<String>,
    pub crashed: BTreeSet<String>,
    /// Per live node: every other member it knows, with incarnation and liveness.
    pub views: BTreeMap<String, BTreeMap<String, (u64, Liveness)>>,
    pub fingerprints: BTreeMap<String, u64>,
    pub plans: BTreeMap<String, Plan>,
    pub stats: Stats,
    pub false_deaths: Vec<FalseDeath>,
    /// Per crash, in the order of the crashed nodes' indices: how soon it was declared down.
    pub detections: Vec<Detection>,
    /// Live nodes that had to rejoin under a new incarnation (after a false `Down`), with it.
    pub renewed: BTreeMap<String, u64>,
    /// When the membership views, and the replicas, last became (and then stayed) converged.
    pub membership_converged_at: Option<Micros>,
    pub replicas_converged_at: Option<Micros>,
    /// The first instant at which every live node saw every other live node as active.
    pub first_full_view_at: Option<Micros>,
    /// With reports: how the replicas are reported at the end, and every instant at which
    /// the cluster became settled (same state everywhere, every replica running once).
    pub coverage: Coverage,
    pub settled: Vec<Micros>,
    pub end: Micros,
}

pub fn report(label: &str, scenario: &Scenario, outcome: &Outcome, elapsed: Duration) {
    let since = |at: Option<Micros>| match at {
        Some(at) if at >= scenario.last_disruption() => format!(
            "{:.2} s after the last disruption (t={:.2} s)",
            seconds(at - scenario.last_disruption()),
            seconds(at)
        ),
        Some(at) => format!("before the last disruption, at t={:.2} s", seconds(at)),
        None => "never".into(),
    };
    let s = &outcome.stats;
    println!(
        "[{label}] {} nodes, {:.0}% loss, {} crashed, seed {}: \
         {:.0} s virtual in {:.2} s real, {} events",
        scenario.nodes,
        scenario.loss * 100.0,
        outcome.crashed.len(),
        scenario.seed,
        seconds(outcome.end),
        elapsed.as_secs_f64(),
        s.events,
    );
    println!(
        "  membership converged {}",
        since(outcome.membership_converged_at)
    );
    println!(
        "  replicas converged   {}",
        since(outcome.replicas_converged_at)
    );
    println!(
        "  swim: {} datagrams sent, {} lost, {} to crashed nodes, {} unroutable",
        s.swim_sent, s.swim_lost, s.swim_to_crashed, s.swim_unroutable
    );
    println!(
        "  checks of suspected members: {}, {} failed; deaths told directly: {}",
        s.checks, s.checks_failed, s.verdicts
    );
    println!(
        "  sync: {} messages sent ({} entries), {} lost, {} to crashed nodes; \
         {} rounds, {} already in sync",
        s.sync_sent,
        s.sync_entries_sent,
        s.sync_lost,
        s.sync_to_crashed,
        s.sync_rounds,
        s.sync_rounds_in_sync,
    );
    println!(
        "  rumours: {} batches received carrying {} entries, {} new to their receiver; \
         {:.1} MB of sync messages in all, busiest sender {} messages / {:.1} MB, \
         99th percentile {} messages / {:.1} MB",
        s.pushes_received,
        s.push_entries_received,
        s.push_entries_new,
        s.sync_bytes as f64 / 1e6,
        s.busiest_sender.0,
        s.busiest_sender.1 as f64 / 1e6,
        s.p99_sender.0,
        s.p99_sender.1 as f64 / 1e6,
    );
    if scenario.reports {
        let c = &outcome.coverage;
        println!(
            "  replicas: {} wanted, {} running on exactly one live node, {} duplicated, {} \
             missing; settled at t = {:?} s",
            c.wanted,
            c.running_once,
            c.duplicated,
            c.missing,
            outcome
                .settled
                .iter()
                .map(|&t| seconds(t))
                .collect::<Vec<_>>()
        );
    }
    if let Some((node, second)) = &s.busiest {
        println!(
            "  busiest: {node} served {} rounds in second {second} of the run",
            s.max_rounds_served_per_second
        );
    }
    println!(
        "  at most {} (observer, live node) pairs in Suspect at once; \
         {} false Down verdicts during the run",
        s.max_suspected_live_pairs,
        outcome.false_deaths.len()
    );
    // One line per wrongly killed identity: a verdict spreads to most of the cluster.
    let mut verdicts: BTreeMap<(&String, u64), (u64, u64, usize)> = BTreeMap::new();
    for death in &outcome.false_deaths {
        let entry = verdicts
            .entry((&death.subject, death.incarnation))
            .or_insert((death.at_ms, death.at_ms, 0));
        entry.0 = entry.0.min(death.at_ms);
        entry.1 = entry.1.max(death.at_ms);
        entry.2 += 1;
    }
    for ((subject, incarnation), (first, last, observers)) in verdicts {
        println!(
            "    live {subject} (incarnation {incarnation}) declared down by {observers} nodes \
             between t={:.3} s and t={:.3} s",
            first as f64 / 1000.0,
            last as f64 / 1000.0
        );
    }
    if !outcome.renewed.is_empty() {
        println!("  rejoined under a new incarnation: {:?}", outcome.renewed);
    }
    // Where the views still disagree at the end, to tell a slow tail from a real bug.
    let wrong = wrong_views(outcome);
    println!(
        "  at the end, {} (observer, subject) pairs are wrong; {} live nodes disagree with the \
         most common plan",
        wrong.len(),
        plan_dissenters(outcome)
    );
    for line in wrong.iter().take(10) {
        println!("    {line}");
    }
    if !s.membership_errors.is_empty() {
        println!("  membership errors: {:?}", s.membership_errors);
    }
}

/// Every (observer, subject) pair whose liveness is wrong at the end: a live node not seen as
/// alive or suspect, or a crashed one still seen so.
pub fn wrong_views(outcome: &Outcome) -> Vec<String> {
    let mut wrong = Vec::new();
    for (observer, view) in &outcome.views {
        for live in outcome.live.iter().filter(|n| *n != observer) {
            match view.get(live) {
                Some((_, liveness)) if is_active(*liveness) => {}
                seen => wrong.push(format!("{observer} sees live {live} as {seen:?}")),
            }
        }
        for crashed in &outcome.crashed {
            if let Some(seen @ (_, liveness)) = view.get(crashed)
                && is_active(*liveness)
            {
                wrong.push(format!("{observer} sees crashed {crashed} as {seen:?}"));
            }
        }
    }
    wrong
}

/// How many live nodes compute a plan other than the most common one.
pub fn plan_dissenters(outcome: &Outcome) -> usize {
    // Distinct plans with their counts: linear in the nodes while they agree (at 1,000 agents
    // comparing every pair of 10,000-replica plans took longer than the run).
    let mut distinct: Vec<(&Plan, usize)> = Vec::new();
    for plan in outcome.plans.values() {
        match distinct.iter_mut().find(|(p, _)| *p == plan) {
            Some((_, count)) => *count += 1,
            None => distinct.push((plan, 1)),
        }
    }
    let most_common = distinct.iter().map(|(_, c)| *c).max().unwrap_or(0);
    outcome.plans.len() - most_common
}

/// The three end-state properties of the design; see the module docs.
pub fn assert_converged(outcome: &Outcome) {
    assert!(!outcome.live.is_empty(), "test bug: no live nodes");

    // 1. Every live node sees exactly the other live nodes as alive or suspect, and the crashed
    //    ones as down or not at all.
    for (observer, view) in &outcome.views {
        let active: BTreeSet<&String> = view
            .iter()
            .filter(|(_, (_, liveness))| is_active(*liveness))
            .map(|(name, _)| name)
            .collect();
        let expected: BTreeSet<&String> = outcome.live.iter().filter(|n| *n != observer).collect();
        let missing: Vec<_> = expected.difference(&active).collect();
        let extra: Vec<_> = active.difference(&expected).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{observer}'s view is wrong: live but not active {missing:?}, \
             active but crashed {extra:?}"
        );
        for crashed in &outcome.crashed {
            if let Some((_, liveness)) = view.get(crashed) {
                assert_eq!(
                    *liveness,
                    Liveness::Down,
                    "{observer} still sees crashed {crashed} as {liveness:?}"
                );
            }
        }
        for (subject, (_, liveness)) in view {
            assert!(
                !(outcome.live.contains(subject) && *liveness == Liveness::Down),
                "{observer} holds live {subject} down at the end"
            );
        }
    }
    // Same view also means the same incarnation of everyone: a node that was wrongly declared
    // down rejoins under a higher one, and all must have learned it.
    let incarnations = |observer: &String| -> BTreeMap<&String, u64> {
        outcome.views[observer]
            .iter()
            .filter(|(name, _)| outcome.live.contains(*name))
            .map(|(name, (incarnation, _))| (name, *incarnation))
            .collect()
    };
    let mut all_incarnations: BTreeMap<&String, BTreeSet<u64>> = BTreeMap::new();
    for observer in outcome.views.keys() {
        for (name, incarnation) in incarnations(observer) {
            all_incarnations
                .entry(name)
                .or_default()
                .insert(incarnation);
        }
    }
    for (name, seen) in &all_incarnations {
        assert_eq!(
            seen.len(),
            1,
            "live nodes disagree on {name}'s incarnation: {seen:?}"
        );
    }

    // 2. Every live node holds the same replicated state.
    let fingerprints: BTreeSet<u64> = outcome.fingerprints.values().copied().collect();
    assert_eq!(
        fingerprints.len(),
        1,
        "replicas differ: {} distinct fingerprints among {} live nodes",
        fingerprints.len(),
        outcome.live.len()
    );

    // 3. Every live node computes the same plan, which is complete and uses live nodes only.
    let (first_node, reference) = outcome.plans.iter().next().expect("live nodes exist");
    for (node, own) in &outcome.plans {
        if own != reference {
            let differing = reference
                .assignments
                .iter()
                .filter(|(id, host)| own.assignments.get(*id) != Some(*host))
                .count();
            panic!(
                "{node}'s plan differs from {first_node}'s: {differing} of {} assignments differ, \
                 {} vs {} unschedulable",
                reference.assignments.len(),
                own.unschedulable.len(),
                reference.unschedulable.len()
            );
        }
    }
    assert!(
        reference.unschedulable.is_empty(),
        "unschedulable: {:?}",
        reference.unschedulable
    );
    let expected = BATCH_REPLICAS_SECOND + CACHE_REPLICAS + SENSOR_REPLICAS;
    assert_eq!(
        reference.assignments.len(),
        expected as usize,
        "the plan should hold the redeployed batch ({BATCH_REPLICAS_SECOND}) and edge replicas"
    );
    for (id, host) in &reference.assignments {
        assert!(
            outcome.live.contains(host),
            "{id} is assigned to {host}, which is not live"
        );
    }
}

/// Deploys must reach every live replica within [`REPLICAS_CONVERGE_WITHIN`] of the last one,
/// and stay there: crashes do not change replicated state.
pub fn assert_replicas_converged_promptly(scenario: &Scenario, outcome: &Outcome) {
    let at = outcome
        .replicas_converged_at
        .expect("replicas never converged");
    assert!(
        at <= scenario.redeploy_at + REPLICAS_CONVERGE_WITHIN,
        "replicas converged only at t={:.2} s, more than {:.0} s after the redeploy at t={:.2} s",
        seconds(at),
        seconds(REPLICAS_CONVERGE_WITHIN),
        seconds(scenario.redeploy_at)
    );
}
