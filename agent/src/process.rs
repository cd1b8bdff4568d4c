//! The `process` runtime: one supervised child process per replica.
//!
//! Each replica runs in its own process group so that stopping it reaches everything it forked,
//! and with a parent-death signal so that it dies with the agent even on `kill -9`. The agent
//! also records each group in its store and sweeps leftovers at start-up (see
//! [`crate::orphans`]): between the three, no replica outlives the agent that owns it.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use orchestrator::{ProcessSpec, RestartPolicy, WorkloadId};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, watch};

use crate::api::{LogStream, WorkloadState};
use crate::learner::LearnerLink;
use crate::logs::{LogStore, MAX_LINE_BYTES};
use crate::store::Store;

/// How long a replica gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A replica that ran this long before exiting restarts without delay growth.
const HEALTHY_RUN: Duration = Duration::from_secs(10);

/// What a replica is doing, as reported by `get workloads`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: WorkloadState,
    pub restarts: u32,
    pub message: String,
    pub pid: Option<u32>,
}

/// Everything a replica's process needs to start.
#[derive(Debug, Clone)]
pub struct Launch {
    pub id: WorkloadId,
    pub spec: ProcessSpec,
    pub replicas: u32,
    pub node: String,
    /// For learner replicas: stdin and stdout carry the link instead of log lines, and the
    /// process runs at lower priority.
    pub learner: Option<Arc<LearnerLink>>,
}

impl Launch {
    fn command(&self) -> Command {
        let (program, args) = self
            .spec
            .command
            .split_first()
            .expect("validation guarantees a non-empty command");
        let mut command = Command::new(program);
        command
            .args(args)
            .env("GOSSIP_APP", &self.id.app)
            .env("GOSSIP_COMPONENT", &self.id.component)
            .env("GOSSIP_REPLICA", self.id.replica.to_string())
            .env("GOSSIP_REPLICAS", self.replicas.to_string())
            .env("GOSSIP_NODE", &self.node)
            .envs(self.spec.env.iter().map(|e| (&e.name, &e.value)))
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
            crate::learner::NICENESS
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

/// A running supervisor; dropping it does not stop the replica, [`Supervisor::stop`] does.
pub struct Supervisor {
    status: Arc<Observed>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Supervisor {
    /// Starts supervising; `changed` is notified whenever the replica's state changes, so the
    /// reconciler can react (a dependency came up) without polling.
    pub fn start(launch: Launch, logs: LogStore, store: Store, changed: Arc<Notify>) -> Self {
        let status = Mutex::new(Status {
            state: WorkloadState::Starting,
            restarts: 0,
            message: String::new(),
            pid: None,
        });
        let (stop, stop_rx) = watch::channel(false);
        let status = Arc::new(Observed { status, changed });
        let task = tokio::spawn(supervise(launch, logs, store, status.clone(), stop_rx));
        Supervisor {
            status,
            stop,
            task: Some(task),
        }
    }

    pub fn status(&self) -> Status {
        self.status.status.lock().expect("status lock").clone()
    }

    /// Asks the replica to stop (SIGTERM, then SIGKILL after [`STOP_GRACE`]); the returned
    /// future completes when it and its process group are gone. Asking twice is harmless.
    pub fn stop(&mut self) -> impl Future<Output = ()> + Send + 'static {
        let _ = self.stop.send(true);
        let task = self.task.take();
        async move {
            if let Some(task) = task {
                let _ = task.await;
            }
        }
    }
}

/// A replica's status and whom to tell when it changes.
struct Observed {
    status: Mutex<Status>,
    changed: Arc<Notify>,
}

fn set(observed: &Observed, update: impl FnOnce(&mut Status)) {
    let mut status = observed.status.lock().expect("status lock");
    let before = status.state;
    update(&mut status);
    if status.state != before {
        observed.changed.notify_one();
    }
}

async fn supervise(
    launch: Launch,
    logs: LogStore,
    store: Store,
    status: Arc<Observed>,
    mut stop: watch::Receiver<bool>,
) {
    let id = launch.id.to_string();
    let note = |text: String| logs.append(&id, LogStream::Agent, &text);
    let mut backoff = FIRST_BACKOFF;
    loop {
        set(&status, |s| s.state = WorkloadState::Starting);
        let started = Instant::now();
        let outcome = match launch.command().spawn() {
            Ok(child) => run(child, &launch, &logs, &store, &status, &mut stop, &note).await,
            Err(e) => {
                let message = format!("cannot start {:?}: {e}", launch.spec.command[0]);
                note(message.clone());
                Exit::Failed(message)
            }
        };
        let (failed, message) = match outcome {
            Exit::Stopped => {
                set(&status, |s| {
                    s.state = WorkloadState::Stopped;
                    s.pid = None;
                });
                return;
            }
            Exit::Succeeded => (false, "exited with status 0".to_string()),
            Exit::Failed(message) => (true, message),
        };
        let restart = match launch.spec.restart {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Never => false,
        };
        if !restart {
            set(&status, |s| {
                s.state = if failed {
                    WorkloadState::Failed
                } else {
                    WorkloadState::Succeeded
                };
                s.message = message;
                s.pid = None;
            });
            let _ = stop.wait_for(|stopped| *stopped).await;
            set(&status, |s| s.state = WorkloadState::Stopped);
            return;
        }
        if started.elapsed() >= HEALTHY_RUN {
            backoff = FIRST_BACKOFF;
        }
        note(format!("{message}; restarting in {backoff:?}"));
        set(&status, |s| {
            s.state = WorkloadState::Pending;
            s.message = format!("{message}; restarting");
            s.pid = None;
        });
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|stopped| *stopped) => {
                set(&status, |s| s.state = WorkloadState::Stopped);
                return;
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        set(&status, |s| s.restarts += 1);
    }
}

enum Exit {
    Stopped,
    Succeeded,
    Failed(String),
}

async fn run(
    mut child: Child,
    launch: &Launch,
    logs: &LogStore,
    store: &Store,
    status: &Observed,
    stop: &mut watch::Receiver<bool>,
    note: &impl Fn(String),
) -> Exit {
    let pid = child.id().expect("a just-spawned child has a pid");
    let group = Pid::from_raw(pid as i32);
    let id = launch.id.to_string();
    if let Err(e) = store.record_process_group(&launch.id, pid) {
        tracing::warn!(workload = %id, "cannot record process group: {e}");
    }
    let stdout = match (&launch.learner, child.stdin.take(), child.stdout.take()) {
        (Some(link), Some(stdin), Some(stdout)) => {
            tokio::spawn(link.clone().attach(stdin, stdout));
            None
        }
        (_, _, stdout) => stdout,
    };
    let pumps = [
        tokio::spawn(pump(stdout, logs.clone(), id.clone(), LogStream::Stdout)),
        tokio::spawn(pump(
            child.stderr.take(),
            logs.clone(),
            id.clone(),
            LogStream::Stderr,
        )),
    ];
    note(format!("started, pid {pid}"));
    set(status, |s| {
        s.state = WorkloadState::Running;
        s.pid = Some(pid);
        s.message.clear();
    });

    let exit = tokio::select! {
        exited = child.wait() => Some(exited),
        _ = stop.wait_for(|stopped| *stopped) => None,
    };
    let outcome = match exit {
        Some(exited) => {
            // The leader is gone; anything it forked into its group goes with it.
            let _ = killpg(group, Signal::SIGKILL);
            describe_exit(exited)
        }
        None => {
            terminate(&mut child, group).await;
            note("stopped".to_string());
            Exit::Stopped
        }
    };
    for pump in pumps {
        // A descendant that left the group could hold the pipe open forever; don't wait on it.
        let _ = tokio::time::timeout(Duration::from_secs(1), pump).await;
    }
    if let Exit::Failed(message) = &outcome {
        note(message.clone());
    }
    if let Err(e) = store.forget_process_group(&launch.id) {
        tracing::warn!(workload = %id, "cannot clear process group record: {e}");
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

/// Copies a child's output into the log store line by line, cutting overlong lines so a
/// stream without newlines cannot grow memory without bound.
async fn pump(
    stream: Option<impl AsyncRead + Unpin>,
    logs: LogStore,
    workload: String,
    kind: LogStream,
) {
    let Some(mut stream) = stream else { return };
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            logs.append(&workload, kind, &String::from_utf8_lossy(&pending[..end]));
            pending.drain(..=end);
        }
        if pending.len() > MAX_LINE_BYTES {
            logs.append(&workload, kind, &String::from_utf8_lossy(&pending));
            pending.clear();
        }
    }
    if !pending.is_empty() {
        logs.append(&workload, kind, &String::from_utf8_lossy(&pending));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            },
            replicas: 1,
            node: "test-node".into(),
            learner: None,
        }
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
        let mut supervisor = Supervisor::start(
            launch(
                &["sh", "-c", "sleep 300 & echo child $!; wait"],
                RestartPolicy::Always,
            ),
            logs.clone(),
            store.clone(),
            Arc::default(),
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
        let always = Supervisor::start(
            launch(&["false"], RestartPolicy::Always),
            logs.clone(),
            store.clone(),
            Arc::default(),
        );
        let on_failure_ok = Supervisor::start(
            launch(&["true"], RestartPolicy::OnFailure),
            logs.clone(),
            store.clone(),
            Arc::default(),
        );
        let never = Supervisor::start(
            launch(&["false"], RestartPolicy::Never),
            logs.clone(),
            store.clone(),
            Arc::default(),
        );
        let missing = Supervisor::start(
            launch(&["/nonexistent/program"], RestartPolicy::Never),
            logs.clone(),
            store,
            Arc::default(),
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
}
