//! What learner replicas say to each other, inside the agent's opaque `Call` bodies.
//!
//! An exchange is two calls: `Digest` (what do you hold?) and `Fetch` (send me these senders'
//! latest messages). A message carries one tensor for the averaging rules (the model) and two
//! for Delta Sum (base and delta), so bytes on the wire are what each rule needs.
//! Integers and floats are little-endian; every length is checked against what remains.

use std::sync::Arc;

use crate::gossip::Digest;
use crate::message::{ModelMessage, SenderId};

#[derive(Debug, Clone, PartialEq)]
pub enum PeerRequest {
    Digest,
    Fetch(Vec<SenderId>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum PeerResponse {
    /// The responder's store digest, and what the paper's design would have sent in this
    /// exchange: every message it holds.
    Digest {
        digest: Digest,
        full_bytes: u64,
    },
    Messages(Vec<Arc<ModelMessage>>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed peer message: {0}")]
pub struct CodecError(&'static str);

const DIGEST: u8 = 1;
const FETCH: u8 = 2;
const MESSAGES: u8 = 3;

impl PeerRequest {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            PeerRequest::Digest => vec![DIGEST],
            PeerRequest::Fetch(senders) => {
                let mut out = vec![FETCH];
                put_u32(&mut out, senders.len() as u32);
                for sender in senders {
                    put_u32(&mut out, *sender);
                }
                out
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut reader = Reader(bytes);
        match reader.u8()? {
            DIGEST => Ok(PeerRequest::Digest),
            FETCH => {
                let count = reader.count(4)?;
                (0..count)
                    .map(|_| reader.u32())
                    .collect::<Result<_, _>>()
                    .map(PeerRequest::Fetch)
            }
            _ => Err(CodecError("unknown request kind")),
        }
    }
}

impl PeerResponse {
    /// `tensors` is 1 (send `base + delta` as the model) or 2 (send both).
    pub fn encode(&self, tensors: u64) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            PeerResponse::Digest { digest, full_bytes } => {
                out.push(DIGEST);
                put_u64(&mut out, *full_bytes);
                put_u32(&mut out, digest.len() as u32);
                for (sender, timestamp) in digest {
                    put_u32(&mut out, *sender);
                    put_u64(&mut out, *timestamp);
                }
            }
            PeerResponse::Messages(messages) => {
                out.push(MESSAGES);
                put_u32(&mut out, messages.len() as u32);
                for message in messages {
                    put_u32(&mut out, message.sender);
                    put_u64(&mut out, message.timestamp);
                    put_u32(&mut out, message.params() as u32);
                    out.push(tensors as u8);
                    if tensors == 1 {
                        put_floats(&mut out, &message.model());
                    } else {
                        put_floats(&mut out, &message.base);
                        put_floats(&mut out, &message.delta);
                    }
                }
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut reader = Reader(bytes);
        match reader.u8()? {
            DIGEST => {
                let full_bytes = reader.u64()?;
                let count = reader.count(12)?;
                let digest = (0..count)
                    .map(|_| Ok((reader.u32()?, reader.u64()?)))
                    .collect::<Result<_, CodecError>>()?;
                Ok(PeerResponse::Digest { digest, full_bytes })
            }
            MESSAGES => {
                let count = reader.count(17)?;
                let mut messages = Vec::with_capacity(count);
                for _ in 0..count {
                    let sender = reader.u32()?;
                    let timestamp = reader.u64()?;
                    let params = reader.u32()? as usize;
                    let (base, delta) = match reader.u8()? {
                        1 => (reader.floats(params)?, vec![0.0; params]),
                        2 => (reader.floats(params)?, reader.floats(params)?),
                        _ => return Err(CodecError("a message carries one or two tensors")),
                    };
                    messages.push(Arc::new(ModelMessage {
                        sender,
                        timestamp,
                        base: base.into(),
                        delta: delta.into(),
                    }));
                }
                Ok(PeerResponse::Messages(messages))
            }
            _ => Err(CodecError("unknown response kind")),
        }
    }
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_floats(out: &mut Vec<u8>, values: &[f32]) {
    out.reserve(values.len() * 4);
    for value in values {
        out.extend_from_slice(&value.to_le_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// A count of items of at least `min_item_bytes` each, checked against what remains so a
    /// forged count cannot make the reader allocate more than the message itself.
    fn count(&mut self, min_item_bytes: usize) -> Result<usize, CodecError> {
        let count = self.u32()? as usize;
        if count.saturating_mul(min_item_bytes) > self.0.len() {
            return Err(CodecError("count larger than the message"));
        }
        Ok(count)
    }

    fn floats(&mut self, n: usize) -> Result<Vec<f32>, CodecError> {
        let bytes = self.take(n.checked_mul(4).ok_or(CodecError("too many floats"))?)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message(sender: u32, timestamp: u64, base: Vec<f32>, delta: Vec<f32>) -> Arc<ModelMessage> {
        Arc::new(ModelMessage {
            sender,
            timestamp,
            base: base.into(),
            delta: delta.into(),
        })
    }

    proptest! {
        #[test]
        fn requests_and_digests_round_trip(
            senders in proptest::collection::vec(any::<u32>(), 0..20),
            digest in proptest::collection::vec((any::<u32>(), any::<u64>()), 0..20),
            full_bytes in any::<u64>(),
        ) {
            let fetch = PeerRequest::Fetch(senders);
            prop_assert_eq!(PeerRequest::decode(&fetch.encode()).unwrap(), fetch);
            let response = PeerResponse::Digest { digest, full_bytes };
            prop_assert_eq!(PeerResponse::decode(&response.encode(2)).unwrap(), response);
        }

        #[test]
        fn messages_round_trip_with_both_tensors(
            base in proptest::collection::vec(-1.0f32..1.0, 1..30),
            sender in any::<u32>(),
            timestamp in any::<u64>(),
        ) {
            let delta: Vec<f32> = base.iter().map(|b| b * 0.5).collect();
            let response = PeerResponse::Messages(vec![message(sender, timestamp, base, delta)]);
            prop_assert_eq!(PeerResponse::decode(&response.encode(2)).unwrap(), response);
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = PeerRequest::decode(&bytes);
            let _ = PeerResponse::decode(&bytes);
        }
    }

    #[test]
    fn one_tensor_messages_carry_the_model_and_are_half_the_size() {
        let sent = message(3, 7, vec![1.0, 2.0], vec![0.5, -1.0]);
        let response = PeerResponse::Messages(vec![sent.clone()]);
        let (one, two) = (response.encode(1), response.encode(2));
        assert_eq!(two.len() - one.len(), 2 * 4);
        let PeerResponse::Messages(received) = PeerResponse::decode(&one).unwrap() else {
            panic!("messages");
        };
        assert_eq!(received[0].model(), sent.model());
        assert_eq!(received[0].timestamp, 7);
    }

    #[test]
    fn a_forged_count_is_refused_before_allocating() {
        let mut bytes = vec![MESSAGES];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            PeerResponse::decode(&bytes),
            Err(CodecError("count larger than the message"))
        );
    }
}
