//! Health probes, run by the node that runs the replica: [`tracker`] is the pure verdict
//! (thresholds, schedule), [`check`] runs one check against a process or a container, and
//! [`watch`] drives both for one attempt of a replica.
//!
//! A liveness probe that fails restarts the replica under its restart policy (the supervisor
//! treats it as a failed exit); a readiness probe decides whether a running replica is
//! reported `ready`. A replica without a readiness probe counts as ready once it runs.

pub mod check;
pub mod tracker;

use std::time::Duration;

use orchestrator::Probe;
pub use orchestrator::Probes;
use tokio::time::Instant;

pub use check::Target;
use tracker::{Tracker, due, next};

/// What the probes of one attempt report, as they happen.
pub trait Report: Send + Sync + 'static {
    /// The readiness verdict changed; `why` is the failed check's message when not ready.
    fn readiness(&self, ready: bool, why: &str);
    /// A line for the replica's log.
    fn note(&self, text: &str);
    /// One check ran and `passed` or not.
    fn checked(&self, kind: Kind, passed: bool);
}

/// Which probe a check belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Readiness = 0,
    Liveness = 1,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Readiness, Kind::Liveness];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Readiness => "readiness",
            Kind::Liveness => "liveness",
        }
    }
}

/// Runs `probes` against `target` from `started` on; returns, with the last failure's
/// message, once the liveness probe has failed `failureThreshold` times in a row. Runs until
/// dropped otherwise.
pub async fn watch(
    probes: Probes,
    target: Target,
    started: Instant,
    report: impl Report,
) -> String {
    let readiness = async {
        match &probes.readiness_probe {
            Some(probe) => readiness(probe, &target, started, &report).await,
            None => std::future::pending().await,
        }
    };
    let liveness = async {
        match &probes.liveness_probe {
            Some(probe) => liveness(probe, &target, started, &report).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        never = readiness => never,
        failed = liveness => failed,
    }
}

async fn readiness(
    probe: &Probe,
    target: &Target,
    started: Instant,
    report: &impl Report,
) -> String {
    let mut tracker = Tracker::readiness(probe);
    let mut last_why = String::new();
    let mut n = 0;
    loop {
        wait_for(started, probe, n).await;
        let outcome = check::check(target, &probe.action, timeout(probe)).await;
        report.checked(Kind::Readiness, outcome.is_ok());
        let changed = tracker.record(outcome.is_ok());
        match (&outcome, changed) {
            (Ok(()), Some(true)) => {
                report.note("readiness probe passed: ready");
                report.readiness(true, "");
            }
            (Err(why), Some(false)) => {
                report.note(&format!("readiness probe failed: {why}; not ready"));
                report.readiness(false, why);
                last_why.clone_from(why);
            }
            (Err(why), None) if !tracker.passing() && *why != last_why => {
                // Not ready yet, and for a new reason: say so once, not every period.
                report.note(&format!("readiness probe failed: {why}"));
                report.readiness(false, why);
                last_why.clone_from(why);
            }
            _ => {}
        }
        n = next(probe, n, started.elapsed());
    }
}

async fn liveness(
    probe: &Probe,
    target: &Target,
    started: Instant,
    report: &impl Report,
) -> String {
    let mut tracker = Tracker::liveness(probe);
    let mut failures = 0;
    let mut n = 0;
    loop {
        wait_for(started, probe, n).await;
        let outcome = check::check(target, &probe.action, timeout(probe)).await;
        report.checked(Kind::Liveness, outcome.is_ok());
        match outcome {
            Ok(()) => {
                failures = 0;
                tracker.record(true);
            }
            Err(why) => {
                failures += 1;
                report.note(&format!(
                    "liveness probe failed ({failures}/{}): {why}",
                    probe.failure_threshold
                ));
                if tracker.record(false) == Some(false) {
                    return why;
                }
            }
        }
        n = next(probe, n, started.elapsed());
    }
}

fn timeout(probe: &Probe) -> Duration {
    Duration::from_secs(probe.timeout_seconds.into())
}

/// Sleeps until the `n`th check is due.
async fn wait_for(started: Instant, probe: &Probe, n: u32) {
    let at = started + due(probe, n);
    if at > Instant::now() {
        tokio::time::sleep_until(at).await;
    }
}
