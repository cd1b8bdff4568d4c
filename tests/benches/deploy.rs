//! Deploy-to-running latency, idle memory and binary size of one real agent.
//!
//! Run with `scripts/bench.sh deploy`. Each sample deploys a fresh application with one
//! 10-replica component and polls the agent until every replica runs; the clock covers the
//! deploy request, validation, the durable write, placement and 10 starts. `process` replicas
//! first, then `worker` containers from the locally built busybox image, as a ratio to them;
//! then signed deploys against an agent that neither seals nor checks, as a ratio.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agent::api::{AppStatus, Request, Response};
use agent::client::Client;
use agent::cluster::identity::Credentials;
use e2e::{Cluster, binary};

const SAMPLES: usize = 100;
/// Each container start and stop goes through the engine: fewer samples keep the run short.
const CONTAINER_SAMPLES: usize = 20;
const REPLICAS: u32 = 10;
/// Alternating blocks of the signed and unsigned agents' samples.
const SIGNING_BLOCKS: usize = 5;

fn process_app(name: &str) -> String {
    app(name, "process", r#"{command: ["sleep", "3600"]}"#)
}

fn container_app(name: &str) -> String {
    // A shell that exits on SIGTERM, so the delete between samples takes no grace period.
    let properties = r#"{image: "gossipctl/busybox:local", args: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]}"#;
    app(name, "worker", properties)
}

/// One component of `kind` with `properties` (flow YAML) and 10 replicas.
fn app(name: &str, kind: &str, properties: &str) -> String {
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {name}
spec:
  components:
    - name: worker
      type: {kind}
      properties: {properties}
      traits:
        - type: scaler
          properties:
            replicas: {REPLICAS}
"#
    )
}

async fn status(client: &Client, name: &str) -> Option<AppStatus> {
    match client.request(&Request::GetApps).await.ok()? {
        Response::Apps { apps } => apps.into_iter().find(|a| a.name == name).map(|a| a.status),
        _ => None,
    }
}

async fn workloads_of(client: &Client, name: &str) -> usize {
    match client.request(&Request::GetWorkloads).await {
        Ok(Response::Workloads { workloads }) => workloads.iter().filter(|w| w.app == name).count(),
        _ => usize::MAX,
    }
}

/// Deploy-to-running latency of `samples` fresh applications, sorted; each is deleted (and
/// its workloads gone) before the next.
async fn measure(
    client: &Client,
    prefix: &str,
    samples: usize,
    app: fn(&str) -> String,
    acknowledged: &mut Vec<Duration>,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let name = format!("{prefix}-{i}");
        let started = Instant::now();
        let deployed = client
            .request(&Request::Deploy {
                file: format!("{name}.yaml"),
                source: app(&name),
            })
            .await?;
        anyhow::ensure!(
            matches!(deployed, Response::Deployed(_)),
            "deploy failed: {deployed:?}"
        );
        acknowledged.push(started.elapsed());
        while status(client, &name).await != Some(AppStatus::Running) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(started.elapsed());
        client
            .request(&Request::DeleteApp { name: name.clone() })
            .await?;
        while workloads_of(client, &name).await != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        eprint!("\r{prefix}: sample {}/{samples}", i + 1);
    }
    eprintln!();
    latencies.sort();
    Ok(latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("agent status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cluster = Cluster::up(1);
    let dir = cluster.dir.path();
    let config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(cluster.config())?)?;
    let agents: Vec<SocketAddr> = serde_yaml::from_value(config["agents"].clone())?;
    let creds = Credentials::load(
        &dir.join("ca.crt"),
        &dir.join("admin.crt"),
        &dir.join("admin.key"),
    )?;
    let client = Client::connect(&agents, &creds).await?;

    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(cluster.agent_pid(1).as_raw());

    let mut acknowledged = Vec::new();
    let latencies = measure(&client, "bench", SAMPLES, process_app, &mut acknowledged).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss_after = rss_kib(cluster.agent_pid(1).as_raw());
    let size = std::fs::metadata(binary("gossipd"))?.len();
    e2e::docker::build_images();
    let containers = measure(
        &client,
        "bench-containers",
        CONTAINER_SAMPLES,
        container_app,
        &mut Vec::new(),
    )
    .await?;

    client.close().await;
    drop(cluster);

    // What signing costs: a fresh signed agent against a fresh agent that seals nothing and
    // checks nothing (as agents did before applications were signed; one round trip per
    // deploy), measured in blocks alternating between the two so that a drift in the
    // machine's speed hits both alike. Both start empty: the agent measured above carries the
    // history of 120 deploys and deletes, which would weigh on one side only.
    let signed_cluster = Cluster::up(1);
    let signed_config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(signed_cluster.config())?)?;
    let signed_agents: Vec<SocketAddr> = serde_yaml::from_value(signed_config["agents"].clone())?;
    let signed_dir = signed_cluster.dir.path();
    let client = Client::connect(
        &signed_agents,
        &Credentials::load(
            &signed_dir.join("ca.crt"),
            &signed_dir.join("admin.crt"),
            &signed_dir.join("admin.key"),
        )?,
    )
    .await?;
    let unsigned_cluster = Cluster::up_with_env(1, &[("GOSSIPD_UNSIGNED_FOR_BENCHMARKS", "true")]);
    let unsigned_config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(unsigned_cluster.config())?)?;
    let unsigned_agents: Vec<SocketAddr> =
        serde_yaml::from_value(unsigned_config["agents"].clone())?;
    let unsigned_dir = unsigned_cluster.dir.path();
    let unsigned_client = Client::connect(
        &unsigned_agents,
        &Credentials::load(
            &unsigned_dir.join("ca.crt"),
            &unsigned_dir.join("admin.crt"),
            &unsigned_dir.join("admin.key"),
        )?,
    )
    .await?;
    let (mut signed, mut unsigned) = (Vec::new(), Vec::new());
    let (mut signed_ack, mut unsigned_ack) = (Vec::new(), Vec::new());
    for block in 0..SIGNING_BLOCKS {
        let prefix = format!("signed-{block}");
        signed.extend(
            measure(
                &client,
                &prefix,
                SAMPLES / SIGNING_BLOCKS,
                process_app,
                &mut signed_ack,
            )
            .await?,
        );
        let prefix = format!("unsigned-{block}");
        unsigned.extend(
            measure(
                &unsigned_client,
                &prefix,
                SAMPLES / SIGNING_BLOCKS,
                process_app,
                &mut unsigned_ack,
            )
            .await?,
        );
    }
    signed.sort();
    unsigned.sort();
    signed_ack.sort();
    unsigned_ack.sort();
    unsigned_client.close().await;
    drop(unsigned_cluster);
    client.close().await;
    drop(signed_cluster);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "deploy-to-running, {REPLICAS}-replica process component, one agent, {SAMPLES} deploys"
    );
    println!("| metric | value | goal |");
    println!("|---|---|---|");
    println!(
        "| deploy-to-running median | {:.1} ms | |",
        ms(percentile(&latencies, 50.0))
    );
    println!(
        "| deploy-to-running p99 | {:.1} ms | < 300 ms ({:.2}x of goal) |",
        ms(percentile(&latencies, 99.0)),
        ms(percentile(&latencies, 99.0)) / 300.0
    );
    println!(
        "| deploy-to-running max | {:.1} ms | |",
        ms(*latencies.last().unwrap())
    );
    let ratio = |p: f64| ms(percentile(&containers, p)) / ms(percentile(&latencies, p));
    println!(
        "| container deploy-to-running median ({CONTAINER_SAMPLES} deploys) | {:.1} ms | {:.1}x process |",
        ms(percentile(&containers, 50.0)),
        ratio(50.0)
    );
    println!(
        "| container deploy-to-running p99 | {:.1} ms | < 300 ms ({:.2}x of goal), {:.1}x process |",
        ms(percentile(&containers, 99.0)),
        ms(percentile(&containers, 99.0)) / 300.0,
        ratio(99.0)
    );
    println!(
        "| deploy acknowledged (the request alone) median, signed vs unsigned | {:.1} ms vs {:.1} ms | {:.2}x |",
        ms(percentile(&signed_ack, 50.0)),
        ms(percentile(&unsigned_ack, 50.0)),
        ms(percentile(&signed_ack, 50.0)) / ms(percentile(&unsigned_ack, 50.0))
    );
    for (label, p) in [("median", 50.0), ("p99", 99.0)] {
        let (with, without) = (ms(percentile(&signed, p)), ms(percentile(&unsigned, p)));
        println!(
            "| deploy-to-running {label}, signed and verified vs neither ({SAMPLES} each, alternating) | {with:.1} ms vs {without:.1} ms | {:.2}x{} |",
            with / without,
            if p == 99.0 { " (goal <= 1.1x)" } else { "" }
        );
    }
    println!(
        "| idle RSS at start | {:.1} MiB | < 20 MB ({:.2}x of goal) |",
        idle_rss as f64 / 1024.0,
        idle_rss as f64 * 1024.0 / 20e6
    );
    println!(
        "| idle RSS after {SAMPLES} deploys | {:.1} MiB | < 20 MB |",
        idle_rss_after as f64 / 1024.0
    );
    println!(
        "| gossipd binary (stripped, release) | {:.1} MiB | < 20 MB ({:.2}x of goal) |",
        size as f64 / 1048576.0,
        size as f64 / 20e6
    );
    Ok(())
}
