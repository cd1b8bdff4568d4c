//! Lifeguard's dynamic suspicion (Dadgar, Phillips and Currey, 2017): a suspected member is
//! declared dead early only when other members confirm the suspicion independently.
//!
//! Plain SWIM lets one member that failed to probe another declare it dead after a fixed
//! timeout. When the prober is the slow one (a burst saturates its machine, its acks sit unread),
//! that single observer kills a healthy member, and its replicas fail over for nothing. Here a
//! suspicion starts with the long timeout `max`; every other member that suspects the same
//! member at the same incarnation on its own (its own probes failed too) shortens it, on
//! Lifeguard's logarithmic curve, down to `min` once `expected` confirmations have arrived:
//!
//! ```text
//! timeout(c) = max(min, max - (max - min) * ln(c + 1) / ln(expected + 1))
//! ```
//!
//! A real crash is seen by every prober, so the confirmations come within a probe period or
//! two and the member is declared dead about as fast as before; a false suspicion raised by
//! one slow observer gets no confirmations and the member has `max` to refute it. In clusters
//! too small to supply `expected` other probers, the timeout is `min` from the start.
//!
//! Confirmation is not left to chance. A member that hears another's suspicion and has none of
//! its own checks the suspect at once, by a request over its own connection to it
//! ([`Suspicions::to_check`]); when that check fails it announces its own note
//! ([`Suspicions::check_failed`]), which is the independent confirmation. Without it a
//! confirmation waited for some other member's next random probe to reach the suspect (about
//! one probe period at any cluster size) and then for that probe's period to end; with it a
//! real crash is confirmed within the check's timeout, and a live member that a slow observer
//! suspects answers the check and is not confirmed.
//!
//! Members announce their suspicions to each other as [`SuspicionNote`]s, piggybacked on the
//! failure detector's own packets (foca's custom broadcasts). A note names its author; the
//! packet that carries it arrives over mutual TLS, but the author field is the relaying
//! member's word, so a member holding a stolen key could at most bring a suspicion down to
//! `min`, today's fixed timeout, never below.
//!
//! Pure and clock-free: time is what the shell waited, as the failure detector's timers report.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Confirmations a suspicion needs to reach the shortest timeout. memberlist expects
/// `SuspicionMult - 2` = 2 on top of a 4 s (and longer) minimum; with our 1 s minimum a second
/// confirmation would add a few seconds to every real failure (other members probe a given one
/// only about once a second between them), while one independent confirmation already means a
/// single slow observer cannot kill anyone.
pub const EXPECTED_CONFIRMATIONS: usize = 1;

/// `max` as a multiple of `min` (Lifeguard's and memberlist's `SuspicionMaxTimeoutMult`).
pub const MAX_TIMEOUT_MULTIPLIER: u32 = 6;

/// At most this many suspicions are tracked at once; past it the oldest are forgotten (a
/// forgotten suspicion falls back to the long timeout, which is the safe side).
pub const MAX_TRACKED: usize = 1024;

/// One member's statement that it suspects another, as members pass it on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SuspicionNote {
    /// The suspected member's name and SWIM incarnation.
    pub member: String,
    pub incarnation: u16,
    /// Who suspects it.
    pub by: String,
}

/// The dynamic suspicion timeout's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuspicionTimeouts {
    pub min: Duration,
    pub max: Duration,
    pub expected: usize,
}

impl SuspicionTimeouts {
    /// Lifeguard's shape around the failure detector's suspicion timeout: that timeout is the
    /// shortest, six times it the longest.
    pub fn around(min: Duration) -> Self {
        SuspicionTimeouts {
            min,
            max: min * MAX_TIMEOUT_MULTIPLIER,
            expected: EXPECTED_CONFIRMATIONS,
        }
    }

    /// How long a suspicion with `confirmations` independent confirmations lasts in a cluster
    /// of `members` (not counting us).
    pub fn timeout(&self, members: usize, confirmations: usize) -> Duration {
        // The suspect and we cannot confirm; with fewer other members than `expected`, no
        // confirmation could ever come.
        let expected = if members < self.expected + 1 {
            0
        } else {
            self.expected
        };
        if expected == 0 || confirmations >= expected {
            return self.min;
        }
        let fraction = ((confirmations + 1) as f64).ln() / ((expected + 1) as f64).ln();
        let span = self.max.saturating_sub(self.min).as_secs_f64();
        let timeout = self.max.as_secs_f64() - span * fraction;
        Duration::from_secs_f64(timeout).max(self.min)
    }
}

/// What to do when a suspicion's timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The timeout has passed: declare the member down.
    Down,
    /// Check again after this long.
    Wait(Duration),
}

#[derive(Debug, Default, Clone)]
struct Suspicion {
    /// Ours: our own probes failed and our timer runs.
    ours: bool,
    /// How long our timer has run so far, and what it is set for now.
    waited: Duration,
    next: Duration,
    /// Other members that suspect it at this incarnation.
    confirmed_by: BTreeSet<String>,
    /// We were asked to check it ourselves (another member suspects it, we do not), and
    /// whether that check failed and we announced so.
    checked: bool,
    vouched: bool,
    /// Insertion order, for forgetting the oldest first.
    order: u64,
}

/// Every open suspicion this member knows of: its own and the ones others announced.
#[derive(Debug, Clone)]
pub struct Suspicions {
    me: String,
    timeouts: SuspicionTimeouts,
    open: BTreeMap<(String, u16), Suspicion>,
    next_order: u64,
}

impl Suspicions {
    pub fn new(me: &str, timeouts: SuspicionTimeouts) -> Self {
        Suspicions {
            me: me.to_string(),
            timeouts,
            open: BTreeMap::new(),
            next_order: 0,
        }
    }

    /// Our own probes of `member` failed and the failure detector set a timer `after` long:
    /// our suspicion starts. Returns the note to announce, or `None` when our suspicion was
    /// already running (its timer carries on; a second one would count the time twice).
    pub fn suspect(
        &mut self,
        member: &str,
        incarnation: u16,
        after: Duration,
    ) -> Option<SuspicionNote> {
        let entry = self.entry(member, incarnation);
        if entry.ours {
            return None;
        }
        entry.ours = true;
        entry.waited = Duration::ZERO;
        entry.next = after;
        Some(SuspicionNote {
            member: member.to_string(),
            incarnation,
            by: self.me.clone(),
        })
    }

    /// Another member's note. Returns whether it was news (a note already counted, or one of
    /// our own coming back, is not passed on again).
    pub fn confirm(&mut self, note: &SuspicionNote) -> bool {
        if note.by == self.me || note.member == self.me || note.by == note.member {
            return false;
        }
        self.entry(&note.member, note.incarnation)
            .confirmed_by
            .insert(note.by.clone())
    }

    /// Suspicions others announced that we neither hold nor have checked yet: the members to
    /// check ourselves, each once per incarnation.
    pub fn to_check(&mut self) -> Vec<(String, u16)> {
        let mut due = Vec::new();
        for ((member, incarnation), suspicion) in self.open.iter_mut() {
            if !suspicion.ours && !suspicion.checked && !suspicion.confirmed_by.is_empty() {
                suspicion.checked = true;
                due.push((member.clone(), *incarnation));
            }
        }
        due
    }

    /// Our own check of `member` at `incarnation` failed: the note that confirms the
    /// suspicion, unless we announced one already or the suspicion is over.
    pub fn check_failed(&mut self, member: &str, incarnation: u16) -> Option<SuspicionNote> {
        let suspicion = self.open.get_mut(&(member.to_string(), incarnation))?;
        if suspicion.ours || suspicion.vouched {
            return None;
        }
        suspicion.vouched = true;
        Some(SuspicionNote {
            member: member.to_string(),
            incarnation,
            by: self.me.clone(),
        })
    }

    /// Independent confirmations of the suspicion of `member` at `incarnation`.
    pub fn confirmations(&self, member: &str, incarnation: u16) -> usize {
        self.open
            .get(&(member.to_string(), incarnation))
            .map_or(0, |s| s.confirmed_by.len())
    }

    /// Our timer for `member` fired, in a cluster of `members`. Down once the dynamic timeout
    /// has passed; otherwise when to look again (at the latest when the timeout would pass
    /// with no further confirmation, earlier if one may shorten it: every `min / 4`).
    pub fn fired(&mut self, member: &str, incarnation: u16, members: usize) -> Verdict {
        let timeouts = self.timeouts;
        let entry = self.entry(member, incarnation);
        // A suspicion forgotten under the tracking bound restarts from the shortest timer.
        let waited = if entry.ours { entry.next } else { timeouts.min };
        entry.ours = true;
        entry.waited += waited;
        let timeout = timeouts.timeout(members, entry.confirmed_by.len());
        if entry.waited >= timeout {
            return Verdict::Down;
        }
        let step = (timeouts.min / 4).max(Duration::from_millis(1));
        entry.next = (timeout - entry.waited).min(step);
        Verdict::Wait(entry.next)
    }

    /// The suspicion of `member` is over (it refuted it, was declared down, left or renamed).
    pub fn forget(&mut self, member: &str) {
        self.open.retain(|(name, _), _| name != member);
    }

    /// Open suspicions (ours and others'), for tests and metrics.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    fn entry(&mut self, member: &str, incarnation: u16) -> &mut Suspicion {
        let key = (member.to_string(), incarnation);
        if !self.open.contains_key(&key) {
            if self.open.len() >= MAX_TRACKED
                && let Some(oldest) = self
                    .open
                    .iter()
                    .min_by_key(|(_, s)| s.order)
                    .map(|(k, _)| k.clone())
            {
                self.open.remove(&oldest);
            }
            self.next_order += 1;
            self.open.insert(
                key.clone(),
                Suspicion {
                    order: self.next_order,
                    ..Suspicion::default()
                },
            );
        }
        self.open.get_mut(&key).expect("inserted")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn note(member: &str, by: &str) -> SuspicionNote {
        SuspicionNote {
            member: member.into(),
            incarnation: 0,
            by: by.into(),
        }
    }

    #[test]
    fn by_default_one_confirmation_brings_the_shortest_timeout() {
        let t = SuspicionTimeouts::around(secs(2.0));
        assert_eq!(t.timeout(50, 0), secs(12.0));
        assert_eq!(t.timeout(50, 1), secs(2.0));
        // One member besides us, the suspect: nobody could confirm.
        assert_eq!(t.timeout(1, 0), secs(2.0));
        assert_eq!(t.timeout(2, 0), secs(12.0));
    }

    #[test]
    fn the_timeout_follows_lifeguards_curve() {
        let t = SuspicionTimeouts {
            expected: 2,
            ..SuspicionTimeouts::around(secs(2.0))
        };
        assert_eq!(t.max, secs(12.0));
        assert_eq!(t.timeout(50, 0), secs(12.0));
        // 12 - 10 * ln 2 / ln 3 = 5.69 s
        let one = t.timeout(50, 1).as_secs_f64();
        assert!((one - 5.6907).abs() < 1e-3, "{one}");
        assert_eq!(t.timeout(50, 2), secs(2.0));
        assert_eq!(t.timeout(50, 7), secs(2.0));
        // Two members besides us: one of them is the suspect, so nobody could confirm.
        assert_eq!(t.timeout(2, 0), secs(2.0));
        assert_eq!(t.timeout(3, 0), secs(12.0));
    }

    #[test]
    fn one_slow_observer_waits_the_long_timeout() {
        let mut s = Suspicions::new("a", SuspicionTimeouts::around(secs(2.0)));
        assert!(s.suspect("x", 0, secs(2.0)).is_some());
        assert!(s.suspect("x", 0, secs(2.0)).is_none(), "announced once");
        let mut total = secs(2.0);
        while let Verdict::Wait(next) = s.fired("x", 0, 20) {
            total += next;
        }
        assert_eq!(total, secs(12.0));
    }

    #[test]
    fn confirmations_bring_the_verdict_forward() {
        let mut s = Suspicions::new("a", SuspicionTimeouts::around(secs(2.0)));
        s.suspect("x", 0, secs(2.0));
        assert_eq!(s.fired("x", 0, 20), Verdict::Wait(secs(0.5)));
        assert_eq!(s.fired("x", 0, 20), Verdict::Wait(secs(0.5)));
        assert!(s.confirm(&note("x", "b")));
        assert!(!s.confirm(&note("x", "b")), "counted once");
        assert_eq!(s.confirmations("x", 0), 1);
        assert_eq!(s.fired("x", 0, 20), Verdict::Down);
    }

    #[test]
    fn notes_that_cannot_confirm_are_ignored() {
        let mut s = Suspicions::new("a", SuspicionTimeouts::around(secs(2.0)));
        assert!(!s.confirm(&note("x", "a")), "our own note, echoed back");
        assert!(
            !s.confirm(&note("a", "b")),
            "about us: we refute, not count"
        );
        assert!(!s.confirm(&note("x", "x")), "the suspect about itself");
        assert_eq!(s.confirmations("x", 0), 0);
    }

    #[test]
    fn a_refuted_suspicion_starts_over() {
        let mut s = Suspicions::new("a", SuspicionTimeouts::around(secs(2.0)));
        s.suspect("x", 0, secs(2.0));
        s.confirm(&note("x", "b"));
        // x refuted (incarnation 1); confirmations of the old incarnation do not carry over.
        assert_eq!(s.confirmations("x", 1), 0);
        s.forget("x");
        assert!(s.is_empty());
        assert!(s.suspect("x", 1, secs(2.0)).is_some());
    }

    #[test]
    fn a_suspicion_heard_from_another_is_checked_once_and_confirmed_only_on_failure() {
        let mut b = Suspicions::new("b", SuspicionTimeouts::around(secs(1.0)));
        assert!(b.to_check().is_empty());
        assert!(b.confirm(&note("x", "a")));
        assert_eq!(b.to_check(), vec![("x".to_string(), 0)]);
        assert!(b.to_check().is_empty(), "checked once");
        assert!(b.confirm(&note("x", "c")));
        assert!(
            b.to_check().is_empty(),
            "a second note does not check again"
        );
        // The check failed: b's own note is the confirmation a's timer waits for.
        let confirmation = b.check_failed("x", 0).expect("a note");
        assert_eq!(confirmation, note("x", "b"));
        assert!(b.check_failed("x", 0).is_none(), "announced once");
        let mut a = Suspicions::new("a", SuspicionTimeouts::around(secs(1.0)));
        a.suspect("x", 0, secs(1.0));
        assert!(a.confirm(&confirmation));
        assert_eq!(a.fired("x", 0, 20), Verdict::Down);
        // A refuted suspicion (new incarnation) is checked afresh; a forgotten one not at all.
        b.confirm(&SuspicionNote {
            incarnation: 1,
            ..note("x", "a")
        });
        assert_eq!(b.to_check(), vec![("x".to_string(), 1)]);
        b.forget("x");
        assert!(b.check_failed("x", 1).is_none());
    }

    #[test]
    fn our_own_suspicion_needs_no_check() {
        let mut s = Suspicions::new("b", SuspicionTimeouts::around(secs(1.0)));
        s.suspect("x", 0, secs(1.0));
        s.confirm(&note("x", "a"));
        assert!(s.to_check().is_empty());
        assert!(
            s.check_failed("x", 0).is_none(),
            "our timer's note already went out"
        );
    }

    #[test]
    fn tracking_is_bounded() {
        let mut s = Suspicions::new("a", SuspicionTimeouts::around(secs(2.0)));
        for i in 0..MAX_TRACKED + 10 {
            s.confirm(&note(&format!("m{i}"), "b"));
        }
        assert_eq!(s.len(), MAX_TRACKED);
        assert_eq!(s.confirmations("m0", 0), 0, "the oldest went first");
        assert_eq!(s.confirmations(&format!("m{}", MAX_TRACKED + 9), 0), 1);
    }

    proptest! {
        #[test]
        fn the_timeout_is_bounded_and_never_grows_with_confirmations(
            min_ms in 1u64..10_000, members in 0usize..2_000, c in 0usize..10,
        ) {
            let t = SuspicionTimeouts::around(Duration::from_millis(min_ms));
            let a = t.timeout(members, c);
            let b = t.timeout(members, c + 1);
            prop_assert!(a >= t.min && a <= t.max);
            prop_assert!(b <= a);
        }

        #[test]
        fn a_suspicion_ends_between_min_and_max(
            min_ms in 100u64..5_000, members in 4usize..500,
            confirm_at in proptest::collection::vec(0usize..40, 0..4),
        ) {
            let timeouts = SuspicionTimeouts::around(Duration::from_millis(min_ms));
            let mut s = Suspicions::new("a", timeouts);
            s.suspect("x", 0, timeouts.min);
            let mut total = timeouts.min;
            for step in 0.. {
                for (i, _) in confirm_at.iter().enumerate().filter(|(_, at)| **at == step) {
                    s.confirm(&note("x", &format!("peer{i}")));
                }
                match s.fired("x", 0, members) {
                    Verdict::Down => break,
                    Verdict::Wait(next) => total += next,
                }
            }
            prop_assert!(total >= timeouts.min);
            prop_assert!(total <= timeouts.max);
            let c = s.confirmations("x", 0);
            prop_assert!(total >= timeouts.timeout(members, c));
        }
    }
}
