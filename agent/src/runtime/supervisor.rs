//! Supervising one replica, whatever runs it: the restart policy, the backoff between
//! attempts and the status `get workloads` reports.
//!
//! A runtime says how to run a replica once ([`Runner::run`]: start it, wait for it to exit or
//! for a stop request) and how to clean up after the last attempt; everything about *when* to
//! run it again lives here, so processes, learners and containers restart by the same rules.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchestrator::{RestartPolicy, WorkloadId};
use tokio::sync::{Notify, watch};

use crate::api::{LogStream, WorkloadState};
use crate::logs::{LogStore, now_ms};
use crate::runtime::probe::{self, Probes, Target};

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
    /// Wall-clock milliseconds since the Unix epoch when `state` last changed.
    pub since_ms: u64,
    /// Why the last run ended, once the replica was restarted.
    pub last_exit: String,
    /// Where it serves, when it has an address of its own (a container on a bridge network).
    pub address: Option<std::net::IpAddr>,
}

/// How one attempt at running a replica ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// A stop was requested and the replica is gone.
    Stopped,
    Succeeded,
    Failed(String),
}

/// How a runtime runs a replica.
pub trait Runner: Send + 'static {
    fn restart_policy(&self) -> RestartPolicy;

    /// Starts the replica, calls [`Attempt::running`] once it runs, and returns when it exits
    /// or, after [`Attempt::stop_requested`] fires, once it has been stopped.
    fn run(&mut self, attempt: &mut Attempt<'_>) -> impl Future<Output = Exit> + Send;

    /// Called once supervision ends, after the last attempt, to release what the runtime
    /// keeps between attempts.
    fn release(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// What a runner sees of its supervisor during one attempt.
pub struct Attempt<'a> {
    id: &'a str,
    logs: &'a LogStore,
    observed: &'a Arc<Observed>,
    stop: &'a mut watch::Receiver<bool>,
    probes: &'a Probes,
    /// This attempt's number: probes of an earlier attempt change nothing.
    number: u64,
    /// Set, with the reason, when the liveness probe failed: the replica is to be restarted.
    restart: watch::Sender<Option<String>>,
    probing: Option<tokio::task::JoinHandle<()>>,
}

impl Attempt<'_> {
    /// The replica's `APP/COMPONENT/REPLICA`.
    pub fn id(&self) -> &str {
        self.id
    }

    pub fn logs(&self) -> &LogStore {
        self.logs
    }

    /// A line from the agent about the replica, in the replica's log.
    pub fn note(&self, text: impl AsRef<str>) {
        self.logs.append(self.id, LogStream::Agent, text.as_ref());
    }

    /// The replica runs (as `pid`, where it has one); its probes, if it has any, start now
    /// against `target`.
    pub fn running(&mut self, pid: Option<u32>, target: Target) {
        let address = match &target {
            Target::Container { address, .. } => *address,
            Target::Host { .. } => None,
        };
        set(self.observed, |s| {
            s.state = WorkloadState::Running;
            s.pid = pid;
            s.address = address;
            s.message.clear();
        });
        if self.probes.is_empty() || self.probing.is_some() {
            return;
        }
        let report = ProbeReport {
            id: self.id.to_string(),
            logs: self.logs.clone(),
            observed: Arc::clone(self.observed),
            attempt: self.number,
        };
        let probes = self.probes.clone();
        let restart = self.restart.clone();
        let started = tokio::time::Instant::now();
        self.probing = Some(tokio::spawn(async move {
            let why = probe::watch(probes, target, started, report).await;
            let _ = restart.send(Some(why));
        }));
    }

    /// Completes once the replica is asked to stop, or its liveness probe failed.
    pub async fn stop_requested(&mut self) {
        let mut restart = self.restart.subscribe();
        tokio::select! {
            _ = self.stop.wait_for(|stopped| *stopped) => {}
            _ = restart.wait_for(Option::is_some) => {}
        }
    }

    /// Ends the attempt: its probes stop and can change nothing any more. Returns why the
    /// liveness probe failed, if that ended it.
    fn finish(self) -> Option<String> {
        if let Some(task) = &self.probing {
            task.abort();
        }
        {
            let _status = self.observed.status.lock().expect("status lock");
            self.observed.attempt.fetch_add(1, Ordering::SeqCst);
        }
        self.restart.borrow().clone()
    }
}

/// Readiness verdicts and notes of one attempt's probes.
struct ProbeReport {
    id: String,
    logs: LogStore,
    observed: Arc<Observed>,
    attempt: u64,
}

impl probe::Report for ProbeReport {
    fn readiness(&self, ready: bool, why: &str) {
        let mut status = self.observed.status.lock().expect("status lock");
        // A later attempt, or a replica that stopped running, is not this probe's to judge.
        if self.observed.attempt.load(Ordering::SeqCst) != self.attempt
            || !matches!(status.state, WorkloadState::Running | WorkloadState::Ready)
        {
            return;
        }
        let before = status.state;
        if ready {
            status.state = WorkloadState::Ready;
            status.message.clear();
        } else {
            status.state = WorkloadState::Running;
            status.message = format!("not ready: {why}");
        }
        if status.state != before {
            status.since_ms = now_ms();
            self.observed.changed.notify_one();
        }
    }

    fn note(&self, text: &str) {
        self.logs.append(&self.id, LogStream::Agent, text);
    }

    fn checked(&self, kind: probe::Kind, passed: bool) {
        self.observed.checks[kind as usize][usize::from(!passed)].fetch_add(1, Ordering::Relaxed);
    }
}

/// A running supervisor; dropping it does not stop the replica, [`Supervisor::stop`] does.
pub struct Supervisor {
    observed: Arc<Observed>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Supervisor {
    /// Starts supervising; `changed` is notified whenever the replica's state changes, so the
    /// reconciler can react (a dependency came up) without polling.
    pub fn start(
        id: &WorkloadId,
        runner: impl Runner,
        probes: Probes,
        logs: LogStore,
        changed: Arc<Notify>,
    ) -> Self {
        let status = Mutex::new(Status {
            state: WorkloadState::Starting,
            restarts: 0,
            message: String::new(),
            pid: None,
            since_ms: now_ms(),
            last_exit: String::new(),
            address: None,
        });
        let (stop, stop_rx) = watch::channel(false);
        let observed = Arc::new(Observed {
            status,
            checks: Default::default(),
            attempt: AtomicU64::new(0),
            changed,
        });
        let task = tokio::spawn(supervise(
            id.to_string(),
            runner,
            probes,
            logs,
            observed.clone(),
            stop_rx,
        ));
        Supervisor {
            observed,
            stop,
            task: Some(task),
        }
    }

    pub fn status(&self) -> Status {
        self.observed.status.lock().expect("status lock").clone()
    }

    /// Probe checks run so far, `[kind][passed, failed]` (see [`probe::Kind`]).
    pub fn probe_checks(&self) -> [[u64; 2]; 2] {
        self.observed
            .checks
            .each_ref()
            .map(|results| results.each_ref().map(|n| n.load(Ordering::Relaxed)))
    }

    /// Asks the replica to stop (for a process: SIGTERM, then SIGKILL after [`STOP_GRACE`]);
    /// the returned future completes when it is gone. Asking twice is harmless.
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
    /// Probe checks run, `[kind][passed, failed]`, for the metrics.
    checks: [[AtomicU64; 2]; 2],
    /// The current attempt's number, changed under the status lock.
    attempt: AtomicU64,
    changed: Arc<Notify>,
}

fn set(observed: &Observed, update: impl FnOnce(&mut Status)) {
    let mut status = observed.status.lock().expect("status lock");
    let before = status.state;
    update(&mut status);
    if status.state != before {
        status.since_ms = now_ms();
        observed.changed.notify_one();
    }
}

async fn supervise(
    id: String,
    mut runner: impl Runner,
    probes: Probes,
    logs: LogStore,
    observed: Arc<Observed>,
    mut stop: watch::Receiver<bool>,
) {
    let note = |text: &str| logs.append(&id, LogStream::Agent, text);
    let mut backoff = FIRST_BACKOFF;
    loop {
        set(&observed, |s| s.state = WorkloadState::Starting);
        let started = Instant::now();
        let mut attempt = Attempt {
            id: &id,
            logs: &logs,
            observed: &observed,
            stop: &mut stop,
            probes: &probes,
            number: observed.attempt.load(Ordering::SeqCst),
            restart: watch::channel(None).0,
            probing: None,
        };
        let exit = runner.run(&mut attempt).await;
        let exit = match (exit, attempt.finish()) {
            // Stopped because the liveness probe failed, not because it was asked to.
            (Exit::Stopped, Some(why)) if !*stop.borrow() => {
                tracing::warn!(workload = %id, "liveness probe failed: {why}");
                Exit::Failed(format!("liveness probe failed: {why}"))
            }
            (exit, _) => exit,
        };
        let (failed, message) = match exit {
            Exit::Stopped => break,
            Exit::Succeeded => (false, "exited with status 0".to_string()),
            Exit::Failed(message) => {
                note(&message);
                (true, message)
            }
        };
        let restart = match runner.restart_policy() {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => failed,
            RestartPolicy::Never => false,
        };
        if !restart {
            set(&observed, |s| {
                s.state = if failed {
                    WorkloadState::Failed
                } else {
                    WorkloadState::Succeeded
                };
                s.message = message;
                s.pid = None;
            });
            let _ = stop.wait_for(|stopped| *stopped).await;
            break;
        }
        if started.elapsed() >= HEALTHY_RUN {
            backoff = FIRST_BACKOFF;
        }
        note(&format!("{message}; restarting in {backoff:?}"));
        set(&observed, |s| {
            s.state = WorkloadState::Pending;
            s.last_exit.clone_from(&message);
            s.message = format!("{message}; restarting");
            s.pid = None;
        });
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        set(&observed, |s| s.restarts += 1);
    }
    runner.release().await;
    set(&observed, |s| {
        s.state = WorkloadState::Stopped;
        s.pid = None;
    });
}
