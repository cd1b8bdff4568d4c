//! Membership and failover at 10 and 50 real agents on one machine.
//!
//! Run with `scripts/bench.sh cluster` (as root: gossip traffic is counted, and packet loss
//! injected, with nftables on loopback). For each size it measures: start until every agent
//! sees every other alive; steady gossip bytes per node per second; whether any live node is
//! declared dead during 30 s of 5% packet loss; then, for three agents killed one after
//! another with `kill -9`, until every survivor marks each dead and until its replica runs
//! elsewhere (median, min and max: when a random probe first reaches the dead agent varies by
//! a second or more).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::api::{NodeState, Request, Response};
use agent::client::Client;
use agent::cluster::identity::Credentials;
use e2e::{Cluster, unique_marker};

const SIZES: [usize; 2] = [10, 50];
const STEADY_WINDOW: Duration = Duration::from_secs(10);
/// Steady state starts this long after `gossipctl up` at the earliest.
const STEADY_AFTER: Duration = Duration::from_secs(30);
const LOSS_WINDOW: Duration = Duration::from_secs(30);
/// Agents killed one after another, for the detection and failover figures.
const KILLS: usize = 3;

/// What one `kill -9` measured, each from the kill.
struct Kill {
    first_dead: Duration,
    all_dead: Duration,
    replaced: Duration,
}

/// `kill -9` agent `victim_index` (1-based), then waits until every other live agent marks it
/// dead and a replica it ran runs on another node.
async fn kill_and_fail_over(
    cluster: &Cluster,
    agents: &Agents,
    victim_index: usize,
) -> anyhow::Result<Kill> {
    let victim = format!("node-{victim_index}");
    let victim_replica = match agents.clients[0].request(&Request::GetWorkloads).await? {
        Response::Workloads { workloads } => workloads
            .iter()
            .find(|w| w.node == victim)
            .map(|w| w.id.clone())
            .ok_or_else(|| anyhow::anyhow!("{victim} runs no replica"))?,
        other => anyhow::bail!("{other:?}"),
    };
    cluster.kill_agent(victim_index);
    let killed = Instant::now();
    let mut first_dead = None;
    // Agents numbered above the victim were killed before it.
    let survivors = victim_index - 1;
    loop {
        let mut dead_everywhere = true;
        for i in 0..survivors {
            let dead = agents.states(i).await.get(&victim) == Some(&NodeState::Dead);
            if dead && first_dead.is_none() {
                first_dead = Some(killed.elapsed());
            }
            dead_everywhere &= dead;
        }
        if dead_everywhere {
            break;
        }
        anyhow::ensure!(
            killed.elapsed() < Duration::from_secs(60),
            "{victim} not declared dead after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_dead = killed.elapsed();
    loop {
        if let Response::Workloads { workloads } =
            agents.clients[0].request(&Request::GetWorkloads).await?
        {
            let moved = workloads.iter().any(|w| {
                w.id == victim_replica
                    && w.node != victim
                    && w.state == agent::api::WorkloadState::Running
            });
            if moved {
                break;
            }
        }
        anyhow::ensure!(
            killed.elapsed() < Duration::from_secs(60),
            "{victim}'s replica not replaced after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Kill {
        first_dead: first_dead.unwrap_or_default(),
        all_dead,
        replaced: killed.elapsed(),
    })
}

struct Agents {
    clients: Vec<Client>,
}

impl Agents {
    async fn connect(cluster: &Cluster, n: usize) -> anyhow::Result<Self> {
        let dir = cluster.dir.path();
        let creds = Credentials::load(
            &dir.join("ca.crt"),
            &dir.join("admin.crt"),
            &dir.join("admin.key"),
        )?;
        // All at once: connecting one by one would add a handshake per agent to the first
        // full-view poll.
        let creds = std::sync::Arc::new(creds);
        let mut connecting = tokio::task::JoinSet::new();
        for i in 1..=n {
            let address: SocketAddr = cluster.address(i).parse()?;
            let creds = creds.clone();
            connecting.spawn(async move { (i, Client::connect(&[address], &creds).await) });
        }
        let mut clients: Vec<(usize, Client)> = Vec::new();
        while let Some(joined) = connecting.join_next().await {
            let (i, client) = joined?;
            clients.push((i, client?));
        }
        clients.sort_by_key(|(i, _)| *i);
        Ok(Agents {
            clients: clients.into_iter().map(|(_, c)| c).collect(),
        })
    }

    async fn states(&self, index: usize) -> BTreeMap<String, NodeState> {
        match self.clients[index].request(&Request::GetNodes).await {
            Ok(Response::Nodes { nodes }) => nodes.into_iter().map(|n| (n.name, n.state)).collect(),
            _ => BTreeMap::new(),
        }
    }
}

fn nft(script: &str) -> bool {
    let Ok(mut child) = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
    else {
        return false;
    };
    let _ = child.stdin.take().unwrap().write_all(script.as_bytes());
    child.wait().is_ok_and(|s| s.success())
}

fn nft_delete(table: &str) {
    let _ = Command::new("nft")
        .args(["delete", "table", "inet", table])
        .status();
}

/// Bytes each port sent, from per-port nftables counters.
fn counted_bytes(table: &str) -> Option<u64> {
    let out = Command::new("nft")
        .args(["list", "table", "inet", table])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "bytes")
            .filter_map(|w| w[1].parse::<u64>().ok())
            .sum(),
    )
}

fn app(marker: &str, replicas: usize) -> String {
    let (key, value) = marker.split_once('=').unwrap();
    format!(
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: bench\nspec:\n  components:\n    - name: worker\n      type: process\n      properties:\n        command: [\"sleep\", \"3600\"]\n        env:\n          - name: {key}\n            value: \"{value}\"\n      traits:\n        - type: scaler\n          properties:\n            replicas: {replicas}\n        - type: spread\n          properties: {{}}\n"
    )
}

/// How much of one size to run.
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    /// Everything: start, steady state, loss, kills.
    Full,
    /// Up to the full view.
    Convergence,
    /// Up to the steady-state window, with agents that seal and check nothing when
    /// `unsigned` (to price signing).
    Steady { unsigned: bool },
}

/// CPU seconds (user and system) the processes `pids` have used so far.
fn cpu_seconds(pids: &[i32]) -> f64 {
    pids.iter()
        .map(|&pid| e2e::cpu_time(pid, false).as_secs_f64())
        .sum()
}

async fn run_size(n: usize, scope: Scope) -> anyhow::Result<Vec<(String, String)>> {
    let started = Instant::now();
    let cluster = match scope {
        Scope::Steady { unsigned: true } => {
            Cluster::up_with_env(n, &[("GOSSIPD_UNSIGNED_FOR_BENCHMARKS", "true")])
        }
        _ => Cluster::up(n),
    };
    let answering = started.elapsed();
    let agents = Agents::connect(&cluster, n).await?;
    eprintln!(
        "  {:.2} s: a client connected to every agent",
        started.elapsed().as_secs_f64()
    );
    let mut lagging = String::new();
    loop {
        let mut all = true;
        for i in 0..n {
            let states = agents.states(i).await;
            if states.len() != n || states.values().any(|s| *s != NodeState::Alive) {
                all = false;
                let not_alive: Vec<String> = states
                    .iter()
                    .filter(|(_, s)| **s != NodeState::Alive)
                    .map(|(name, s)| format!("{name} {s:?}"))
                    .collect();
                let now = format!(
                    "node-{} knows {} of {n}, not alive: {not_alive:?}",
                    i + 1,
                    states.len()
                );
                if now != lagging {
                    eprintln!("  {:.2} s: {now}", started.elapsed().as_secs_f64());
                    lagging = now;
                }
                break;
            }
        }
        if all {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "no full view after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let converged = started.elapsed();
    eprintln!("{n} agents: `up` returned after {answering:?}, full view after {converged:?}");
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let mut rows = vec![
        (
            "`gossipctl up` start until it returns (one agent sees every other alive)".to_string(),
            secs(answering),
        ),
        (
            "start until every agent sees every other alive".into(),
            format!("{} (goal < 1 s at 50)", secs(converged)),
        ),
    ];
    if scope == Scope::Convergence {
        return Ok(rows);
    }

    let marker = unique_marker();
    let deploy = Request::Deploy {
        file: "bench.yaml".into(),
        source: app(&marker, n),
    };
    anyhow::ensure!(matches!(
        agents.clients[0].request(&deploy).await?,
        Response::Deployed(_)
    ));
    let placed = |workloads: &[agent::api::WorkloadView]| {
        workloads.len() == n
            && workloads
                .iter()
                .all(|w| w.state == agent::api::WorkloadState::Running)
    };
    loop {
        if let Response::Workloads { workloads } =
            agents.clients[0].request(&Request::GetWorkloads).await?
            && placed(&workloads)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Steady gossip: count what every agent port sends for a while, once the start-up
    // traffic (every member's join disseminated, every pair's first handshake) has died down.
    let steady_from = started + STEADY_AFTER;
    tokio::time::sleep_until(
        steady_from
            .max(Instant::now() + Duration::from_secs(3))
            .into(),
    )
    .await;
    let ports: Vec<String> = (1..=n)
        .map(|i| cluster.address(i).rsplit(':').next().unwrap().to_string())
        .collect();
    let table = format!("gossipctl_bench_{}", std::process::id());
    let rules: String = ports.iter().map(|p| format!("    ip saddr 127.0.0.1 udp sport {p} ip daddr 127.0.0.1 udp dport {{ {} }} counter\n", ports.join(", "))).collect();
    let counting = nft(&format!(
        "table inet {table} {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n{rules}  }}\n}}\n"
    ));
    let pids: Vec<i32> = (1..=n).map(|i| cluster.agent_pid(i).as_raw()).collect();
    let cpu_before = cpu_seconds(&pids);
    tokio::time::sleep(STEADY_WINDOW).await;
    let cpu = (cpu_seconds(&pids) - cpu_before) / n as f64 / STEADY_WINDOW.as_secs_f64();
    let steady = if counting {
        let bytes = counted_bytes(&table).unwrap_or(0);
        nft_delete(&table);
        Some(bytes as f64 / n as f64 / STEADY_WINDOW.as_secs_f64())
    } else {
        None
    };
    let steady_rows = [
        (
            "steady gossip per node".to_string(),
            steady.map_or("not measured (needs root and nft)".into(), |b| {
                format!("{b:.0} B/s (goal < 500 B/s)")
            }),
        ),
        (
            "agent CPU per node in steady state".to_string(),
            format!("{:.1} ms/s", cpu * 1000.0),
        ),
    ];
    if let Scope::Steady { .. } = scope {
        for client in agents.clients {
            client.close().await;
        }
        rows.extend(steady_rows);
        return Ok(rows);
    }

    // Packet loss: 5% of agent-to-agent UDP dropped; nobody alive may be declared dead.
    let lossy = nft(&format!(
        "table inet {table} {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n    udp sport {{ {ports} }} udp dport {{ {ports} }} numgen random mod 100 < 5 drop\n  }}\n}}\n",
        ports = ports.join(", ")
    ));
    let mut false_deaths = 0;
    if lossy {
        let until = Instant::now() + LOSS_WINDOW;
        while Instant::now() < until {
            for i in 0..n {
                false_deaths += agents
                    .states(i)
                    .await
                    .values()
                    .filter(|s| **s == NodeState::Dead)
                    .count();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        nft_delete(&table);
    }

    // kill -9 the last agents, one after another: each victim is dead everywhere and its
    // replica running elsewhere before the next is killed.
    let mut kills = Vec::new();
    for victim_index in (n + 1 - KILLS..=n).rev() {
        kills.push(kill_and_fail_over(&cluster, &agents, victim_index).await?);
    }
    for client in agents.clients {
        client.close().await;
    }
    let spread = |pick: fn(&Kill) -> Duration| {
        let mut values: Vec<Duration> = kills.iter().map(pick).collect();
        values.sort();
        format!(
            "{} (min {}, max {})",
            secs(values[values.len() / 2]),
            secs(values[0]),
            secs(values[values.len() - 1])
        )
    };
    rows.extend([
        (
            format!("kill -9 until the first agent marks it dead (median of {KILLS})"),
            spread(|k| k.first_dead),
        ),
        (
            format!("kill -9 until every agent marks it dead (median of {KILLS})"),
            format!("{} (goal < 3 s)", spread(|k| k.all_dead)),
        ),
        (
            format!("kill -9 until its replica runs elsewhere (median of {KILLS})"),
            spread(|k| k.replaced),
        ),
        (
            format!(
                "first agent marks it dead until its replica runs elsewhere (median of {KILLS})"
            ),
            format!(
                "{} (goal < 1 s)",
                spread(|k| k.replaced.saturating_sub(k.first_dead))
            ),
        ),
    ]);
    rows.extend(steady_rows);
    rows.extend([(
        format!(
            "live nodes reported dead during {}s of 5% loss",
            LOSS_WINDOW.as_secs()
        ),
        if lossy {
            format!("{false_deaths} (goal 0)")
        } else {
            "not measured (needs root and nft)".into()
        },
    )]);
    Ok(rows)
}

/// Arguments (after `--`): cluster sizes to run instead of 10 and 50; `converge` to stop each
/// size after the full-view measurement; `signing` to run each size to its steady state twice,
/// with agents that seal and check every write and with agents that do neither.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = SIZES.to_vec();
    }
    let runs: Vec<(String, usize, Scope)> = if args.iter().any(|a| a == "signing") {
        sizes
            .iter()
            .flat_map(|&n| {
                [
                    (
                        format!("{n} agents, signed"),
                        n,
                        Scope::Steady { unsigned: false },
                    ),
                    (
                        format!("{n} agents, unsigned"),
                        n,
                        Scope::Steady { unsigned: true },
                    ),
                ]
            })
            .collect()
    } else {
        let scope = if args.iter().any(|a| a == "converge") {
            Scope::Convergence
        } else {
            Scope::Full
        };
        sizes
            .iter()
            .map(|&n| (format!("{n} agents"), n, scope))
            .collect()
    };
    let mut results = Vec::new();
    for (label, n, scope) in &runs {
        eprintln!("{label}:");
        results.push((label.clone(), run_size(*n, *scope).await?));
    }
    println!(
        "| metric | {} |",
        results
            .iter()
            .map(|(label, _)| label.clone())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(results.len()));
    for row in 0..results[0].1.len() {
        let values: Vec<&str> = results.iter().map(|(_, r)| r[row].1.as_str()).collect();
        println!("| {} | {} |", results[0].1[row].0, values.join(" | "));
    }
    Ok(())
}
