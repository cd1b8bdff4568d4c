//! Whom anti-entropy exchanges with, round by round.
//!
//! Rumours carry changes; anti-entropy only repairs what they missed. Every membership packet
//! carries its sender's state and member digests (`hints`), so a difference between two agents
//! shows within a probe period or two of their next packet, and names the peer to repair
//! with. A round therefore exchanges with the last peer that showed a difference, and with
//! nobody when none did: a converged cluster spends nothing on repair. A backstop round every
//! [`BACKSTOP_EVERY`] rounds walks the members in turn regardless, for what the hints cannot
//! show (a 32-bit collision, a pair whose packets stopped while they differed).

/// One round in this many exchanges with the next member in turn even without a hint.
pub const BACKSTOP_EVERY: usize = 15;

/// The state of one agent's anti-entropy schedule. Pure: the caller supplies the members and
/// the hint, and carries out the exchange it is told.
#[derive(Debug, Default, Clone)]
pub struct RepairSchedule {
    /// Position of the backstop's walk over the members.
    turn: usize,
    /// Rounds since the last backstop round.
    since_backstop: usize,
}

impl RepairSchedule {
    /// The peer to exchange with in the round due now, if any. `peers` are the active members
    /// in a stable order; `hinted` is the last one whose packet showed a difference since the
    /// previous round. A hint naming someone no longer active is ignored.
    pub fn next<P: Copy + PartialEq>(&mut self, peers: &[P], hinted: Option<P>) -> Option<P> {
        if peers.is_empty() {
            return None;
        }
        self.since_backstop += 1;
        if let Some(peer) = hinted.filter(|p| peers.contains(p)) {
            return Some(peer);
        }
        if self.since_backstop < BACKSTOP_EVERY {
            return None;
        }
        self.since_backstop = 0;
        let peer = peers[self.turn % peers.len()];
        self.turn = self.turn.wrapping_add(1);
        Some(peer)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Without a single hint, every member is still reached, within BACKSTOP_EVERY
        /// rounds per member.
        #[test]
        fn the_backstop_reaches_every_member(n in 1usize..40) {
            let peers: Vec<usize> = (0..n).collect();
            let mut schedule = RepairSchedule::default();
            let mut reached = BTreeSet::new();
            let mut exchanges = 0;
            for _ in 0..n * BACKSTOP_EVERY {
                if let Some(peer) = schedule.next(&peers, None) {
                    reached.insert(peer);
                    exchanges += 1;
                }
            }
            prop_assert_eq!(reached.len(), n);
            prop_assert_eq!(exchanges, n);
        }

        /// A hint naming an active member is followed in the same round; one naming anyone
        /// else is not.
        #[test]
        fn a_hint_is_followed_only_for_an_active_member(
            n in 1usize..40,
            hinted in 0usize..80,
            rounds_before in 0usize..100,
        ) {
            let peers: Vec<usize> = (0..n).collect();
            let mut schedule = RepairSchedule::default();
            for _ in 0..rounds_before {
                schedule.next(&peers, None);
            }
            let chosen = schedule.next(&peers, Some(hinted));
            if hinted < n {
                prop_assert_eq!(chosen, Some(hinted));
            } else {
                prop_assert_ne!(chosen, Some(hinted));
            }
        }
    }

    #[test]
    fn a_quiet_converged_cluster_exchanges_once_per_backstop_period() {
        let peers = [1, 2, 3];
        let mut schedule = RepairSchedule::default();
        let exchanges = (0..BACKSTOP_EVERY * 4)
            .filter(|_| schedule.next(&peers, None).is_some())
            .count();
        assert_eq!(exchanges, 4);
        assert_eq!(RepairSchedule::default().next::<u8>(&[], Some(1)), None);
    }
}
