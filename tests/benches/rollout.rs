//! How long a rolling update takes: 10 `process` replicas (`sleep`, an exec readiness probe
//! every second) on 5 real agents, updated with `deploy --wait` one replica at a time
//! (`maxUnavailable: 1`, the default), a quarter at a time (`25%`, which rounds down to 2) and
//! all at once (`maxUnavailable: 10`, how a changed component was replaced before rollouts),
//! measured in the same run. Rounds alternate the policies so that a drift in the machine's
//! speed hits them alike.
//!
//! Run with `scripts/bench.sh rollout`.

use std::time::{Duration, Instant};

use e2e::{Cluster, wait_for};

const REPLICAS: usize = 10;
const ROUNDS: usize = 3;
/// Label, and `maxUnavailable` as written in YAML.
const POLICIES: [(&str, &str); 3] = [
    ("one at a time", "1"),
    ("25%", "\"25%\""),
    ("all at once", "10"),
];

fn app(name: &str, max_unavailable: &str, version: usize) -> String {
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {name}
spec:
  components:
    - name: worker
      type: process
      properties:
        command: ["sleep", "3600"]
        env:
          - name: VERSION
            value: "{version}"
        readinessProbe:
          exec:
            command: ["true"]
          periodSeconds: 1
      traits:
        - type: scaler
          properties: {{replicas: {REPLICAS}}}
        - type: spread
          properties: {{}}
        - type: rollout
          properties: {{maxUnavailable: {max_unavailable}}}
"#
    )
}

fn main() {
    let cluster = Cluster::up_joined(5);
    let mut took: Vec<Vec<f64>> = vec![Vec::new(); POLICIES.len()];
    for (i, (label, max_unavailable)) in POLICIES.iter().enumerate() {
        let name = format!("rollout-{i}");
        let file = cluster.write(&format!("{name}.yaml"), &app(&name, max_unavailable, 0));
        cluster.ctl(&["deploy", &file, "--wait"]).ok();
        eprintln!("{label}: {REPLICAS} replicas ready");
    }
    wait_for("every replica ready", Duration::from_secs(60), || {
        let workloads = cluster.workloads();
        workloads.len() == REPLICAS * POLICIES.len()
            && workloads.iter().all(|w| w["state"] == "ready")
    });
    for round in 1..=ROUNDS {
        for (i, (label, max_unavailable)) in POLICIES.iter().enumerate() {
            let name = format!("rollout-{i}");
            let file = cluster.write(
                &format!("{name}-{round}.yaml"),
                &app(&name, max_unavailable, round),
            );
            let start = Instant::now();
            cluster
                .ctl(&["deploy", &file, "--wait", "--timeout", "300s"])
                .ok();
            let seconds = start.elapsed().as_secs_f64();
            took[i].push(seconds);
            eprintln!("round {round}: {label:>13}: {seconds:.1} s");
        }
    }
    let median = |samples: &[f64]| {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    };
    let baseline = median(&took[POLICIES.len() - 1]);
    println!(
        "rolling update of {REPLICAS} process replicas on 5 agents, deploy --wait until complete, {ROUNDS} rounds"
    );
    println!("| maxUnavailable | min (s) | median (s) | max (s) | vs all at once |");
    println!("|---|---|---|---|---|");
    for (i, (label, _)) in POLICIES.iter().enumerate() {
        let samples = &took[i];
        let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
        let max = samples.iter().copied().fold(0.0, f64::max);
        println!(
            "| {label} | {min:.1} | {:.1} | {max:.1} | {:.2}x |",
            median(samples),
            median(samples) / baseline
        );
    }
}
