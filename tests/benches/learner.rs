//! The learner workload on a real local cluster, Delta Sum vs averaging, next to the simulator.
//!
//! Run with `scripts/bench.sh learner-cluster` (needs `dataset-fashion-mnist`). For each rule it
//! starts 10 agents, deploys a 10-replica MLP learner on the full Fashion-MNIST (one replica per
//! agent, `peers: 2`, so the exchange graph is the ring), waits until every replica succeeded,
//! and reads each replica's final test accuracy and byte counters. The traffic baseline is the
//! Delta Sum paper's design, which each replica counts for its own epochs: every memberlist
//! push-pull interval (1 s, 2 s above 32 members) a node sends its whole store (its own and its
//! neighbours' latest messages) to a random member and answers one such call. Then it runs
//! `gossipctl simulate --protocol paper` with the same configuration (the ring, everything new
//! taken in) so the two can be compared. `LEARNER_BENCH_EPOCHS` (default 50) and `LEARNER_BENCH_WINDOW` (default 10)
//! change the run length.

use std::time::{Duration, Instant};

use e2e::{Cluster, binary, wait_for};
use serde_json::Value;

const REPLICAS: usize = 10;

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn app(method: &str, epochs: u32, window: u32) -> String {
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: bench
spec:
  components:
    - name: learner
      type: learner
      properties:
        model: mlp
        aggregation: {method}
        epochs: {epochs}
        window: {window}
        peers: 2
        seed: 1
      traits:
        - type: scaler
          properties: {{replicas: {REPLICAS}}}
        - type: spread
          properties: {{}}
"#
    )
}

struct Outcome {
    accuracies: Vec<f64>,
    wall: Duration,
    sent_per_epoch: f64,
    full_per_epoch: f64,
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn run_cluster(method: &str, epochs: u32, window: u32) -> Outcome {
    let cluster = Cluster::up_joined(REPLICAS);
    let started = Instant::now();
    cluster
        .ctl(&[
            "deploy",
            &cluster.write("bench.yaml", &app(method, epochs, window)),
        ])
        .ok();
    let mut finals: Vec<Value> = Vec::new();
    wait_for(
        "every replica to succeed",
        Duration::from_secs(3600),
        || {
            let replicas: Vec<Value> = cluster
                .workloads()
                .into_iter()
                .filter(|w| w["component"] == "learner")
                .collect();
            let done =
                replicas.len() == REPLICAS && replicas.iter().all(|w| w["state"] == "succeeded");
            if done {
                finals = replicas;
            }
            done
        },
    );
    let wall = started.elapsed();
    let field = |w: &Value, name: &str| w["learner"][name].as_f64().unwrap_or(0.0);
    let per_replica_epoch = |name: &str| {
        finals.iter().map(|w| field(w, name)).sum::<f64>() / (REPLICAS as f64 * epochs as f64)
    };
    Outcome {
        accuracies: finals.iter().map(|w| field(w, "test_accuracy")).collect(),
        wall,
        sent_per_epoch: per_replica_epoch("bytes_sent"),
        full_per_epoch: per_replica_epoch("full_exchange_bytes"),
    }
}

/// Final median accuracy of the simulator on the same configuration.
fn run_simulator(method: &str, epochs: u32, window: u32) -> (f64, Duration) {
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let status = std::process::Command::new(binary("gossipctl"))
        .args([
            "simulate",
            "--model",
            "mlp",
            "--nodes",
            &REPLICAS.to_string(),
        ])
        .args(["--methods", method, "--epochs", &epochs.to_string()])
        .args(["--window", &window.to_string(), "--topology", "ring"])
        .args(["--protocol", "paper", "--seeds", "1"])
        .arg("--out")
        .arg(out.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run gossipctl simulate");
    assert!(status.success(), "simulate failed");
    let wall = started.elapsed();
    let summary = std::fs::read_to_string(out.path().join("summary.csv")).unwrap();
    // method,nodes,seeds,final_median_mean,...
    let row = summary.lines().nth(1).expect("a summary row");
    let median: f64 = row.split(',').nth(3).unwrap().parse().unwrap();
    (median, wall)
}

fn main() {
    let epochs = env_or("LEARNER_BENCH_EPOCHS", 50);
    let window = env_or("LEARNER_BENCH_WINDOW", 10);
    println!(
        "learner workload: {REPLICAS} replicas on {REPLICAS} local agents, MLP, full Fashion-MNIST, \
         {epochs} epochs, window {window}, peers 2 (ring), intake all; {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| rule | cluster min / median / max | simulator median | cluster - simulator | wall (cluster) | wall (simulator) | bytes sent / replica / epoch | paper design | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for method in ["delta-sum", "average"] {
        let cluster = run_cluster(method, epochs, window);
        let (simulated, simulator_wall) = run_simulator(method, epochs, window);
        let accuracies = &cluster.accuracies;
        let lowest = accuracies.iter().copied().fold(f64::INFINITY, f64::min);
        let highest = accuracies.iter().copied().fold(0.0, f64::max);
        let middle = median(accuracies);
        println!(
            "| {method} | {:.2} / {:.2} / {:.2} % | {:.2} % | {:+.2} pp | {:.1} s | {:.1} s | {:.0} kB | {:.0} kB | {:.3} |",
            lowest * 100.0,
            middle * 100.0,
            highest * 100.0,
            simulated * 100.0,
            (middle - simulated) * 100.0,
            cluster.wall.as_secs_f64(),
            simulator_wall.as_secs_f64(),
            cluster.sent_per_epoch / 1e3,
            cluster.full_per_epoch / 1e3,
            cluster.sent_per_epoch / cluster.full_per_epoch.max(1.0),
        );
    }
}
