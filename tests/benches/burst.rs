//! The operator's burst: real agents on this one machine, then one application of 10 `process`
//! components x 50 replicas (`sleep`) deployed at once.
//!
//! Run with `scripts/bench.sh burst`. On a small machine every agent shares the CPU with every
//! replica it starts, which is the edge's normal case. For 10 agents (the baseline, measured in
//! the same run) and then 50 it records, once a second: replica processes running (more than
//! the replicas means duplicates), nodes that agent 1 sees as dead or suspect, and the load
//! average; then the time until every replica runs exactly once with every agent alive, and,
//! after `delete app`, until no replica process is left.

use std::time::{Duration, Instant};

use e2e::{Cluster, processes_with_env, replica_groups, unique_marker};

const COMPONENTS: usize = 10;
const REPLICAS: usize = 50;
const LIMIT: Duration = Duration::from_secs(300);

fn burst_app(marker: &str) -> String {
    let (key, value) = marker.split_once('=').expect("marker is KEY=VALUE");
    let mut yaml = String::from(
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: burst\nspec:\n  components:\n",
    );
    for c in 0..COMPONENTS {
        yaml.push_str(&format!(
            "    - name: worker-{c}\n      type: process\n      properties:\n        command: [\"sleep\", \"3600\"]\n        env:\n          - name: {key}\n            value: \"{value}\"\n      traits:\n        - type: scaler\n          properties:\n            replicas: {REPLICAS}\n"
        ));
    }
    yaml
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// What one size measured.
struct Outcome {
    agents: usize,
    /// From `deploy` until every replica ran exactly once with every agent alive.
    converged: Option<Duration>,
    most_processes: usize,
    most_dead: usize,
    most_suspect: usize,
    peak_load: f64,
    /// From `delete app` until no replica process was left.
    cleaned: Option<Duration>,
}

fn run(agents: usize) -> Outcome {
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
    let marker = unique_marker();
    let file = cluster.write("burst.yaml", &burst_app(&marker));
    let total = COMPONENTS * REPLICAS;
    let deployed = Instant::now();
    cluster.ctl(&["deploy", &file]).ok();
    let mut outcome = Outcome {
        agents,
        converged: None,
        most_processes: 0,
        most_dead: 0,
        most_suspect: 0,
        peak_load: 0.0,
        cleaned: None,
    };
    let mut settled_samples = 0;
    while deployed.elapsed() < LIMIT {
        std::thread::sleep(Duration::from_secs(1));
        let processes = processes_with_env(&marker).len();
        let groups = replica_groups(&marker).len();
        let states = cluster.node_states(1);
        let dead = states.values().filter(|s| *s == "dead").count();
        let suspect = states.values().filter(|s| *s == "suspect").count();
        let load = load_average();
        outcome.most_processes = outcome.most_processes.max(processes);
        outcome.most_dead = outcome.most_dead.max(dead);
        outcome.most_suspect = outcome.most_suspect.max(suspect);
        outcome.peak_load = outcome.peak_load.max(load);
        eprintln!(
            "  {:>5.1} s: {processes:>4} processes in {groups:>4} replicas, {dead} dead, \
             {suspect} suspect (agent 1's view of {}), load {load:.1}",
            deployed.elapsed().as_secs_f64(),
            states.len()
        );
        let settled = processes == total && groups == total && dead + suspect == 0;
        settled_samples = if settled { settled_samples + 1 } else { 0 };
        if settled && outcome.converged.is_none() {
            outcome.converged = Some(deployed.elapsed());
        }
        // Converged and still so three seconds later: no late duplicates.
        if settled_samples >= 3 {
            break;
        }
        if !settled {
            outcome.converged = None;
        }
    }
    let deleting = Instant::now();
    cluster.ctl(&["delete", "app", "burst"]).ok();
    while deleting.elapsed() < Duration::from_secs(120) {
        if processes_with_env(&marker).is_empty() {
            outcome.cleaned = Some(deleting.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    outcome
}

fn main() {
    let sizes: Vec<usize> = std::env::var("BURST_AGENTS")
        .unwrap_or_else(|_| "10,50".into())
        .split(',')
        .map(|s| s.trim().parse().expect("BURST_AGENTS: sizes like 10,50"))
        .collect();
    let outcomes: Vec<Outcome> = sizes.iter().map(|&n| run(n)).collect();
    let secs = |d: Option<Duration>| {
        d.map_or("not within the limit".into(), |d| {
            format!("{:.1} s", d.as_secs_f64())
        })
    };
    println!(
        "\n{COMPONENTS} components x {REPLICAS} replicas deployed at once, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| agents | all running once, all alive | most processes | most dead | most suspect | peak load | delete until none left |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for o in &outcomes {
        println!(
            "| {} | {} | {} | {} | {} | {:.1} | {} |",
            o.agents,
            secs(o.converged),
            o.most_processes,
            o.most_dead,
            o.most_suspect,
            o.peak_load,
            secs(o.cleaned)
        );
    }
    if let [base, .., last] = outcomes.as_slice()
        && let (Some(b), Some(l)) = (base.converged, last.converged)
    {
        println!(
            "convergence at {} agents / at {}: {:.2}",
            last.agents,
            base.agents,
            l.as_secs_f64() / b.as_secs_f64()
        );
    }
}
