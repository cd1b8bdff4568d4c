//! What learners tell each other: after every local epoch, the weights it started from and what
//! the epoch added to them.

use std::sync::Arc;

/// A learner's index among its peers (the replica index of a learner workload).
pub type SenderId = u32;

/// One epoch's progress from one learner: `base` (weights at the start of the epoch) and
/// `delta` (weights after the epoch minus `base`). `timestamp` is the sender's epoch count and
/// only ever grows, so "newer" is a plain comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMessage {
    pub sender: SenderId,
    pub timestamp: u64,
    pub base: Arc<[f32]>,
    pub delta: Arc<[f32]>,
}

impl ModelMessage {
    /// Builds the message for an epoch that went from `before` to `after`.
    pub fn from_epoch(sender: SenderId, timestamp: u64, before: &[f32], after: &[f32]) -> Self {
        assert_eq!(before.len(), after.len(), "one model layout per run");
        let delta: Vec<f32> = after.iter().zip(before).map(|(a, b)| a - b).collect();
        Self {
            sender,
            timestamp,
            base: before.into(),
            delta: delta.into(),
        }
    }

    /// The sender's weights at the end of the epoch, `base + delta`.
    pub fn model(&self) -> Vec<f32> {
        self.base
            .iter()
            .zip(self.delta.iter())
            .map(|(b, d)| b + d)
            .collect()
    }

    pub fn params(&self) -> usize {
        self.base.len()
    }
}

/// Bytes of a message's fixed header on the wire: sender, timestamp, length.
pub const HEADER_BYTES: u64 = 4 + 8 + 4;
