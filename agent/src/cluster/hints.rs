//! What every membership datagram carries besides SWIM's packet: the sender's replicated-state
//! fingerprint and member-view digest, four bytes each.
//!
//! A pair of agents that probe each other (every member, within a few probe periods) thereby
//! learns for eight bytes a packet whether they hold the same state and the same view. A
//! difference is a hint for anti-entropy to exchange with that peer; agreement means there is
//! nothing to repair, so a converged cluster runs no exchange rounds at all beyond a slow
//! backstop. The 32-bit truncation can hide a difference once in four billion comparisons;
//! the backstop round, which compares the full fingerprints, catches what it hides.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes the digests add in front of every membership packet.
pub const PREFIX_BYTES: usize = 8;

/// A sender's state fingerprint and member-view digest, truncated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Digests {
    pub state: u32,
    pub members: u32,
}

/// What a peer's digests say about ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Divergence {
    /// Replicated state differs: an anti-entropy exchange would repair it.
    pub state: bool,
    /// Member views differ: swapping member lists would settle it.
    pub members: bool,
}

impl Divergence {
    pub fn any(self) -> bool {
        self.state || self.members
    }
}

/// Folds a 64-bit digest into 32 bits, keeping every input bit's influence.
fn fold(digest: u64) -> u32 {
    (digest ^ (digest >> 32)) as u32
}

impl Digests {
    pub fn of(state_fingerprint: u64, member_digest: u64) -> Self {
        Digests {
            state: fold(state_fingerprint),
            members: fold(member_digest),
        }
    }

    /// The datagram for `packet`: these digests, then the packet.
    pub fn frame(self, packet: &[u8]) -> Bytes {
        let mut datagram = BytesMut::with_capacity(PREFIX_BYTES + packet.len());
        datagram.put_u32_le(self.state);
        datagram.put_u32_le(self.members);
        datagram.put_slice(packet);
        datagram.freeze()
    }

    /// Splits a datagram into the sender's digests and its packet; `None` when it is too short
    /// to carry them.
    pub fn unframe(datagram: &Bytes) -> Option<(Digests, Bytes)> {
        if datagram.len() < PREFIX_BYTES {
            return None;
        }
        let word =
            |at: usize| u32::from_le_bytes(datagram[at..at + 4].try_into().expect("four bytes"));
        let digests = Digests {
            state: word(0),
            members: word(4),
        };
        Some((digests, datagram.slice(PREFIX_BYTES..)))
    }

    /// How a peer's digests differ from ours.
    pub fn compare(self, theirs: Digests) -> Divergence {
        Divergence {
            state: self.state != theirs.state,
            members: self.members != theirs.members,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn a_framed_packet_comes_back_whole_with_its_digests(
            state in any::<u64>(),
            members in any::<u64>(),
            packet in proptest::collection::vec(any::<u8>(), 0..1200),
        ) {
            let digests = Digests::of(state, members);
            let datagram = digests.frame(&packet);
            prop_assert_eq!(datagram.len(), packet.len() + PREFIX_BYTES);
            let (back, body) = Digests::unframe(&datagram).expect("long enough");
            prop_assert_eq!(back, digests);
            prop_assert_eq!(body.as_ref(), packet.as_slice());
        }

        #[test]
        fn digests_that_differ_in_one_half_of_the_word_still_differ(
            state in any::<u64>(),
            bit in 0u32..64,
        ) {
            let flipped = state ^ (1u64 << bit);
            prop_assert_ne!(Digests::of(state, 0).state, Digests::of(flipped, 0).state);
        }
    }

    #[test]
    fn a_datagram_too_short_for_the_digests_is_refused() {
        assert!(Digests::unframe(&Bytes::from_static(&[1, 2, 3])).is_none());
        assert!(Digests::unframe(&Bytes::from_static(&[0; PREFIX_BYTES])).is_some());
    }

    #[test]
    fn divergence_names_what_differs() {
        let ours = Digests::of(1, 2);
        assert!(!ours.compare(ours).any());
        let other_state = Digests::of(3, 2);
        assert_eq!(
            ours.compare(other_state),
            Divergence {
                state: true,
                members: false
            }
        );
        assert_eq!(
            ours.compare(Digests::of(1, 5)),
            Divergence {
                state: false,
                members: true
            }
        );
    }
}
