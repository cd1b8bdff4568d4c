//! The `process` runtime: one child process per replica.
//!
//! Each replica runs in its own process group so that stopping it reaches everything it forked,
//! and with a parent-death signal so that it dies with the agent even on `kill -9`. The agent
//! also records each group in its store and sweeps leftovers at start-up (see
//! [`crate::runtime::orphans`]): between the three, no replica outlives the agent that owns it.

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use orchestrator::{ProcessSpec, RestartPolicy, WorkloadId};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

use crate::api::LogStream;
use crate::logs::{LineWriter, LogStore};
use crate::runtime::env::replica_env;
use crate::runtime::learner::LearnerLink;
use crate::runtime::probe::Target;
use crate::runtime::supervisor::{Attempt, Exit, Runner, STOP_GRACE};
use crate::store::Store;

/// Everything a replica's process needs to start.
#[derive(Debug, Clone)]
pub struct Launch {
    pub id: WorkloadId,
    pub spec: ProcessSpec,
    pub replicas: u32,
    pub node: String,
    /// The node's addresses and the application's services (see
    /// [`crate::services::Services::env`]).
    pub network: Vec<(String, String)>,
    /// For learner replicas: stdin and stdout carry the link instead of log lines, and the
    /// process runs at lower priority.
    pub learner: Option<Arc<LearnerLink>>,
}

impl Launch {
    /// What the replica finds in its environment besides the agent's: who it is, then the
    /// component's `env`.
    fn env(&self) -> Vec<(String, String)> {
        let own = replica_env(&self.id, self.replicas, &self.node)
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .chain(self.network.iter().cloned());
        let given = self
            .spec
            .env
            .iter()
            .map(|e| (e.name.clone(), e.value.clone()));
        own.chain(given).collect()
    }

    /// Where the replica's probes run: on this node, with the replica's environment.
    fn probe_target(&self) -> Target {
        Target::Host {
            env: self.env(),
            working_dir: self.spec.working_dir.clone(),
        }
    }

    fn command(&self) -> Command {
        let (program, args) = self
            .spec
            .command
            .split_first()
            .expect("validation guarantees a non-empty command");
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(self.env())
            .stdin(if self.learner.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(dir) = &self.spec.working_dir {
            command.current_dir(dir);
        }
        let niceness = if self.learner.is_some() {
            crate::runtime::learner::NICENESS
        } else {
            0
        };
        // SAFETY: the closure runs in the forked child before exec and only makes the
        // async-signal-safe prctl(2) and setpriority(2) calls.
        unsafe {
            command.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
                if niceness != 0
                    && nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, niceness) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command
    }
}

/// Runs a replica as a child process of the agent.
pub struct ProcessRunner {
    pub launch: Launch,
    pub store: Store,
}

impl Runner for ProcessRunner {
    fn restart_policy(&self) -> RestartPolicy {
        self.launch.spec.restart
    }

    async fn run(&mut self, attempt: &mut Attempt<'_>) -> Exit {
        match self.launch.command().spawn() {
            Ok(child) => run(child, &self.launch, &self.store, attempt).await,
            Err(e) => Exit::Failed(format!(
                "cannot start {:?}: {e}",
                self.launch.spec.command[0]
            )),
        }
    }
}

async fn run(mut child: Child, launch: &Launch, store: &Store, attempt: &mut Attempt<'_>) -> Exit {
    let pid = child.id().expect("a just-spawned child has a pid");
    let group = Pid::from_raw(pid as i32);
    if let Err(e) = store.record_process_group(&launch.id, pid) {
        tracing::warn!(workload = %launch.id, "cannot record process group: {e}");
    }
    let stdout = match (&launch.learner, child.stdin.take(), child.stdout.take()) {
        (Some(link), Some(stdin), Some(stdout)) => {
            tokio::spawn(link.clone().attach(stdin, stdout));
            None
        }
        (_, _, stdout) => stdout,
    };
    let logs = attempt.logs();
    let pumps = [
        tokio::spawn(pump(
            stdout,
            logs.clone(),
            attempt.id().to_string(),
            LogStream::Stdout,
        )),
        tokio::spawn(pump(
            child.stderr.take(),
            logs.clone(),
            attempt.id().to_string(),
            LogStream::Stderr,
        )),
    ];
    attempt.note(format!("started, pid {pid}"));
    attempt.running(Some(pid), launch.probe_target());

    let exit = tokio::select! {
        exited = child.wait() => Some(exited),
        _ = attempt.stop_requested() => None,
    };
    let outcome = match exit {
        Some(exited) => {
            // The leader is gone; anything it forked into its group goes with it.
            let _ = killpg(group, Signal::SIGKILL);
            describe_exit(exited)
        }
        None => {
            terminate(&mut child, group).await;
            attempt.note("stopped");
            Exit::Stopped
        }
    };
    let mut last_lines = Vec::new();
    for pump in pumps {
        // A descendant that left the group could hold the pipe open forever; don't wait on it.
        let last = tokio::time::timeout(Duration::from_secs(1), pump).await;
        last_lines.push(last.ok().and_then(Result::ok).flatten());
    }
    // As Kubernetes' FallbackToLogsOnError: a failure says why in the process's own words,
    // its last line on stderr, so `get workloads` shows the cause and not only a status code.
    let outcome = match (outcome, last_lines.pop().flatten()) {
        (Exit::Failed(message), Some(reason)) => Exit::Failed(format!("{message}: {reason}")),
        (outcome, _) => outcome,
    };
    if let Err(e) = store.forget_process_group(&launch.id) {
        tracing::warn!(workload = %launch.id, "cannot clear process group record: {e}");
    }
    outcome
}

fn describe_exit(exited: std::io::Result<ExitStatus>) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match exited {
        Ok(status) if status.success() => Exit::Succeeded,
        Ok(status) => Exit::Failed(match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "exited".to_string(),
        }),
        Err(e) => Exit::Failed(format!("lost track of the process: {e}")),
    }
}

/// SIGTERM to the whole group, then SIGKILL if it has not exited within the grace period.
async fn terminate(child: &mut Child, group: Pid) {
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    }
    // Members that ignored SIGTERM while the leader exited promptly.
    let _ = killpg(group, Signal::SIGKILL);
}

/// Copies a child's output into the log store line by line; returns its last non-empty line.
async fn pump(
    stream: Option<impl AsyncRead + Unpin>,
    logs: LogStore,
    workload: String,
    kind: LogStream,
) -> Option<String> {
    let mut stream = stream?;
    let mut lines = LineWriter::new(logs, workload, kind);
    let mut tail = Tail::default();
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                lines.write(&chunk[..n]);
                tail.push(&chunk[..n]);
            }
        }
    }
    lines.finish();
    tail.last_line()
}

/// The last few kilobytes of a stream, enough to find its last line.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    const KEEP: usize = 4096;
    /// A status message is one line of a table: longer reasons are cut, with an ellipsis.
    const MAX_CHARS: usize = 300;

    fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        if self.0.len() > 2 * Self::KEEP {
            self.0.drain(..self.0.len() - Self::KEEP);
        }
    }

    fn last_line(&self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.0);
        let line = text.lines().map(str::trim).rfind(|l| !l.is_empty())?;
        Some(match line.char_indices().nth(Self::MAX_CHARS) {
            Some((cut, _)) => format!("{}...", &line[..cut]),
            None => line.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::WorkloadState;
    use crate::runtime::probe::Probes;
    use crate::runtime::supervisor::{Status, Supervisor};

    fn launch(command: &[&str], restart: RestartPolicy) -> Launch {
        Launch {
            id: WorkloadId {
                app: "app".into(),
                component: "c".into(),
                replica: 0,
            },
            spec: ProcessSpec {
                command: command.iter().map(|s| s.to_string()).collect(),
                env: vec![],
                working_dir: None,
                restart,
                probes: Default::default(),
            },
            replicas: 1,
            node: "test-node".into(),
            network: vec![],
            learner: None,
        }
    }

    fn start(
        command: &[&str],
        restart: RestartPolicy,
        logs: &LogStore,
        store: &Store,
    ) -> Supervisor {
        start_probed(command, restart, Probes::default(), logs, store)
    }

    fn start_probed(
        command: &[&str],
        restart: RestartPolicy,
        probes: Probes,
        logs: &LogStore,
        store: &Store,
    ) -> Supervisor {
        let launch = launch(command, restart);
        let id = launch.id.clone();
        let runner = ProcessRunner {
            launch,
            store: store.clone(),
        };
        Supervisor::start(&id, runner, probes, logs.clone(), Arc::default())
    }

    /// An exec probe checked every second from the start.
    fn exec_probe(script: &str, failure_threshold: u32) -> orchestrator::Probe {
        orchestrator::Probe {
            action: orchestrator::ProbeAction::Exec {
                command: vec!["sh".into(), "-c".into(), script.into()],
            },
            initial_delay_seconds: 0,
            period_seconds: 1,
            timeout_seconds: 1,
            success_threshold: 1,
            failure_threshold,
        }
    }

    #[tokio::test]
    async fn readiness_follows_the_probe_and_liveness_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let logs = LogStore::new();
        let flag = dir.path().join("ready");
        // Ready once the flag file exists; alive while it has not said "dead".
        let probes = Probes {
            readiness_probe: Some(exec_probe(&format!("test -e {}", flag.display()), 1)),
            liveness_probe: Some(exec_probe(
                &format!("! grep -q dead {} 2>/dev/null", flag.display()),
                2,
            )),
        };
        let mut supervisor = start_probed(
            &["sleep", "300"],
            RestartPolicy::Always,
            probes,
            &logs,
            &store,
        );
        let running = wait_for(&supervisor, |s| s.state == WorkloadState::Running).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let not_ready = supervisor.status();
        assert_eq!(
            not_ready.state,
            WorkloadState::Running,
            "not ready before the flag"
        );
        assert!(
            not_ready
                .message
                .starts_with("not ready: exited with status 1"),
            "{not_ready:?}"
        );

        std::fs::write(&flag, "ok").unwrap();
        let ready = wait_for(&supervisor, |s| s.state == WorkloadState::Ready).await;
        assert_eq!(ready.pid, running.pid);
        assert!(ready.message.is_empty());

        std::fs::write(&flag, "dead").unwrap();
        let restarted = wait_for(&supervisor, |s| s.restarts == 1 && s.pid.is_some()).await;
        assert_ne!(
            restarted.pid, running.pid,
            "the liveness failure replaced the process"
        );
        assert!(
            !alive(running.pid.unwrap() as i32),
            "the old process is gone"
        );
        let lines: Vec<String> = logs
            .snapshot(|_| true, None)
            .into_iter()
            .map(|l| l.text)
            .collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("liveness probe failed (2/2)")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("liveness probe failed: ")
                    && l.ends_with("restarting in 100ms")),
            "{lines:?}"
        );
        supervisor.stop().await;
    }

    #[tokio::test]
    async fn a_liveness_failure_under_never_leaves_the_replica_failed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let logs = LogStore::new();
        let probes = Probes {
            liveness_probe: Some(exec_probe("exit 1", 1)),
            readiness_probe: None,
        };
        let mut supervisor = start_probed(
            &["sleep", "300"],
            RestartPolicy::Never,
            probes,
            &logs,
            &store,
        );
        let failed = wait_for(&supervisor, |s| s.state == WorkloadState::Failed).await;
        assert_eq!(
            failed.message,
            "liveness probe failed: exited with status 1"
        );
        assert_eq!(failed.restarts, 0);
        supervisor.stop().await;
    }

    async fn wait_for(supervisor: &Supervisor, check: impl Fn(&Status) -> bool) -> Status {
        for _ in 0..200 {
            let status = supervisor.status();
            if check(&status) {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("condition not reached: {:?}", supervisor.status());
    }

    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
        })
    }

    #[tokio::test]
    async fn stop_reaches_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let logs = LogStore::new();
        // The shell forks a long sleep and reports its pid, then waits on it.
        let mut supervisor = start(
            &["sh", "-c", "sleep 300 & echo child $!; wait"],
            RestartPolicy::Always,
            &logs,
            &store,
        );
        wait_for(&supervisor, |s| s.state == WorkloadState::Running).await;
        let mut child = None;
        for _ in 0..100 {
            child = logs
                .snapshot(|_| true, None)
                .iter()
                .find_map(|l| l.text.strip_prefix("child ")?.parse::<i32>().ok());
            if child.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let child = child.expect("the shell reported its child");
        assert_eq!(store.process_groups().unwrap().len(), 1);

        supervisor.stop().await;
        assert_eq!(supervisor.status().state, WorkloadState::Stopped);
        // SIGKILL is delivered asynchronously: give the kernel a moment.
        for _ in 0..100 {
            if !alive(child) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(child), "the grandchild outlived the replica");
        assert!(store.process_groups().unwrap().is_empty());
    }

    #[tokio::test]
    async fn restart_policies_decide_what_happens_after_exit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let logs = LogStore::new();
        let always = start(&["false"], RestartPolicy::Always, &logs, &store);
        let on_failure_ok = start(&["true"], RestartPolicy::OnFailure, &logs, &store);
        let never = start(&["false"], RestartPolicy::Never, &logs, &store);
        let missing = start(
            &["/nonexistent/program"],
            RestartPolicy::Never,
            &logs,
            &store,
        );

        wait_for(&always, |s| s.restarts >= 2).await;
        let ok = wait_for(&on_failure_ok, |s| s.state == WorkloadState::Succeeded).await;
        assert_eq!(ok.restarts, 0);
        let failed = wait_for(&never, |s| s.state == WorkloadState::Failed).await;
        assert_eq!(failed.message, "exited with status 1");
        let missing = wait_for(&missing, |s| s.state == WorkloadState::Failed).await;
        assert!(
            missing.message.contains("cannot start"),
            "{}",
            missing.message
        );
        for mut s in [always, on_failure_ok, never] {
            s.stop().await;
        }
    }

    #[tokio::test]
    async fn a_failure_says_why_in_the_process_last_words() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let logs = LogStore::new();
        let script =
            "echo starting; echo first >&2; echo 'no data: install the package' >&2; echo; exit 3";
        let mut failing = start(&["sh", "-c", script], RestartPolicy::Never, &logs, &store);
        let failed = wait_for(&failing, |s| s.state == WorkloadState::Failed).await;
        assert_eq!(
            failed.message,
            "exited with status 3: no data: install the package"
        );
        failing.stop().await;
    }

    #[test]
    fn the_tail_keeps_the_last_line_and_cuts_long_ones() {
        let mut tail = Tail::default();
        assert_eq!(tail.last_line(), None);
        for _ in 0..5000 {
            tail.push(b"noise line\n");
        }
        tail.push(b"the end\n\n");
        assert_eq!(tail.last_line().as_deref(), Some("the end"));
        let mut long = Tail::default();
        long.push("x".repeat(1000).as_bytes());
        let line = long.last_line().unwrap();
        assert_eq!(line.chars().count(), Tail::MAX_CHARS + 3);
        assert!(line.ends_with("..."));
    }
}
