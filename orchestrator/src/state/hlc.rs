//! Hybrid logical clocks (Kulkarni et al., "Logical Physical Clocks", 2014).
//!
//! Versions must order every write in the cluster consistently with causality, yet stay close
//! to wall time so that "newest wins" means what an operator expects and tombstones can expire
//! by age. A pure Lamport clock loses the second property and a pure wall clock the first; the
//! hybrid keeps both, while tolerating wall clocks that stall or step backwards.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How far ahead of our own wall time a peer's clock may run before we refuse to follow it.
///
/// Without a bound, one node with a clock set years ahead would drag every clock it gossips
/// with into the future; after that no fresh local write could win against the poisoned
/// versions until real time caught up. A minute is far beyond honest NTP skew.
pub const MAX_DRIFT_MS: u64 = 60_000;

/// A version: wall time in milliseconds, a counter for events within the same millisecond,
/// and the issuing node so that versions from different nodes never compare equal.
///
/// The derived order compares fields in declaration order, giving the total order
/// `(wall_ms, logical, node)` that last-writer-wins relies on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp {
    pub wall_ms: u64,
    pub logical: u32,
    pub node: String,
}

impl Timestamp {
    /// The smallest timestamp a clock on `node` can hold; every issued timestamp sorts after it.
    pub fn zero(node: impl Into<String>) -> Self {
        Self {
            wall_ms: 0,
            logical: 0,
            node: node.into(),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}.{}@{}", self.wall_ms, self.logical, self.node)
    }
}

/// Why a remote timestamp was not merged into the local clock.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClockError {
    #[error(
        "remote timestamp {remote} is {ahead_ms} ms ahead of local wall time, \
         more than the {max_drift_ms} ms allowed; ignoring it"
    )]
    TooFarAhead {
        remote: Timestamp,
        ahead_ms: u64,
        max_drift_ms: u64,
    },
}

/// One node's hybrid logical clock. Time is passed in by the caller, so the clock is pure and
/// tests can drive it with any sequence of wall times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock {
    node: String,
    last: Timestamp,
}

impl Clock {
    pub fn new(node: impl Into<String>) -> Self {
        let node = node.into();
        Self {
            last: Timestamp::zero(node.clone()),
            node,
        }
    }

    /// A timestamp for a local event, strictly greater than every timestamp issued or observed
    /// before.
    ///
    /// When the wall clock has moved past everything seen, the logical counter restarts at
    /// zero so timestamps stay short and close to real time; otherwise the counter carries the
    /// order. Only a clock already at `(u64::MAX, u32::MAX)` cannot advance further; it then
    /// repeats that timestamp rather than panicking or wrapping around.
    pub fn tick(&mut self, wall_ms: u64) -> Timestamp {
        let (wall_ms, logical) = if wall_ms > self.last.wall_ms {
            (wall_ms, 0)
        } else {
            successor(self.last.wall_ms, self.last.logical)
        };
        self.last = Timestamp {
            wall_ms,
            logical,
            node: self.node.clone(),
        };
        self.last.clone()
    }

    /// Merges a timestamp received from a peer, so that later local ticks sort after it.
    ///
    /// Receiving is itself an event, so `last` advances past both the remote and the local
    /// history (the HLC receive rule). A remote wall time more than [`MAX_DRIFT_MS`] ahead of
    /// `wall_ms` leaves the clock untouched: the caller should then also drop whatever that
    /// timestamp versions, or the poisoned version would win every later merge anyway.
    pub fn observe(&mut self, remote: &Timestamp, wall_ms: u64) -> Result<(), ClockError> {
        let ahead_ms = remote.wall_ms.saturating_sub(wall_ms);
        if ahead_ms > MAX_DRIFT_MS {
            return Err(ClockError::TooFarAhead {
                remote: remote.clone(),
                ahead_ms,
                max_drift_ms: MAX_DRIFT_MS,
            });
        }
        let newest_wall = wall_ms.max(self.last.wall_ms).max(remote.wall_ms);
        let (wall_ms, logical) = if newest_wall == wall_ms
            && newest_wall > self.last.wall_ms
            && newest_wall > remote.wall_ms
        {
            (newest_wall, 0)
        } else {
            let local = (self.last.wall_ms == newest_wall).then_some(self.last.logical);
            let remote = (remote.wall_ms == newest_wall).then_some(remote.logical);
            // At least one of the two holds the newest wall time, so the maximum exists.
            successor(newest_wall, local.max(remote).unwrap_or(0))
        };
        self.last = Timestamp {
            wall_ms,
            logical,
            node: self.node.clone(),
        };
        Ok(())
    }

    /// The most recent timestamp issued or derived from an observation.
    pub fn last(&self) -> &Timestamp {
        &self.last
    }

    pub fn node(&self) -> &str {
        &self.node
    }
}

/// The next `(wall_ms, logical)` pair after the given one. When the counter is exhausted the
/// wall time is borrowed forward by a millisecond instead of wrapping, which keeps the order
/// strict; bounded drift means this only happens after four billion events in one millisecond.
fn successor(wall_ms: u64, logical: u32) -> (u64, u32) {
    match logical.checked_add(1) {
        Some(logical) => (wall_ms, logical),
        None => match wall_ms.checked_add(1) {
            Some(wall_ms) => (wall_ms, 0),
            None => (wall_ms, logical),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(wall_ms: u64, logical: u32, node: &str) -> Timestamp {
        Timestamp {
            wall_ms,
            logical,
            node: node.to_owned(),
        }
    }

    #[test]
    fn order_is_wall_then_logical_then_node() {
        assert!(at(1, 9, "z") < at(2, 0, "a"));
        assert!(at(2, 0, "z") < at(2, 1, "a"));
        assert!(at(2, 1, "a") < at(2, 1, "b"));
    }

    #[test]
    fn tick_follows_the_wall_clock_when_it_moves_forward() {
        let mut clock = Clock::new("a");
        assert_eq!(clock.tick(100), at(100, 0, "a"));
        assert_eq!(clock.tick(250), at(250, 0, "a"));
        assert_eq!(clock.last(), &at(250, 0, "a"));
    }

    #[test]
    fn tick_is_monotonic_when_the_wall_clock_stalls_or_goes_backwards() {
        let mut clock = Clock::new("a");
        let mut previous = clock.tick(1_000);
        for wall_ms in [1_000, 999, 500, 0, 1_000, 1_001] {
            let next = clock.tick(wall_ms);
            assert!(next > previous, "{next} should follow {previous}");
            previous = next;
        }
        assert_eq!(previous, at(1_001, 0, "a"));
    }

    #[test]
    fn tick_after_observe_sorts_after_the_remote_timestamp() {
        let mut clock = Clock::new("a");
        clock.tick(100);
        let remote = at(5_000, 7, "b");
        assert_eq!(clock.observe(&remote, 200), Ok(()));
        let next = clock.tick(300);
        assert!(next > remote);
        assert_eq!(next, at(5_000, 9, "a"));
    }

    #[test]
    fn observe_of_an_older_timestamp_still_advances_the_clock() {
        let mut clock = Clock::new("a");
        let before = clock.tick(1_000);
        assert_eq!(clock.observe(&at(10, 3, "b"), 900), Ok(()));
        assert_eq!(clock.last(), &at(1_000, 1, "a"));
        assert!(clock.tick(900) > before);
    }

    #[test]
    fn observe_with_equal_wall_times_takes_the_larger_counter() {
        let mut clock = Clock::new("a");
        clock.tick(1_000);
        clock.observe(&at(1_000, 4, "b"), 1_000).unwrap();
        assert_eq!(clock.last(), &at(1_000, 5, "a"));
    }

    #[test]
    fn observe_when_local_wall_time_is_newest_restarts_the_counter() {
        let mut clock = Clock::new("a");
        clock.tick(10);
        clock.observe(&at(20, 4, "b"), 30).unwrap();
        assert_eq!(clock.last(), &at(30, 0, "a"));
    }

    #[test]
    fn observe_rejects_a_remote_clock_far_in_the_future() {
        let mut clock = Clock::new("a");
        clock.tick(1_000);
        let remote = at(1_000 + MAX_DRIFT_MS + 1, 0, "b");
        let error = clock.observe(&remote, 1_000).unwrap_err();
        assert_eq!(
            error,
            ClockError::TooFarAhead {
                remote,
                ahead_ms: MAX_DRIFT_MS + 1,
                max_drift_ms: MAX_DRIFT_MS,
            }
        );
        assert!(error.to_string().contains("60001 ms ahead"));
        assert_eq!(clock.last(), &at(1_000, 0, "a"));
    }

    #[test]
    fn observe_accepts_a_remote_clock_exactly_at_the_drift_limit() {
        let mut clock = Clock::new("a");
        let remote = at(MAX_DRIFT_MS, 0, "b");
        assert_eq!(clock.observe(&remote, 0), Ok(()));
        assert!(clock.tick(0) > remote);
    }

    #[test]
    fn exhausted_counter_borrows_the_next_millisecond() {
        let mut clock = Clock::new("a");
        clock.observe(&at(5, u32::MAX - 1, "b"), 5).unwrap();
        assert_eq!(clock.last(), &at(5, u32::MAX, "a"));
        assert_eq!(clock.tick(5), at(6, 0, "a"));
    }

    #[test]
    fn a_clock_at_the_end_of_time_does_not_panic() {
        let mut clock = Clock::new("a");
        clock
            .observe(&at(u64::MAX, u32::MAX, "b"), u64::MAX)
            .unwrap();
        assert_eq!(clock.tick(u64::MAX), at(u64::MAX, u32::MAX, "a"));
        assert_eq!(clock.tick(0), at(u64::MAX, u32::MAX, "a"));
    }
}
