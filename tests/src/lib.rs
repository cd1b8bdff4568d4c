//! Harness for end-to-end tests: real `gossipd` agents started by the real `gossipctl up`, in
//! a temporary directory, driven through the real CLI.

pub mod burst;
pub mod docker;
pub mod service;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A binary of this workspace, built beside the test executable by `cargo test --workspace`.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` so the binaries are built",
        path.display()
    );
    path
}

/// The result of one CLI invocation.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// A local cluster in a temporary directory; `down` runs when it is dropped.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: usize,
    /// Environment for `gossipctl up`, which its agents inherit.
    pub env: Vec<(String, String)>,
}

impl Cluster {
    pub fn up(nodes: usize) -> Self {
        Self::up_with_env(nodes, &[])
    }

    /// [`Cluster::up`] with agents started in an environment that has `env` added.
    pub fn up_with_env(nodes: usize, env: &[(&str, &str)]) -> Self {
        let cluster = Cluster {
            dir: temp_dir(),
            nodes,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        cluster.up_again();
        cluster
    }

    /// [`Cluster::up`], then waits until every agent sees every other alive.
    pub fn up_joined(nodes: usize) -> Self {
        Self::up_joined_with_env(nodes, &[])
    }

    /// [`Cluster::up_with_env`], then waits until every agent sees every other alive.
    pub fn up_joined_with_env(nodes: usize, env: &[(&str, &str)]) -> Self {
        let cluster = Self::up_with_env(nodes, env);
        wait_for(
            "the agents to see each other",
            Duration::from_secs(20),
            || cluster.all_see_all_alive(),
        );
        cluster
    }

    /// `gossipctl up` on the same directory: restarts agents that are not running.
    pub fn up_again(&self) {
        let args = [
            "up",
            "--nodes",
            &self.nodes.to_string(),
            "--dir",
            self.path(),
        ];
        Command::new(binary("gossipctl"))
            .args(args)
            .env("GOSSIPCTL_CONFIG", self.config())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .map(Run::from)
            .expect("run gossipctl up")
            .ok();
    }

    pub fn path(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 temp path")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// Runs `gossipctl ARGS` against this cluster.
    pub fn ctl(&self, args: &[&str]) -> Run {
        gossipctl(args, &self.config())
    }

    /// Writes a file into the cluster directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write test file");
        path.to_str().expect("utf-8 path").to_string()
    }

    pub fn agent_pid(&self, index: usize) -> Pid {
        let text = std::fs::read_to_string(
            self.dir
                .path()
                .join(format!("node-{index}"))
                .join("gossipd.pid"),
        )
        .expect("agent pid file");
        Pid::from_raw(text.trim().parse().expect("pid"))
    }

    /// `kill -9` an agent and wait until it is gone.
    pub fn kill_agent(&self, index: usize) {
        let pid = self.agent_pid(index);
        kill(pid, Signal::SIGKILL).expect("kill agent");
        wait_for("agent to die", Duration::from_secs(10), || {
            !is_running(pid.as_raw() as u32)
        });
    }

    /// The API (and gossip) address of agent `index`.
    pub fn address(&self, index: usize) -> String {
        std::fs::read_to_string(
            self.dir
                .path()
                .join(format!("node-{index}"))
                .join("address"),
        )
        .expect("agent address file")
        .trim()
        .to_string()
    }

    /// Runs `gossipctl ARGS` against agent `index` alone, to see the cluster through its eyes.
    pub fn ctl_at(&self, index: usize, args: &[&str]) -> Run {
        let config = self.dir.path().join(format!("config-node-{index}.yaml"));
        if !config.exists() {
            let text = std::fs::read_to_string(self.config()).expect("cluster config");
            let mut yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("config YAML");
            yaml["agents"] = serde_yaml::Value::Sequence(vec![self.address(index).into()]);
            std::fs::write(&config, serde_yaml::to_string(&yaml).expect("config YAML"))
                .expect("write config");
        }
        gossipctl(args, &config)
    }

    /// `get nodes -o json` as seen by agent `index`: name -> state.
    pub fn node_states(&self, index: usize) -> BTreeMap<String, String> {
        let run = self.ctl_at(index, &["get", "nodes", "-o", "json"]);
        if run.code != 0 {
            return Default::default();
        }
        run.json()
            .as_array()
            .expect("nodes array")
            .iter()
            .map(|n| {
                (
                    n["name"].as_str().unwrap_or_default().to_string(),
                    n["state"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Whether every agent sees every agent (itself included) alive.
    pub fn all_see_all_alive(&self) -> bool {
        (1..=self.nodes).all(|i| {
            let states = self.node_states(i);
            states.len() == self.nodes && states.values().all(|s| s == "alive")
        })
    }

    /// Whether agent `index` sees each named node in the given state.
    pub fn sees(&self, index: usize, expected: &[(&str, &str)]) -> bool {
        let states = self.node_states(index);
        expected
            .iter()
            .all(|(node, state)| states.get(*node).map(String::as_str) == Some(*state))
    }

    /// `(id -> node)` of running replicas of `app` as agent `index` sees them, or `None`
    /// while any is not running or listed twice.
    pub fn running(&self, index: usize, app: &str) -> Option<BTreeMap<String, String>> {
        let run = self.ctl_at(index, &["get", "workloads", "-o", "json"]);
        if run.code != 0 {
            return None;
        }
        let mut placement = BTreeMap::new();
        for w in run.json().as_array()?.iter().filter(|w| w["app"] == app) {
            if w["state"] != "running" {
                return None;
            }
            let id = w["id"].as_str()?.to_string();
            if placement
                .insert(id, w["node"].as_str()?.to_string())
                .is_some()
            {
                return None;
            }
        }
        Some(placement)
    }

    pub fn workloads(&self) -> Vec<serde_json::Value> {
        let json = self.ctl(&["get", "workloads", "-o", "json"]).ok().json();
        json.as_array().expect("workloads array").clone()
    }

    /// `get workloads -o json` as seen by agent `index`; empty while it does not answer.
    pub fn workloads_at(&self, index: usize) -> Vec<serde_json::Value> {
        let run = self.ctl_at(index, &["get", "workloads", "-o", "json"]);
        if run.code != 0 {
            return Vec::new();
        }
        run.json().as_array().expect("workloads array").clone()
    }

    /// Every "member is down" verdict in the agents' logs, as `(observer, log line)`: a member
    /// some agent's failure detector gave up on, live or not, or one that left.
    pub fn declared_down(&self) -> Vec<(usize, String)> {
        (1..=self.nodes)
            .flat_map(|i| {
                let log = self
                    .dir
                    .path()
                    .join(format!("node-{i}"))
                    .join("gossipd.log");
                std::fs::read_to_string(log)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("member is down"))
                    .map(|l| (i, l.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn apps(&self) -> serde_json::Value {
        self.ctl(&["get", "apps", "-o", "json"]).ok().json()
    }
}

impl Drop for Cluster {
    /// Stops the agents. With `E2E_KEEP_DIR` set, the directory (agents' logs and data) stays
    /// behind for a look, and its path is printed.
    fn drop(&mut self) {
        let _ = gossipctl(&["down", "--dir", self.path()], &self.config());
        if std::env::var_os("E2E_KEEP_DIR").is_some() {
            let dir = std::mem::replace(&mut self.dir, temp_dir());
            eprintln!("kept {}", dir.keep().display());
        }
    }
}

/// A fresh directory for a cluster's credentials, config and agents.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("gossipctl-e2e-")
        .tempdir()
        .expect("temporary directory")
}

pub fn gossipctl(args: &[&str], config: &Path) -> Run {
    Command::new(binary("gossipctl"))
        .args(args)
        .env("GOSSIPCTL_CONFIG", config)
        .output()
        .expect("run gossipctl")
        .into()
}

/// Polls `condition` until it holds, panicking with `what` after `timeout`.
#[track_caller]
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Live processes whose environment holds `entry` (e.g. a test's unique marker variable),
/// as `(pid, process group)`.
pub fn processes_with_env(entry: &str) -> Vec<(u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == entry.as_bytes()))
        })
        .filter(|&pid| is_running(pid))
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let group = rest.split_whitespace().nth(2)?.parse().ok()?;
            Some((pid, group))
        })
        .collect()
}

/// Distinct process groups (one per replica) carrying `entry` in their environment.
pub fn replica_groups(entry: &str) -> BTreeSet<u32> {
    processes_with_env(entry)
        .into_iter()
        .map(|(_, g)| g)
        .collect()
}

/// A marker unique to one test run, to tell its processes apart from any other test's.
pub fn unique_marker() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "E2E_MARKER={}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// CPU time (user + system) process `pid` has used so far, with that of the children it has
/// reaped when `children`; zero once it is gone.
pub fn cpu_time(pid: i32, children: bool) -> Duration {
    // The kernel reports in clock ticks; Linux fixes them at 100 a second for user space.
    const TICKS_PER_SECOND: u64 = 100;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    // After the command: state is field 3; utime, stime, cutime, cstime are 14 to 17 (proc(5)).
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(if children { 4 } else { 2 })
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    Duration::from_millis(fields.iter().sum::<u64>() * 1000 / TICKS_PER_SECOND)
}
