//! Lifeguard's local health awareness (Dadgar, Phillips and Currey, 2017): an agent that is
//! itself slow must not accuse others.
//!
//! On a small machine under a burst the agent that misses deadlines is usually the observer,
//! not the member it probes: its own timers fire late, acks sit unread in its queues, and
//! plain SWIM then suspects and kills healthy peers, whose replicas fail over and make the
//! burst worse. The local health multiplier (LHM) is a saturating counter that rises on
//! evidence of local trouble (a probe cycle that got no ack, a timer that fired late) and
//! falls on evidence of health (an ack received). The shell stretches the failure detector's
//! probe timers by `1 + LHM`: the probe period and the probe timeout. An unhealthy agent
//! therefore probes less often and waits longer for answers, while healthy agents keep the
//! cluster's normal deadlines.
//!
//! The suspicion timeout is not stretched, as in Lifeguard's reference implementation
//! (memberlist): a probe that fails because its target really died raises the prober's
//! multiplier just as one lost to local trouble does (foca has no nacks to tell them apart), so
//! stretching suspicion would slow down exactly the verdicts that are right. Suspicion is
//! guarded by dynamic suspicion instead ([`crate::cluster::suspicion`]): a suspicion no other
//! member confirms with its own failed probe lasts six times as long, and a slow agent's
//! healthy peers do not confirm its suspicions.
//!
//! Pure: the shell reports events and asks for scaled durations.

use std::time::Duration;

/// Lifeguard's defaults: the multiplier saturates at 8, and a timer counts as late when it
/// fires this long after its deadline.
pub const MAX_SCORE: u32 = 8;
pub const LATE_TIMER: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalHealth {
    score: u32,
}

impl LocalHealth {
    /// The multiplier's current value, 0 (healthy) to [`MAX_SCORE`].
    pub fn score(&self) -> u32 {
        self.score
    }

    /// A probe cycle (direct and indirect) ended without an ack.
    pub fn probe_failed(&mut self) {
        self.raise();
    }

    /// An ack arrived for one of our probes.
    pub fn acked(&mut self) {
        self.score = self.score.saturating_sub(1);
    }

    /// A timer fired `late` after its deadline: the agent's own event loop is behind.
    pub fn timer_fired(&mut self, late: Duration) {
        if late >= LATE_TIMER {
            self.raise();
        }
    }

    /// `normal`, stretched by the multiplier.
    pub fn scale(&self, normal: Duration) -> Duration {
        normal * (1 + self.score)
    }

    fn raise(&mut self) {
        self.score = (self.score + 1).min(MAX_SCORE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_healthy_agent_keeps_normal_deadlines() {
        let mut health = LocalHealth::default();
        health.timer_fired(Duration::from_millis(20));
        health.acked();
        assert_eq!(health.score(), 0);
        assert_eq!(health.scale(Duration::from_secs(1)), Duration::from_secs(1));
    }

    #[test]
    fn late_timers_and_failed_probes_stretch_deadlines_until_acks_return() {
        let mut health = LocalHealth::default();
        health.timer_fired(Duration::from_millis(500));
        health.probe_failed();
        assert_eq!(health.score(), 2);
        assert_eq!(
            health.scale(Duration::from_millis(300)),
            Duration::from_millis(900)
        );
        health.acked();
        health.acked();
        assert_eq!(
            health.scale(Duration::from_millis(300)),
            Duration::from_millis(300)
        );
    }

    proptest! {
        /// Whatever happens, the multiplier stays within 1..=9 and one ack per earlier
        /// complaint brings it back to 1.
        #[test]
        fn the_multiplier_is_bounded_and_recovers(events in prop::collection::vec(0u8..3, 0..100)) {
            let mut health = LocalHealth::default();
            for event in &events {
                match event {
                    0 => health.probe_failed(),
                    1 => health.timer_fired(Duration::from_secs(1)),
                    _ => health.acked(),
                }
                prop_assert!(health.score() <= MAX_SCORE);
            }
            for _ in 0..MAX_SCORE {
                health.acked();
            }
            prop_assert_eq!(health.score(), 0);
        }
    }
}
