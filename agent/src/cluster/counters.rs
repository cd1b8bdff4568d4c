//! What the cluster layer counts as it goes, for the metrics: membership datagrams, SWIM probe
//! outcomes and verdicts, and the bytes of each way replicated state travels. Plain relaxed
//! atomics: each is an independent running total, read at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

/// How replicated state travels between agents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Rumours pushed to a few random members each round (`crate::sync::spread`).
    Dissemination,
    /// Repair rounds with one peer: fingerprints, digests, missing entries, member lists.
    AntiEntropy,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::Dissemination, Channel::AntiEntropy];

    pub fn name(self) -> &'static str {
        match self {
            Channel::Dissemination => "dissemination",
            Channel::AntiEntropy => "anti_entropy",
        }
    }
}

/// `[sent, received]`.
pub type Bytes = [AtomicU64; 2];

#[derive(Debug, Default)]
pub struct ClusterCounters {
    /// SWIM datagrams.
    pub membership_bytes: Bytes,
    /// Request and response frames, per [`Channel`].
    state_bytes: [Bytes; 2],
    /// Acks to direct probes, acks relayed by another member (indirect probes), and probe
    /// cycles that ended without either.
    pub acks: AtomicU64,
    pub indirect_acks: AtomicU64,
    pub probes_failed: AtomicU64,
    /// Members this agent began to suspect, and suspects its own timer declared down.
    pub suspected: AtomicU64,
    pub declared_down: AtomicU64,
}

impl ClusterCounters {
    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn state_bytes(&self, channel: Channel) -> &Bytes {
        &self.state_bytes[channel as usize]
    }
}
