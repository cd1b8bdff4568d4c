//! `gossipctl up` and `down`: a development cluster of real agents on loopback.
//!
//! Layout of the cluster directory: the CA, admin credentials and `config.yaml` at the top, and
//! one folder per agent, `node-K/`, holding `certs/`, `data/`, `address`, `gossipd.pid` and
//! `gossipd.log`. Running `up` again restarts agents that are not running and keeps their data
//! and addresses.

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::api::{NodeState, Request, Response};
use agent::client::Client;
use agent::cluster::identity::Credentials;
use anyhow::{Context, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cluster;
use crate::config::{CONFIG_FILE, Config};
use crate::progress;

const ZONES: [&str; 3] = ["a", "b", "c"];
/// How many agents every other agent joins through.
const SEEDS: usize = 3;
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// An agent that is up answers a ping on loopback in milliseconds, but fifty agents starting
/// together on two cores keep each other busy with handshakes for a second or two.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

fn node_dir(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("node-{index}"))
}

pub async fn up(dir: &Path, nodes: usize) -> anyhow::Result<()> {
    if nodes == 0 {
        return Err(crate::failure::invalid("--nodes must be at least 1"));
    }
    if !cluster::is_initialized(dir) {
        cluster::init(dir, "local", Vec::new())?;
    }
    let gossipd = gossipd_binary()?;
    let addresses: Vec<SocketAddr> = (1..=nodes)
        .map(|index| remembered_or_free_address(&node_dir(dir, index)))
        .collect::<anyhow::Result<_>>()?;
    let names: Vec<String> = (1..=nodes).map(|index| format!("node-{index}")).collect();
    // Certificates first, so the agents start close together and find each other at once.
    for name in &names {
        if !cluster::node_certs_dir(dir, name).exists() {
            cluster::add_node(dir, name, agent::cluster::identity::DEFAULT_VALIDITY)?;
        }
    }
    let mut started = 0;
    let mut fresh = BTreeSet::new();
    for ((index, name), &address) in (1..=nodes).zip(&names).zip(&addresses) {
        let home = node_dir(dir, index);
        if running_pid(&home).is_some() {
            continue;
        }
        let agent = Agent {
            name,
            home: &home,
            address,
            certs: &cluster::node_certs_dir(dir, name),
            zone: ZONES[(index - 1) % ZONES.len()],
            // The first agents are the seeds; each agent keeps asking them until one answers,
            // so agents can start in any order. Gossip spreads everything else.
            seeds: addresses
                .iter()
                .take(SEEDS + 1)
                .filter(|a| **a != address)
                .take(SEEDS)
                .copied()
                .collect(),
        };
        agent.spawn(&gossipd)?;
        started += 1;
        fresh.insert(name.clone());
    }
    let config_path = dir.join(CONFIG_FILE);
    let mut config = Config::load(&config_path)?;
    config.agents = addresses.clone();
    config.save(&config_path)?;

    let creds = config.credentials(&config_path)?;
    let bar = progress::bar(nodes as u64, "waiting for the agents to form a cluster");
    match wait_for_cluster(&addresses, &names, &fresh, &creds, &bar).await {
        Ok(()) => {}
        Err(Missing::Revoked(missing)) => {
            bar.abandon();
            bail!(
                "{name}'s certificate is revoked, so it cannot join; the other agents are up. \
                 To bring it back: gossipctl cluster add-node {name} --dir {dir}, stop its agent \
                 (kill $(cat {pid})), and run up again",
                name = names[missing],
                dir = dir.display(),
                pid = node_dir(dir, missing + 1).join("gossipd.pid").display()
            );
        }
        Err(Missing::Late(missing)) => {
            bar.abandon();
            bail!(
                "{} at {} did not join the cluster within {START_TIMEOUT:?}; see {}",
                names[missing],
                addresses[missing],
                node_dir(dir, missing + 1).join("gossipd.log").display()
            );
        }
    }
    bar.finish_and_clear();
    let config_display = std::path::absolute(&config_path).unwrap_or(config_path);
    println!(
        "{nodes} agents up ({started} started, {} already running) in {}",
        nodes - started,
        dir.display()
    );
    println!(
        "point the CLI at it with:\n  export GOSSIPCTL_CONFIG={}",
        config_display.display()
    );
    Ok(())
}

/// Why [`wait_for_cluster`] gave up, with the position of the agent concerned.
enum Missing {
    /// Its certificate is revoked: it will never join.
    Revoked(usize),
    /// It had not joined by the deadline.
    Late(usize),
}

/// Waits until one agent sees every named agent alive (giving up at once on one that was
/// already running and is revoked), and says which agent is missing if that takes longer than
/// [`START_TIMEOUT`]. Membership is itself proof that an agent answers (members probe each
/// other over mutual TLS, and an agent serves before it joins), and asking one agent spares
/// fifty starting agents fifty more handshakes.
async fn wait_for_cluster(
    addresses: &[SocketAddr],
    names: &[String],
    fresh: &BTreeSet<String>,
    creds: &Credentials,
    bar: &indicatif::ProgressBar,
) -> Result<(), Missing> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut client = None;
    let mut missing = 0;
    while Instant::now() < deadline {
        let Some(agent) = &client else {
            client = Client::connect_within(addresses, creds, PING_TIMEOUT)
                .await
                .ok();
            continue;
        };
        match agent.request(&Request::GetNodes).await {
            Ok(Response::Nodes { nodes }) => {
                // An agent started just now runs the certificate in its directory, perhaps a new
                // one issued after a revocation that the others still list until it joins.
                if let Some(revoked) = names.iter().position(|name| {
                    !fresh.contains(name)
                        && nodes
                            .iter()
                            .any(|n| &n.name == name && n.state == NodeState::Revoked)
                }) {
                    return Err(Missing::Revoked(revoked));
                }
                let alive: BTreeSet<&str> = nodes
                    .iter()
                    .filter(|n| n.state == NodeState::Alive)
                    .map(|n| n.name.as_str())
                    .collect();
                let present = names.iter().filter(|n| alive.contains(n.as_str())).count();
                bar.set_position(present as u64);
                match names.iter().position(|n| !alive.contains(n.as_str())) {
                    None => return Ok(()),
                    Some(first) => missing = first,
                }
            }
            // The agent went away: ask another.
            _ => client = None,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(Missing::Late(missing))
}

pub fn down(dir: &Path) -> anyhow::Result<()> {
    let mut homes: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("gossipd.pid").exists())
        .collect();
    homes.sort();
    // Signal every agent first and then wait, so agents leave in parallel.
    let running: Vec<Pid> = homes.iter().filter_map(|home| running_pid(home)).collect();
    for &pid in &running {
        let _ = kill(pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while running.iter().any(|&pid| is_alive(pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &pid in running.iter().filter(|&&pid| is_alive(pid)) {
        let _ = kill(pid, Signal::SIGKILL);
    }
    for home in &homes {
        let _ = std::fs::remove_file(home.join("gossipd.pid"));
    }
    let stopped = running.len();
    println!("{stopped} agents stopped");
    Ok(())
}

/// `gossipd` beside this executable (how both are built and installed), else on `PATH`.
fn gossipd_binary() -> anyhow::Result<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("gossipd")));
    match beside {
        Some(path) if path.exists() => Ok(path),
        _ => Ok(PathBuf::from("gossipd")),
    }
}

/// The address this agent had before, so a restarted cluster keeps its config valid.
fn remembered_or_free_address(home: &Path) -> anyhow::Result<SocketAddr> {
    let file = home.join("address");
    if let Ok(text) = std::fs::read_to_string(&file)
        && let Ok(address) = text.trim().parse()
    {
        return Ok(address);
    }
    // Let the kernel pick a free UDP port, then hand it to the agent.
    let address = UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    std::fs::create_dir_all(home)?;
    std::fs::write(&file, address.to_string())?;
    Ok(address)
}

/// The loopback addresses of the local agent listening at `address`, derived from its port (so
/// unique among the agents of every local cluster on the machine, and kept across restarts):
/// node IP `127.1.HI.LO` and service network `127.HI.LO.0/24`, where `HI.LO` is the port. Linux
/// routes all of 127.0.0.0/8 to the loopback interface, so nothing needs configuring; ports
/// below 256 (never picked by the kernel) get none.
pub fn local_addresses(address: SocketAddr) -> Option<(std::net::Ipv4Addr, String)> {
    let [hi, lo] = address.port().to_be_bytes();
    (hi > 0).then(|| {
        (
            std::net::Ipv4Addr::new(127, 1, hi, lo),
            format!("127.{hi}.{lo}.0/24"),
        )
    })
}

/// One local agent to start.
struct Agent<'a> {
    name: &'a str,
    home: &'a Path,
    address: SocketAddr,
    certs: &'a Path,
    zone: &'a str,
    seeds: Vec<SocketAddr>,
}

impl Agent<'_> {
    fn spawn(&self, gossipd: &Path) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.join("gossipd.log"))?;
        let mut command = Command::new(gossipd);
        command
            .arg("--name")
            .arg(self.name)
            .arg("--data-dir")
            .arg(self.home.join("data"))
            .arg("--listen")
            .arg(self.address.to_string())
            .arg("--certs")
            .arg(self.certs)
            .arg("--label")
            .arg(format!("zone={}", self.zone));
        // Local agents share one machine: each gets loopback addresses of its own for its
        // replicas, node ports, services and names (see [`local_addresses`]).
        if let Some((node_ip, service_cidr)) = local_addresses(self.address) {
            command
                .arg("--node-ip")
                .arg(node_ip.to_string())
                .arg("--service-cidr")
                .arg(service_cidr);
        }
        for seed in &self.seeds {
            command.arg("--join").arg(seed.to_string());
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C in the terminal that ran `up` does not reach it.
            .process_group(0)
            .spawn()
            .map_err(|e| anyhow!("cannot start {}: {e}", gossipd.display()))?;
        std::fs::write(self.home.join("gossipd.pid"), child.id().to_string())?;
        Ok(())
    }
}

/// The recorded agent pid, if that process is still a running gossipd.
fn running_pid(home: &Path) -> Option<Pid> {
    let pid: i32 = std::fs::read_to_string(home.join("gossipd.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let is_gossipd = cmdline
        .split(|&b| b == 0)
        .next()
        .is_some_and(|argv0| argv0.ends_with(b"gossipd"));
    let pid = Pid::from_raw(pid);
    (is_gossipd && is_alive(pid)).then_some(pid)
}

fn is_alive(pid: Pid) -> bool {
    // A zombie still answers kill(0); its state in /proc tells it apart.
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    let zombie = state
        .as_deref()
        .and_then(|s| s.rsplit_once(')'))
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    kill(pid, None).is_ok() && !zombie
}
