//! The pure part of a probe: when it is due and what a run of outcomes means.
//!
//! Kubernetes' rules: a readiness probe starts failing (the replica is not ready until it
//! passes `successThreshold` times in a row); a liveness probe starts passing and fails after
//! `failureThreshold` failures in a row. Checks are due at `initialDelaySeconds`, then every
//! `periodSeconds`.

use std::time::Duration;

use orchestrator::Probe;

/// The verdict of a probe after a run of outcomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    passing: bool,
}

impl Tracker {
    /// A readiness probe: failing until it first passes.
    pub fn readiness(probe: &Probe) -> Self {
        Self::new(probe, false)
    }

    /// A liveness probe: passing until it fails.
    pub fn liveness(probe: &Probe) -> Self {
        Self::new(probe, true)
    }

    fn new(probe: &Probe, passing: bool) -> Self {
        Tracker {
            success_threshold: probe.success_threshold.max(1),
            failure_threshold: probe.failure_threshold.max(1),
            successes: 0,
            failures: 0,
            passing,
        }
    }

    pub fn passing(&self) -> bool {
        self.passing
    }

    /// Records one check's outcome; returns the new verdict when it changed.
    pub fn record(&mut self, passed: bool) -> Option<bool> {
        if passed {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if !self.passing && self.successes >= self.success_threshold {
                self.passing = true;
                return Some(true);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.passing && self.failures >= self.failure_threshold {
                self.passing = false;
                return Some(false);
            }
        }
        None
    }
}

/// When the `n`th check (from 0) of `probe` is due, counted from the replica's start.
pub fn due(probe: &Probe, n: u32) -> Duration {
    Duration::from_secs(probe.initial_delay_seconds.into())
        + Duration::from_secs(probe.period_seconds.into()) * n
}

/// The check to run after check `n` finished `elapsed` after the start: the next one due,
/// skipping those whose time passed while check `n` ran (no burst of catching up).
pub fn next(probe: &Probe, n: u32, elapsed: Duration) -> u32 {
    if elapsed <= due(probe, n + 1) {
        return n + 1;
    }
    let period = u128::from(probe.period_seconds.max(1)) * 1_000_000;
    let since_first = elapsed.saturating_sub(due(probe, 0)).as_micros();
    u32::try_from(since_first.div_ceil(period)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator::ProbeAction;
    use proptest::prelude::*;

    fn probe(success_threshold: u32, failure_threshold: u32) -> Probe {
        Probe {
            action: ProbeAction::TcpSocket {
                port: 1,
                host: None,
            },
            initial_delay_seconds: 2,
            period_seconds: 3,
            timeout_seconds: 1,
            success_threshold,
            failure_threshold,
        }
    }

    #[test]
    fn readiness_needs_its_successes_in_a_row() {
        let mut ready = Tracker::readiness(&probe(2, 3));
        assert!(!ready.passing());
        assert_eq!(ready.record(true), None);
        assert_eq!(ready.record(false), None, "a failure resets the run");
        assert_eq!(ready.record(true), None);
        assert_eq!(ready.record(true), Some(true));
        assert_eq!(ready.record(true), None, "no change, no verdict");
    }

    #[test]
    fn liveness_fails_after_its_failures_in_a_row() {
        let mut live = Tracker::liveness(&probe(1, 3));
        assert!(live.passing());
        assert_eq!(live.record(false), None);
        assert_eq!(live.record(false), None);
        assert_eq!(live.record(true), None, "a success resets the run");
        assert_eq!(live.record(false), None);
        assert_eq!(live.record(false), None);
        assert_eq!(live.record(false), Some(false));
        assert_eq!(live.record(true), Some(true));
    }

    #[test]
    fn checks_are_due_after_the_delay_then_every_period() {
        let p = probe(1, 3);
        assert_eq!(due(&p, 0), Duration::from_secs(2));
        assert_eq!(due(&p, 1), Duration::from_secs(5));
        assert_eq!(due(&p, 4), Duration::from_secs(14));
        assert_eq!(next(&p, 0, Duration::from_millis(2_100)), 1);
        // Check 1 (due at 5 s) took until 11.5 s: checks 2 (8 s) and 3 (11 s) are skipped.
        assert_eq!(next(&p, 1, Duration::from_millis(11_500)), 4);
        assert_eq!(next(&p, 1, Duration::from_secs(11)), 3);
    }

    proptest! {
        /// The verdict is exactly "the last `threshold` outcomes agree against it" folded over
        /// the history: recomputed from scratch it is the same as the tracker's.
        #[test]
        fn the_verdict_follows_the_thresholds(
            success in 1u32..5,
            failure in 1u32..5,
            outcomes in proptest::collection::vec(any::<bool>(), 0..60),
        ) {
            let mut tracker = Tracker::readiness(&probe(success, failure));
            let mut passing = false;
            let mut run = (0u32, 0u32);
            for &ok in &outcomes {
                let before = tracker.passing();
                let changed = tracker.record(ok);
                run = if ok { (run.0 + 1, 0) } else { (0, run.1 + 1) };
                if !passing && run.0 >= success { passing = true; }
                if passing && run.1 >= failure { passing = false; }
                prop_assert_eq!(tracker.passing(), passing);
                prop_assert_eq!(changed.is_some(), before != passing);
            }
        }
    }
}
