//! The link between an agent and a learner process it runs: length-prefixed binary frames on the
//! process's stdin (agent to learner) and stdout (learner to agent).
//!
//! The agent only moves bytes: a learner asks to `Call` a peer replica with an opaque body, and
//! the agent carries it over the cluster's mutual-TLS QUIC connections to the agent running
//! that peer, which hands it to its learner as `Serve` and carries the `Reply` back. The agent
//! never interprets a body, so model encoding stays the learner's business, and a learner never
//! opens a socket of its own. Encoding and decoding are pure, so both ends share this file.
//!
//! Frame layout, integers big-endian: `len: u32` (of what follows), `kind: u8`, `id: u64`,
//! `replica: u32`, then `len - 13` bytes of body.

use serde::{Deserialize, Serialize};

/// Frames larger than this are refused: a CNN message is about 0.5 MB, an MLP one 0.8 MB, and a
/// reply carries a handful of them.
pub const MAX_FRAME_BYTES: usize = 64 << 20;
const HEADER_BYTES: usize = 1 + 8 + 4;

/// One frame on the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Agent to learner: the replicas (of the same component) to exchange with, nearest first.
    Peers(Vec<u32>),
    /// Learner to agent: deliver `body` to replica `to`; the answer comes back as `Answer` or
    /// `Unreachable` with the same `id`.
    Call { id: u64, to: u32, body: Vec<u8> },
    /// Agent to learner: replica `from` calls; answer with `Reply` and the same `id`.
    Serve { id: u64, from: u32, body: Vec<u8> },
    /// Learner to agent: the answer to a `Serve`.
    Reply { id: u64, body: Vec<u8> },
    /// Agent to learner: the answer to a `Call`.
    Answer { id: u64, body: Vec<u8> },
    /// Agent to learner: a `Call` that could not be delivered, and why.
    Unreachable { id: u64, reason: String },
    /// Learner to agent: how far it got, for `get workloads` and `describe app`.
    Progress(LearnerProgress),
}

/// A learner replica's progress as it reports it after every epoch.
/// Field names are snake_case like the rest of the agent API's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LearnerProgress {
    pub epoch: u64,
    pub epochs: u64,
    /// Accuracy on the test set after the latest epoch.
    pub test_accuracy: f64,
    /// Accuracy on the replica's own validation split.
    pub validation_accuracy: f64,
    /// Peers whose models the latest window merged (the replica itself included).
    pub senders_heard: usize,
    /// Model-exchange bytes this replica sent and received (call and reply bodies).
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// What the same exchanges would have carried in the Delta Sum paper's design, where every
    /// exchange carries the latest message of every sender the responder knows.
    #[serde(default)]
    pub full_exchange_bytes: u64,
    /// Where the final model was written, once the replica finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_model: Option<String>,
    /// The epoch it resumed from after a restart or a move, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<u64>,
}

impl Eq for LearnerProgress {}

impl LearnerProgress {
    pub fn finished(&self) -> bool {
        self.final_model.is_some()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("frame too short for its header")]
    Truncated,
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("malformed frame body: {0}")]
    Body(String),
}

const PEERS: u8 = 1;
const CALL: u8 = 2;
const SERVE: u8 = 3;
const REPLY: u8 = 4;
const ANSWER: u8 = 5;
const UNREACHABLE: u8 = 6;
const PROGRESS: u8 = 7;

impl Frame {
    /// The frame with its length prefix, ready to write.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, id, replica, body): (u8, u64, u32, std::borrow::Cow<'_, [u8]>) = match self {
            Frame::Peers(replicas) => {
                let body = replicas.iter().flat_map(|r| r.to_be_bytes()).collect();
                (PEERS, 0, 0, std::borrow::Cow::Owned(body))
            }
            Frame::Call { id, to, body } => (CALL, *id, *to, body.as_slice().into()),
            Frame::Serve { id, from, body } => (SERVE, *id, *from, body.as_slice().into()),
            Frame::Reply { id, body } => (REPLY, *id, 0, body.as_slice().into()),
            Frame::Answer { id, body } => (ANSWER, *id, 0, body.as_slice().into()),
            Frame::Unreachable { id, reason } => (UNREACHABLE, *id, 0, reason.as_bytes().into()),
            Frame::Progress(progress) => {
                let body = serde_json::to_vec(progress).expect("progress serialises");
                (PROGRESS, 0, 0, body.into())
            }
        };
        let len = HEADER_BYTES + body.len();
        let mut out = Vec::with_capacity(4 + len);
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.push(kind);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&replica.to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Checks a length prefix before the frame it announces is read.
    pub fn check_len(len: u32) -> Result<usize, LinkError> {
        let len = len as usize;
        if len > MAX_FRAME_BYTES {
            return Err(LinkError::TooLarge(len));
        }
        if len < HEADER_BYTES {
            return Err(LinkError::Truncated);
        }
        Ok(len)
    }

    /// Decodes a frame from what follows its length prefix.
    pub fn decode(frame: &[u8]) -> Result<Frame, LinkError> {
        if frame.len() < HEADER_BYTES {
            return Err(LinkError::Truncated);
        }
        let kind = frame[0];
        let id = u64::from_be_bytes(frame[1..9].try_into().expect("8 bytes"));
        let replica = u32::from_be_bytes(frame[9..13].try_into().expect("4 bytes"));
        let body = &frame[HEADER_BYTES..];
        Ok(match kind {
            PEERS => {
                if !body.len().is_multiple_of(4) {
                    return Err(LinkError::Body(
                        "peer list not a multiple of 4 bytes".into(),
                    ));
                }
                let replicas = body
                    .chunks_exact(4)
                    .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")))
                    .collect();
                Frame::Peers(replicas)
            }
            CALL => Frame::Call {
                id,
                to: replica,
                body: body.to_vec(),
            },
            SERVE => Frame::Serve {
                id,
                from: replica,
                body: body.to_vec(),
            },
            REPLY => Frame::Reply {
                id,
                body: body.to_vec(),
            },
            ANSWER => Frame::Answer {
                id,
                body: body.to_vec(),
            },
            UNREACHABLE => Frame::Unreachable {
                id,
                reason: String::from_utf8_lossy(body).into_owned(),
            },
            PROGRESS => Frame::Progress(
                serde_json::from_slice(body).map_err(|e| LinkError::Body(e.to_string()))?,
            ),
            other => return Err(LinkError::UnknownKind(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames() -> impl Strategy<Value = Frame> {
        let body = proptest::collection::vec(any::<u8>(), 0..64);
        prop_oneof![
            proptest::collection::vec(any::<u32>(), 0..8).prop_map(Frame::Peers),
            (any::<u64>(), any::<u32>(), body.clone()).prop_map(|(id, to, body)| Frame::Call {
                id,
                to,
                body
            }),
            (any::<u64>(), any::<u32>(), body.clone()).prop_map(|(id, from, body)| Frame::Serve {
                id,
                from,
                body
            }),
            (any::<u64>(), body.clone()).prop_map(|(id, body)| Frame::Reply { id, body }),
            (any::<u64>(), body).prop_map(|(id, body)| Frame::Answer { id, body }),
            (any::<u64>(), "[a-z ]{0,20}")
                .prop_map(|(id, reason)| Frame::Unreachable { id, reason }),
            (any::<u64>(), 0.0..1.0f64).prop_map(|(epoch, accuracy)| Frame::Progress(
                LearnerProgress {
                    epoch,
                    epochs: epoch + 1,
                    test_accuracy: accuracy,
                    final_model: Some("model.bin".into()),
                    ..LearnerProgress::default()
                }
            )),
        ]
    }

    proptest! {
        #[test]
        fn frames_round_trip(frame in frames()) {
            let bytes = frame.encode();
            let len = u32::from_be_bytes(bytes[..4].try_into().unwrap());
            prop_assert_eq!(Frame::check_len(len).unwrap(), bytes.len() - 4);
            prop_assert_eq!(Frame::decode(&bytes[4..]).unwrap(), frame);
        }
    }

    #[test]
    fn oversized_truncated_and_unknown_frames_are_refused() {
        assert_eq!(
            Frame::check_len(u32::MAX),
            Err(LinkError::TooLarge(u32::MAX as usize))
        );
        assert_eq!(Frame::check_len(3), Err(LinkError::Truncated));
        assert_eq!(Frame::decode(&[CALL, 0]), Err(LinkError::Truncated));
        let mut unknown = Frame::Reply {
            id: 1,
            body: vec![],
        }
        .encode();
        unknown[4] = 99;
        assert_eq!(
            Frame::decode(&unknown[4..]),
            Err(LinkError::UnknownKind(99))
        );
    }
}
