//! The latest message per sender, as gossip exchanges carry it: a peer sends only what the
//! receiver's digest shows it lacks, and updates spread over several hops.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::message::{ModelMessage, SenderId};

/// `(sender, timestamp)` pairs: what a store holds, in a few bytes per sender.
pub type Digest = Vec<(SenderId, u64)>;

/// Bytes of one digest entry on the wire.
pub const DIGEST_ENTRY_BYTES: u64 = 4 + 8;

/// The newest message known from each sender.
#[derive(Debug, Clone, Default)]
pub struct LatestMessages {
    by_sender: BTreeMap<SenderId, Arc<ModelMessage>>,
}

impl LatestMessages {
    /// Keeps `message` if it is newer than what is held from its sender.
    pub fn offer(&mut self, message: Arc<ModelMessage>) -> bool {
        match self.by_sender.get(&message.sender) {
            Some(held) if held.timestamp >= message.timestamp => false,
            _ => {
                self.by_sender.insert(message.sender, message);
                true
            }
        }
    }

    pub fn digest(&self) -> Digest {
        self.by_sender
            .iter()
            .map(|(sender, message)| (*sender, message.timestamp))
            .collect()
    }

    /// The messages newer than what `digest` lists (a sender missing from it counts as never heard).
    pub fn newer_than(&self, digest: &[(SenderId, u64)]) -> Vec<Arc<ModelMessage>> {
        let known: BTreeMap<SenderId, u64> = digest.iter().copied().collect();
        self.by_sender
            .values()
            .filter(|message| {
                known
                    .get(&message.sender)
                    .is_none_or(|&timestamp| message.timestamp > timestamp)
            })
            .cloned()
            .collect()
    }

    /// The latest messages of `senders`, those this store holds.
    pub fn from_senders(&self, senders: &[SenderId]) -> Vec<Arc<ModelMessage>> {
        senders
            .iter()
            .filter_map(|sender| self.by_sender.get(sender).cloned())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.by_sender.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_sender.is_empty()
    }

    pub fn messages(&self) -> impl Iterator<Item = &Arc<ModelMessage>> {
        self.by_sender.values()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn message(sender: SenderId, timestamp: u64) -> Arc<ModelMessage> {
        Arc::new(ModelMessage {
            sender,
            timestamp,
            base: Arc::from(&[0.0f32][..]),
            delta: Arc::from(&[0.0f32][..]),
        })
    }

    #[test]
    fn keeps_only_the_newest_per_sender() {
        let mut store = LatestMessages::default();
        assert!(store.offer(message(1, 2)));
        assert!(!store.offer(message(1, 2)));
        assert!(!store.offer(message(1, 1)));
        assert!(store.offer(message(1, 3)));
        assert!(store.offer(message(2, 1)));
        assert_eq!(store.digest(), vec![(1, 3), (2, 1)]);
    }

    #[test]
    fn sends_only_what_the_digest_lacks() {
        let mut store = LatestMessages::default();
        for (sender, timestamp) in [(1, 5), (2, 5), (3, 5)] {
            store.offer(message(sender, timestamp));
        }
        let wanted: Vec<_> = store
            .newer_than(&[(1, 5), (2, 4)])
            .iter()
            .map(|m| (m.sender, m.timestamp))
            .collect();
        assert_eq!(wanted, vec![(2, 5), (3, 5)]);
    }

    proptest! {
        /// Exchanging digests and missing messages both ways leaves two stores equal, whatever
        /// they held: the merge is the per-sender maximum.
        #[test]
        fn an_exchange_both_ways_converges(
            a in proptest::collection::vec((0u32..6, 0u64..10), 0..12),
            b in proptest::collection::vec((0u32..6, 0u64..10), 0..12),
        ) {
            let mut left = LatestMessages::default();
            let mut right = LatestMessages::default();
            a.iter().for_each(|&(s, t)| { left.offer(message(s, t)); });
            b.iter().for_each(|&(s, t)| { right.offer(message(s, t)); });
            for m in right.newer_than(&left.digest()) { left.offer(m); }
            for m in left.newer_than(&right.digest()) { right.offer(m); }
            prop_assert_eq!(left.digest(), right.digest());
        }
    }
}
