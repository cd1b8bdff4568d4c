//! Supervising one replica, whatever runs it: the restart policy, the backoff between
//! attempts and the status `get workloads` reports.
//!
//! A runtime says how to run a replica once ([`Runner::run`]: start it, wait for it to exit or
//! for a stop request) and how to clean up after the last attempt; everything about *when* to
//! run it again lives here, so processes, learners and containers restart by the same rules.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchestrator::{RestartPolicy, WorkloadId};
use tokio::sync::{Notify, watch};

use crate::api::{LogStream, WorkloadState};
use crate::logs::LogStore;

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
    observed: &'a Observed,
    stop: &'a mut watch::Receiver<bool>,
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

    pub fn running(&self, pid: Option<u32>) {
        set(self.observed, |s| {
            s.state = WorkloadState::Running;
            s.pid = pid;
            s.message.clear();
        });
    }

    /// Completes once the replica is asked to stop.
    pub async fn stop_requested(&mut self) {
        let _ = self.stop.wait_for(|stopped| *stopped).await;
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
        logs: LogStore,
        changed: Arc<Notify>,
    ) -> Self {
        let status = Mutex::new(Status {
            state: WorkloadState::Starting,
            restarts: 0,
            message: String::new(),
            pid: None,
        });
        let (stop, stop_rx) = watch::channel(false);
        let observed = Arc::new(Observed { status, changed });
        let task = tokio::spawn(supervise(
            id.to_string(),
            runner,
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
    id: String,
    mut runner: impl Runner,
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
        };
        let (failed, message) = match runner.run(&mut attempt).await {
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
