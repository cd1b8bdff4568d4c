//! What health probes cost the agent that runs them: one agent, 100 `process` replicas
//! (`sleep`), each with a readiness probe checked every second, by kind (tcp, http, exec),
//! against the same 100 replicas without probes, measured in the same run.
//!
//! Run with `scripts/bench.sh probes`. The agent's CPU time includes its reaped children, so
//! the processes exec probes start are counted. Rounds alternate the kinds so that a drift in
//! the machine's speed hits them alike.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use e2e::{Cluster, wait_for};

const REPLICAS: usize = 100;
const ROUNDS: usize = 2;
const WINDOW: Duration = Duration::from_secs(20);
const KINDS: [&str; 4] = ["none", "tcp", "http", "exec"];

/// A listener that accepts and answers `200 OK` to every connection, on a thread of its own.
fn serve_ok() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 1024];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            // A tcp probe closes without a request; an http probe sends one.
            if stream.read(&mut request).is_ok_and(|n| n > 0) {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            }
        }
    });
    port
}

fn app(name: &str, kind: &str, port: u16) -> String {
    let probe = match kind {
        "none" => String::new(),
        "tcp" => {
            format!("        readinessProbe: {{tcpSocket: {{port: {port}}}, periodSeconds: 1}}\n")
        }
        "http" => format!(
            "        readinessProbe: {{httpGet: {{path: /, port: {port}}}, periodSeconds: 1}}\n"
        ),
        "exec" => {
            "        readinessProbe: {exec: {command: [\"true\"]}, periodSeconds: 1}\n".into()
        }
        other => panic!("unknown kind {other}"),
    };
    format!(
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: worker\n      type: process\n      properties:\n        command: [\"sleep\", \"3600\"]\n{probe}      traits:\n        - type: scaler\n          properties:\n            replicas: {REPLICAS}\n"
    )
}

/// CPU time of `pid` and of the children it reaped, in seconds.
fn cpu_with_children(pid: i32) -> f64 {
    e2e::cpu_time(pid, true).as_secs_f64()
}

fn main() {
    let cluster = Cluster::up(1);
    let port = serve_ok();
    let pid = cluster.agent_pid(1).as_raw();
    let mut used: Vec<(&str, Vec<f64>)> = KINDS.iter().map(|k| (*k, Vec::new())).collect();
    for round in 0..ROUNDS {
        for (kind, samples) in used.iter_mut() {
            let name = format!("probes-{kind}-{round}");
            let file = cluster.write(&format!("{name}.yaml"), &app(&name, kind, port));
            cluster.ctl(&["deploy", &file]).ok();
            let want = if *kind == "none" { "running" } else { "ready" };
            wait_for("every replica up", Duration::from_secs(120), || {
                let workloads = cluster.workloads();
                workloads
                    .iter()
                    .filter(|w| w["app"] == name.as_str())
                    .count()
                    == REPLICAS
                    && workloads
                        .iter()
                        .filter(|w| w["app"] == name.as_str())
                        .all(|w| w["state"] == want)
            });
            std::thread::sleep(Duration::from_secs(3));
            let before = cpu_with_children(pid);
            std::thread::sleep(WINDOW);
            let seconds = cpu_with_children(pid) - before;
            samples.push(seconds / WINDOW.as_secs_f64());
            eprintln!(
                "round {round}: {kind:>4}: {:.1} ms of CPU per second",
                seconds * 1000.0 / WINDOW.as_secs_f64()
            );
            cluster.ctl(&["delete", "app", &name, "--wait"]).ok();
        }
    }
    let mean = |samples: &[f64]| samples.iter().sum::<f64>() / samples.len() as f64;
    let baseline = mean(&used[0].1);
    println!(
        "health probes on one agent: {REPLICAS} process replicas, one readiness probe each every second, {ROUNDS} rounds of {}s",
        WINDOW.as_secs()
    );
    println!(
        "| probe | agent CPU (ms/s, with children) | probe cost per 100 replicas (ms/s) | vs no probes |"
    );
    println!("|---|---|---|---|");
    for (kind, samples) in &used {
        let m = mean(samples);
        println!(
            "| {kind} | {:.1} | {:.1} | {:.2}x |",
            m * 1000.0,
            (m - baseline) * 1000.0 * 100.0 / REPLICAS as f64,
            m / baseline
        );
    }
}
