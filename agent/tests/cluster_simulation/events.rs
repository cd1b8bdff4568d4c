//! The events of the discrete-event loop, and their order in its queue.

use std::cmp::Ordering;
use std::rc::Rc;

use agent::cluster::hints::Digests;
use agent::cluster::membership::{MemberState, NodeId};
use agent::cluster::replication::{StateDigest, Updates, Wanted};
use agent::store::StoredApp;
use bytes::Bytes;
use foca::Timer;

use crate::virtual_time::Micros;

/// The anti-entropy protocol of `sync.rs`, one message per hop. In the agent these are
/// request/response pairs on a QUIC stream; a lost one ends the round, as a timeout would.
#[derive(Debug, Clone)]
pub enum SyncMessage {
    Fingerprint {
        fingerprint: u64,
        members: u64,
    },
    InSync {
        in_sync: bool,
        members_in_sync: bool,
    },
    /// Membership anti-entropy: a member list; `answer` asks for the receiver's in return.
    Members {
        states: Vec<MemberState>,
        answer: bool,
    },
    Digest {
        digest: StateDigest,
    },
    /// Boxed: a digest answer is the largest message by far, and the rarest.
    Reply {
        updates: Box<Updates>,
        wanted: Box<Wanted>,
    },
    /// Shared between the targets of one round, as the agent shares one encoded request.
    Push {
        updates: Rc<Updates>,
    },
    /// The answer to a push: which of its entries the receiver already had. `sent` rides
    /// along only because the simulator has no pending request to look it up in; it is not
    /// counted as bytes.
    Pushed {
        sent: Rc<Updates>,
        known: Vec<bool>,
    },
}

impl SyncMessage {
    /// The message's size on the wire: the agent sends requests as JSON frames with a 4-byte
    /// length (`wire.rs`). Counted without building the text.
    pub fn wire_bytes(&self) -> u64 {
        let mut count = Count(0);
        let written = match self {
            SyncMessage::Fingerprint {
                fingerprint,
                members,
            } => serde_json::to_writer(&mut count, &(fingerprint, members)),
            SyncMessage::InSync {
                in_sync,
                members_in_sync,
            } => serde_json::to_writer(&mut count, &(in_sync, members_in_sync)),
            SyncMessage::Members { states, .. } => serde_json::to_writer(&mut count, states),
            SyncMessage::Digest { digest } => serde_json::to_writer(&mut count, digest),
            SyncMessage::Reply { updates, wanted } => {
                serde_json::to_writer(&mut count, &(updates, wanted))
            }
            SyncMessage::Push { updates } => serde_json::to_writer(&mut count, &**updates),
            SyncMessage::Pushed { known, .. } => serde_json::to_writer(&mut count, known),
        };
        written.expect("sync messages serialise");
        count.0 + 4
    }
}

/// A writer that only counts.
struct Count(u64);

impl std::io::Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Debug)]
pub enum Event {
    /// The agent starts: it writes its own node record and announces itself to the seeds.
    Start {
        node: usize,
    },
    /// `gossip::Shell`'s timer: re-announce to the seeds while alone.
    Reannounce {
        node: usize,
    },
    /// `sync::spread`'s timer: send the pending rumours to a few random members.
    Spread {
        node: usize,
    },
    /// The node's reconcile loop, woken by a change (see `Sim::reconcile`).
    Reconcile {
        node: usize,
    },
    /// `sync::run`'s timer: one anti-entropy round with the next active peer.
    AntiEntropy {
        node: usize,
    },
    Swim {
        from: usize,
        to: usize,
        /// The sender's state and member digests, as the agent prefixes them (`hints`).
        digests: Digests,
        packet: Bytes,
    },
    Timer {
        node: usize,
        timer: Timer<NodeId>,
    },
    /// `gossip::Shell::check`'s timeout: `node`'s check of a member another suspects ends.
    CheckDue {
        node: usize,
        target: usize,
        member: NodeId,
        incarnation: u16,
    },
    Sync {
        from: usize,
        to: usize,
        message: SyncMessage,
    },
    Deploy {
        node: usize,
        app: Box<StoredApp>,
    },
    Crash {
        node: usize,
    },
    Sample,
}

/// A queued event. Ordered by `(at, seq)` only, reversed, so `BinaryHeap` pops the earliest
/// event first and events at the same instant in the order they were scheduled.
pub struct Scheduled {
    pub at: Micros,
    pub seq: u64,
    pub event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}
