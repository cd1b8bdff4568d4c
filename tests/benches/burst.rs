//! The operator's burst: real agents on this one machine, then one application of 10 `process`
//! components x 50 replicas (`sleep`) deployed at once.
//!
//! Run with `scripts/bench.sh burst`. On a small machine every agent shares the CPU with every
//! replica it starts, which is the edge's normal case. For 10 agents (the baseline, measured in
//! the same run) and then 50 it records, once a second: replica processes running (more than
//! the replicas means duplicates), nodes that agent 1 sees as dead or suspect, and the load
//! average; then the time until every replica runs exactly once with every agent alive, the
//! agents' CPU time until then, and, after `delete app`, until no replica process is left.
//! Live agents declared dead by anyone are counted from every agent's log. The agents' idle
//! CPU is measured over the same window before the deploy and after the delete.

use std::time::{Duration, Instant};

use e2e::Cluster;
use e2e::burst::{self, Outcome, idle_cpu};

const COMPONENTS: usize = 10;
const REPLICAS: usize = 50;
const LIMIT: Duration = Duration::from_secs(300);
/// How long the agents' idle CPU is measured, before the deploy and after the delete.
const IDLE_WINDOW: Duration = Duration::from_secs(20);
/// Time given to the agents to settle before each idle window.
const SETTLE: Duration = Duration::from_secs(10);

struct Row {
    agents: usize,
    outcome: Outcome,
    false_deaths: usize,
    idle_before: Duration,
    idle_after: Duration,
}

fn run(agents: usize) -> Row {
    eprintln!("\n{agents} agents: starting");
    let cluster = Cluster::up(agents);
    let started = Instant::now();
    while !cluster.all_see_all_alive() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{agents} agents: no full view after 120 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(SETTLE);
    let idle_before = idle_cpu(&cluster, IDLE_WINDOW);
    let deaths_before = cluster.declared_down().len();
    let outcome = burst::run(&cluster, COMPONENTS, REPLICAS, LIMIT);
    std::thread::sleep(SETTLE);
    let idle_after = idle_cpu(&cluster, IDLE_WINDOW);
    let false_deaths = cluster.declared_down().len() - deaths_before;
    Row {
        agents,
        outcome,
        false_deaths,
        idle_before,
        idle_after,
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::var("BURST_AGENTS")
        .unwrap_or_else(|_| "10,50".into())
        .split(',')
        .map(|s| s.trim().parse().expect("BURST_AGENTS: sizes like 10,50"))
        .collect();
    let rows: Vec<Row> = sizes.iter().map(|&n| run(n)).collect();
    let secs = |d: Option<Duration>| {
        d.map_or("not within the limit".into(), |d| {
            format!("{:.1} s", d.as_secs_f64())
        })
    };
    println!(
        "\n{COMPONENTS} components x {REPLICAS} replicas deployed at once, {} cores; idle CPU over {} s",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        IDLE_WINDOW.as_secs()
    );
    println!(
        "| agents | all running once, all alive | most processes | most dead / suspect (agent 1) | live agents declared dead (any agent) | peak load | agent CPU until running | delete until none left | idle CPU before | idle CPU after | after / before |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        let o = &row.outcome;
        println!(
            "| {} | {} | {} | {} / {} | {} | {:.1} | {:.1} s | {} | {:.2} s | {:.2} s | {:.2} |",
            row.agents,
            secs(o.converged),
            o.most_processes,
            o.most_dead,
            o.most_suspect,
            row.false_deaths,
            o.peak_load,
            o.burst_cpu.as_secs_f64(),
            secs(o.cleaned),
            row.idle_before.as_secs_f64(),
            row.idle_after.as_secs_f64(),
            row.idle_after.as_secs_f64() / row.idle_before.as_secs_f64().max(0.01),
        );
    }
    if let [base, .., last] = rows.as_slice()
        && let (Some(b), Some(l)) = (base.outcome.converged, last.outcome.converged)
    {
        println!(
            "convergence at {} agents / at {}: {:.2}",
            last.agents,
            base.agents,
            l.as_secs_f64() / b.as_secs_f64()
        );
    }
}
