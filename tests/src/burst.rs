//! The operator's burst, shared by its end-to-end test and its benchmark: real agents on this
//! one machine, then one application of `components` x `replicas` `process` components
//! (`sleep`) deployed at once, sampled once a second until every replica runs exactly once with
//! every agent alive, then deleted.

use std::time::{Duration, Instant};

use crate::{Cluster, cpu_time, processes_with_env, replica_groups, unique_marker};

/// One application of `components` process components with `replicas` replicas each, every
/// process carrying `marker` (`KEY=VALUE`) in its environment.
pub fn burst_app(name: &str, components: usize, replicas: usize, marker: &str) -> String {
    let (key, value) = marker.split_once('=').expect("marker is KEY=VALUE");
    let mut yaml = format!(
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: {name}\nspec:\n  components:\n"
    );
    for c in 0..components {
        yaml.push_str(&format!(
            "    - name: worker-{c}\n      type: process\n      properties:\n        command: [\"sleep\", \"3600\"]\n        env:\n          - name: {key}\n            value: \"{value}\"\n      traits:\n        - type: scaler\n          properties:\n            replicas: {replicas}\n"
        ));
    }
    yaml
}

/// CPU time (user + system) the cluster's agents have used so far; agents that are gone count
/// nothing.
pub fn agents_cpu(cluster: &Cluster) -> Duration {
    (1..=cluster.nodes)
        .map(|i| cpu_time(cluster.agent_pid(i).as_raw(), false))
        .sum()
}

/// The agents' CPU time over `window` of doing nothing in particular.
pub fn idle_cpu(cluster: &Cluster, window: Duration) -> Duration {
    let before = agents_cpu(cluster);
    std::thread::sleep(window);
    agents_cpu(cluster).saturating_sub(before)
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// What one burst measured.
#[derive(Debug)]
pub struct Outcome {
    pub replicas: usize,
    /// From `deploy` until every replica ran exactly once with every agent alive.
    pub converged: Option<Duration>,
    pub most_processes: usize,
    /// Most nodes agent 1 saw dead, and suspect, at any sample.
    pub most_dead: usize,
    pub most_suspect: usize,
    pub peak_load: f64,
    /// CPU time of all agents from `deploy` until converged (or the limit).
    pub burst_cpu: Duration,
    /// From `delete app` until no replica process was left.
    pub cleaned: Option<Duration>,
}

/// Deploys `components` x `replicas` at once on a joined cluster, waits up to `limit` for
/// every replica to run exactly once (and to stay so for three samples), then deletes the
/// application and waits up to `limit` for its processes to go.
pub fn run(cluster: &Cluster, components: usize, replicas: usize, limit: Duration) -> Outcome {
    let marker = unique_marker();
    let file = cluster.write(
        "burst.yaml",
        &burst_app("burst", components, replicas, &marker),
    );
    let total = components * replicas;
    let cpu_before = agents_cpu(cluster);
    let deployed = Instant::now();
    cluster.ctl(&["deploy", &file]).ok();
    let mut outcome = Outcome {
        replicas: total,
        converged: None,
        most_processes: 0,
        most_dead: 0,
        most_suspect: 0,
        peak_load: 0.0,
        burst_cpu: Duration::ZERO,
        cleaned: None,
    };
    let mut settled_samples = 0;
    while deployed.elapsed() < limit {
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
        let settled = processes == total
            && groups == total
            && states.len() == cluster.nodes
            && dead + suspect == 0;
        settled_samples = if settled { settled_samples + 1 } else { 0 };
        if settled && outcome.converged.is_none() {
            outcome.converged = Some(deployed.elapsed());
            outcome.burst_cpu = agents_cpu(cluster).saturating_sub(cpu_before);
        }
        // Converged and still so three seconds later: no late duplicates.
        if settled_samples >= 3 {
            break;
        }
        if !settled {
            outcome.converged = None;
        }
    }
    if outcome.converged.is_none() {
        outcome.burst_cpu = agents_cpu(cluster).saturating_sub(cpu_before);
    }
    let deleting = Instant::now();
    cluster.ctl(&["delete", "app", "burst"]).ok();
    while deleting.elapsed() < limit {
        if processes_with_env(&marker).is_empty() {
            outcome.cleaned = Some(deleting.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    outcome
}
