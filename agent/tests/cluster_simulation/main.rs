//! Deterministic simulation of a whole cluster's membership and replication cores, with no
//! sockets, threads or clocks.
//!
//! Every agent runs SWIM ([`Membership`]) and an LWW replica ([`Replica`]), and places work by
//! running the same pure [`plan`] on its own view. That design is only correct if, once the
//! network settles, every live agent ends up with the same view: the same live members and the
//! same replicated state, hence the same plan. Real clusters of 100+ machines are too slow and
//! too irreproducible to test that, so this file drives the sans-IO cores of 100+ agents from a
//! discrete-event loop instead:
//!
//! - a virtual clock and a priority queue of `(time, seq, event)`, where `seq` breaks ties so a
//!   run is a pure function of its seed;
//! - a network that delays every message by 1-20 ms and drops a configurable fraction;
//! - the same shell logic as the agent (`gossip.rs`, `sync.rs`): re-announce to the seeds while
//!   alone, push local writes to every active member, and run anti-entropy (fingerprint, then
//!   digest, then the missing entries) at once with each new member and every 2 s with the next
//!   active member, round-robin;
//! - crashes: a crashed node silently stops processing anything.
//!
//! Each test ends with the properties the design promises: every live node sees exactly the
//! live nodes (and the crashed ones as down or forgotten), holds the same replica, and computes
//! the same plan, which puts nothing on a crashed node. Replicas must agree within seconds of
//! a deploy; membership is checked only after [`settle_time`], whose doc says why that is
//! minutes rather than seconds at this size. Each run prints its statistics (`--nocapture`).

mod engine;
mod events;
mod outcome;
mod scenario;
mod virtual_time;

use std::time::Instant;

use engine::Sim;
use outcome::{
    Outcome, assert_converged, assert_replicas_converged_promptly, plan_dissenters, report,
    wrong_views,
};
use scenario::{Scenario, Slow, node_name};
use virtual_time::{Micros, ms, seconds, secs};

fn run(scenario: &Scenario, label: &str) -> Outcome {
    let started = Instant::now();
    let outcome = Sim::new(scenario.clone()).run();
    report(label, scenario, &outcome, started.elapsed());
    outcome
}

/// The baseline: a reliable network, no failures. If this does not converge, nothing will.
#[test]
fn a_calm_cluster_of_120_converges_on_one_view_and_one_plan() {
    let scenario = Scenario::new(120, 0.0, 0, 1);
    let outcome = run(&scenario, "calm");
    assert_converged(&outcome);
    assert_replicas_converged_promptly(&scenario, &outcome);
    assert!(
        outcome.false_deaths.is_empty(),
        "false deaths without loss or crashes: {:?}",
        outcome.false_deaths
    );
    assert!(
        outcome.stats.membership_errors.is_empty(),
        "{:?}",
        outcome.stats.membership_errors
    );
}

/// The real configuration under stress: 5% loss on every message and five nodes crashing one
/// after another. SWIM's indirect probes and suspicion must keep loss from killing live nodes
/// for good, and anti-entropy must repair every lost push.
#[test]
fn a_lossy_cluster_of_120_with_crashes_converges_without_false_deaths() {
    let scenario = Scenario::new(120, 0.05, 5, 7);
    let outcome = run(&scenario, "lossy");
    assert_eq!(outcome.crashed.len(), 5);
    // Includes: no live node is down in any live node's view. A transient wrong verdict during
    // the run is allowed (and reported above): a node declared down, or sent a spurious
    // `TurnUndead` (see `settle_time`), rejoins under a new incarnation, and `assert_converged`
    // checks that every live node learned that one.
    assert_converged(&outcome);
    assert_replicas_converged_promptly(&scenario, &outcome);
}

/// Lifeguard's promise: an agent starved of CPU (it handles everything 5 s late for 20 s) does
/// not accuse its healthy peers. It suspects every member it probes; those suspicions get no
/// independent confirmation, so they last six times the suspicion timeout and the peers' refutations
/// reach it first. The starved agent itself is rightly suspected by everyone who probes it, so
/// it may be declared dead (and rejoins). With every suspicion at the plain timeout (multiplier
/// 1) the same run kills healthy peers, so the test does bite.
#[test]
fn a_starved_agent_does_not_kill_its_healthy_peers() {
    let starved = 5;
    let scenario = |multiplier: u32| {
        let mut scenario = Scenario::new(30, 0.0, 0, 11);
        scenario.timings.unconfirmed_multiplier = multiplier;
        scenario.slow = Some(Slow {
            node: starved,
            from: secs(8),
            until: secs(28),
            delay: secs(5),
        });
        scenario.settle = secs(60);
        scenario
    };
    let peers_killed = |outcome: &Outcome| {
        outcome
            .false_deaths
            .iter()
            .filter(|d| d.subject != node_name(starved))
            .count()
    };
    let dynamic = run(&scenario(6), "starved, dynamic suspicion");
    assert_eq!(
        peers_killed(&dynamic),
        0,
        "healthy peers declared dead: {:?}",
        dynamic.false_deaths
    );
    assert_converged(&dynamic);
    let fixed = run(&scenario(1), "starved, fixed suspicion");
    assert!(
        peers_killed(&fixed) > 0,
        "without dynamic suspicion the starved agent should have killed someone"
    );
}

/// A run is a function of its seed: otherwise a failure seen once could not be replayed.
#[test]
fn the_same_seed_replays_the_same_run() {
    let scenario = Scenario::new(100, 0.05, 3, 42);
    let first = run(&scenario, "replay 1");
    let second = run(&scenario, "replay 2");
    assert_eq!(
        first.stats, second.stats,
        "packet counts differ between replays"
    );
    assert_eq!(
        first.views, second.views,
        "final views differ between replays"
    );
    assert_eq!(first.fingerprints, second.fingerprints);
    assert!(first.plans == second.plans, "plans differ between replays");
    assert_eq!(first.false_deaths, second.false_deaths);
    assert!(first == second, "the outcomes differ between replays");
    assert_converged(&first);

    // And the seed matters, so the comparison above is not vacuous (a short run is enough).
    let mut short = scenario.clone();
    short.settle = secs(5);
    let mut other_seed = short.clone();
    other_seed.seed += 1;
    let this = Sim::new(short).run();
    let other = Sim::new(other_seed).run();
    assert_ne!(
        this.stats, other.stats,
        "a different seed should change the run"
    );
}

/// The issue's bound: converged 60 s after the last crash. Without membership anti-entropy
/// this failed at 120 nodes: a node that heard "X suspect" but missed every copy of "X down"
/// kept X as suspect until its own probe cycle reached X (up to 2N probe periods), and its
/// plan differed meanwhile. Agents now swap member lists when their membership digests differ
/// during anti-entropy, which closes that gap.
#[test]
fn membership_converges_within_60_s_of_the_last_crash() {
    let mut failures = Vec::new();
    for seed in 1..=10 {
        let mut scenario = Scenario::new(120, 0.05, 5, seed);
        scenario.settle = secs(60);
        let outcome = run(&scenario, "60 s");
        let wrong = wrong_views(&outcome);
        let dissenters = plan_dissenters(&outcome);
        if !wrong.is_empty() || dissenters > 0 {
            failures.push(format!(
                "seed {seed}: {} wrong (observer, subject) pairs, e.g. {:?}; \
                 {dissenters} nodes with another plan",
                wrong.len(),
                wrong.first()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Not part of the suite: runs many seeds and prints how long convergence took, to choose (and
/// re-check) the bounds the tests above assert:
/// ```text
/// SIM_SEEDS=20 cargo test --release -p agent --test cluster_simulation sweep -- \
///     --ignored --nocapture
/// ```
#[test]
#[ignore = "exploration tool, slow"]
fn sweep_seeds_for_convergence_times() {
    let seeds: u64 = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    for (label, loss, crashes) in [("calm", 0.0, 0), ("lossy", 0.05, 5)] {
        let mut worst: Option<Micros> = Some(0);
        let mut false_deaths = 0;
        for seed in 1..=seeds {
            let scenario = Scenario::new(120, loss, crashes, seed);
            let outcome = Sim::new(scenario.clone()).run();
            let after =
                |at: Option<Micros>| at.map(|at| at.saturating_sub(scenario.last_disruption()));
            let membership = after(outcome.membership_converged_at);
            worst = worst.zip(membership).map(|(a, b)| a.max(b));
            false_deaths += outcome.false_deaths.len();
            println!(
                "{label} seed {seed}: membership {:?} s, replicas {:?} s \
                 after the last disruption; \
                 {} false Down verdicts, {} nodes rejoined, at most {} suspected live pairs",
                membership.map(seconds),
                after(outcome.replicas_converged_at).map(seconds),
                outcome.false_deaths.len(),
                outcome.renewed.len(),
                outcome.stats.max_suspected_live_pairs,
            );
        }
        println!(
            "{label}: worst membership convergence {:?} s after the last disruption, \
             {false_deaths} false Down verdicts in all",
            worst.map(seconds)
        );
    }
}

/// `gossipctl up` starts every agent within a fraction of a second. On the protocol alone
/// (messages take 1-20 ms, nothing waits for a CPU), how soon does every agent see every other?
#[test]
fn a_cluster_of_50_started_together_has_a_full_view_within_2_s() {
    let mut times = Vec::new();
    for seed in 1..=20 {
        let mut scenario = Scenario::new(50, 0.0, 0, seed);
        scenario.start_within = ms(300);
        scenario.settle = secs(1);
        let outcome = Sim::new(scenario).run();
        times.push(outcome.first_full_view_at.map(seconds));
    }
    println!("first full view at: {times:?}");
    assert!(
        times.iter().all(|t| t.is_some_and(|t| t < 2.0)),
        "{times:?}"
    );
}

/// `kill -9` of one agent among 50, on a reliable network: how soon the first agent declares
/// it dead, and how soon every agent holds it dead (the issue's bound: 3 s). The declarer
/// tells every member directly; with SWIM's gossip alone the last agent heard 0.4-0.5 s after
/// the first, and the median over these seeds was 3.0 s instead of 2.6 s.
#[test]
fn a_crash_among_50_is_known_everywhere_within_3_s() {
    let mut first = Vec::new();
    let mut everywhere = Vec::new();
    for seed in 1..=20 {
        let mut scenario = Scenario::new(50, 0.0, 1, seed);
        scenario.settle = secs(10);
        let outcome = Sim::new(scenario).run();
        let detection = outcome.detections[0];
        first.push(detection.first.map(seconds));
        everywhere.push(detection.everywhere.map(seconds));
    }
    println!("first declared dead after: {first:?}");
    println!("dead everywhere after: {everywhere:?}");
    let mut known: Vec<f64> = everywhere.iter().map(|t| t.unwrap_or(f64::MAX)).collect();
    known.sort_by(f64::total_cmp);
    assert!(known[known.len() / 2] < 3.0, "median {known:?}");
    assert!(known.iter().all(|t| *t < 5.0), "{known:?}");
}

/// A burst on a cluster that runs and reports its replicas: 1,000 replicas, then 500 more at
/// once, then 10% of the agents crash together. Every replica ends up reported running by
/// exactly one live agent, every agent holds the same state, and no agent sends more than the
/// rumour rounds allow. The 1,000-agent version is `scripts/bench.sh scale`.
#[test]
fn a_burst_and_a_crash_wave_on_120_agents_settle_with_every_replica_running_once() {
    let scenario = Scenario::scale(120, 1_000, 500, 12, 3);
    let outcome = run(&scenario, "burst 120");
    check_scale(&scenario, &outcome);
}

/// The scale the issue asks for, in release mode (about a minute):
/// ```text
/// cargo test --release -p agent --test cluster_simulation thousand -- --ignored --nocapture
/// ```
#[test]
#[ignore = "scale run, release build: scripts/bench.sh scale"]
fn a_burst_and_a_crash_wave_on_a_thousand_agents_settle() {
    let nodes = std::env::var("SIM_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let scenario = Scenario::scale(nodes, 8_000, 2_000, nodes / 10, 1);
    let outcome = run(&scenario, "burst 1000");
    check_scale(&scenario, &outcome);
}

fn check_scale(scenario: &Scenario, outcome: &Outcome) {
    assert_eq!(outcome.crashed.len(), scenario.crashes);
    let coverage = &outcome.coverage;
    assert!(
        coverage.complete(),
        "not every replica runs exactly once: {coverage:?}"
    );
    let fingerprints: std::collections::BTreeSet<u64> =
        outcome.fingerprints.values().copied().collect();
    assert_eq!(fingerprints.len(), 1, "live agents hold different states");
    // Settled after the burst, before the wave, and again after it.
    let burst = scenario.redeploy_at;
    let wave = scenario.first_crash_at;
    assert!(
        outcome.settled.iter().any(|&t| t > burst && t < wave),
        "never settled between the burst and the crash wave: {:?}",
        outcome.settled
    );
    assert!(
        outcome.settled.iter().any(|&t| t > wave),
        "never settled after the crash wave"
    );
    // Rumours go out at most `fanout` per round; anti-entropy adds one round (about five
    // messages) every 2 s and answers to peers' rounds. Bounded per agent, whatever the load,
    // for all but the seeds: every starting agent greets the members it meets first, so at
    // 1,000 agents a seed answered 9,257 messages in 120 s, most of them in the first seconds.
    let run_seconds = seconds(outcome.end);
    let (messages, _) = outcome.stats.p99_sender;
    assert!(
        (messages as f64) < run_seconds * (30.0 + 20.0),
        "the 99th-percentile agent sent {messages} messages in {run_seconds} s"
    );
}

/// The benchmark of `scripts/bench.sh scale`: the same burst and crash wave with rumours and
/// with the push-to-every-member dissemination they replaced, in one run, as ratios.
#[test]
#[ignore = "benchmark, release build: scripts/bench.sh scale"]
fn bench_rumours_against_push_to_all() {
    let nodes = std::env::var("SIM_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let replicas = 10 * nodes as u32;
    let mut results = Vec::new();
    for push_to_all in [true, false] {
        let mut scenario = Scenario::scale(nodes, replicas * 4 / 5, replicas / 5, nodes / 10, 1);
        scenario.push_to_all = push_to_all;
        let label = if push_to_all {
            "push to all"
        } else {
            "rumours"
        };
        let outcome = run(&scenario, label);
        let s = &outcome.stats;
        let burst_settled = outcome
            .settled
            .iter()
            .find(|&&t| t > scenario.redeploy_at)
            .map(|&t| seconds(t - scenario.redeploy_at));
        results.push((
            label,
            s.sync_sent,
            s.sync_bytes,
            s.busiest_sender,
            burst_settled,
        ));
    }
    println!(
        "\n{nodes} agents, {} replicas, {} crash at once:",
        replicas,
        nodes / 10
    );
    for (label, messages, bytes, busiest, settled) in &results {
        println!(
            "  {label:<12} {messages:>9} sync messages, {:>8.1} MB; busiest agent {} messages, \
             {:.1} MB; burst settled after {}",
            *bytes as f64 / 1e6,
            busiest.0,
            busiest.1 as f64 / 1e6,
            settled.map_or("never".to_string(), |s| format!("{s:.1} s")),
        );
    }
    let (_, m0, b0, w0, _) = results[0];
    let (_, m1, b1, w1, _) = results[1];
    println!(
        "  rumours / push to all: messages {:.2}, bytes {:.2}, busiest agent's messages {:.2}",
        m1 as f64 / m0 as f64,
        b1 as f64 / b0 as f64,
        w1.0 as f64 / w0.0 as f64
    );
}

/// The cost model behind "bounded work per received batch": what merging one rumour batch costs
/// an agent as its replicated state grows from 1,000 to 100,000 workload records. The merge
/// and the fingerprint an anti-entropy round compares should stay flat per entry (a map lookup
/// and a kept sum); a full digest, which only a disagreeing round needs, grows with the state
/// and is printed beside them for contrast.
#[test]
#[ignore = "benchmark, release build: scripts/bench.sh scale"]
fn bench_per_update_work_as_the_state_grows() {
    use agent::api::WorkloadState;
    use agent::cluster::replication::{Replica, WorkloadRecord};
    use orchestrator::WorkloadId;
    use std::time::Instant;

    let record = |replica: u32, restarts: u32| WorkloadRecord {
        id: WorkloadId {
            app: "fleet".into(),
            component: "worker".into(),
            replica,
        },
        node: "node-001".into(),
        state: WorkloadState::Running,
        restarts,
        message: String::new(),
        pid: None,
        fingerprint: 1,
        learner: None,
        since_ms: 0,
        last_exit: String::new(),
        address: None,
    };
    let batch = 100u32;
    let batches = 200u32;
    let mut per_entry = Vec::new();
    for size in [1_000u32, 10_000, 100_000] {
        let mut writer = Replica::new("node-001");
        let mut reader = Replica::new("node-002");
        for i in 0..size {
            let updates = writer.put_workload(record(i, 0), 1_000);
            reader.merge(&updates, 1_000);
        }
        // Rumour batches of changed records, as a burst of status reports brings them.
        let pending: Vec<_> = (0..batches)
            .map(|b| {
                let mut updates = agent::cluster::replication::Updates::default();
                for k in 0..batch {
                    let i = (b * batch + k) % size;
                    updates.extend(writer.put_workload(record(i, b + 1), 2_000));
                }
                updates
            })
            .collect();
        let start = Instant::now();
        let mut sum = 0u64;
        for updates in pending {
            reader.merge(&updates, 2_000);
            sum = sum.wrapping_add(reader.fingerprint());
        }
        let merge_ns = start.elapsed().as_nanos() as f64 / f64::from(batch * batches);
        let start = Instant::now();
        let digest = reader.digest();
        let digest_ms = start.elapsed().as_secs_f64() * 1e3;
        assert_eq!(reader.fingerprint(), writer.fingerprint(), "{sum}");
        println!(
            "{size:>7} records: merge + fingerprint {merge_ns:>7.0} ns per received entry; \
             a full digest {digest_ms:.2} ms ({} keys)",
            digest.workloads.0.len()
        );
        per_entry.push(merge_ns);
    }
    println!(
        "per-entry work at 100,000 records / at 1,000: {:.2}",
        per_entry[2] / per_entry[0]
    );
}
