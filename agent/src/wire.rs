//! Framing for messages on QUIC streams: a 4-byte big-endian length, then a JSON document.
//!
//! JSON keeps the protocol inspectable and lets old and new agents skip fields they do not know;
//! the length prefix lets one stream carry a sequence of messages (log lines while following).

use quinn::{RecvStream, SendStream};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Deploy requests carry at most a 1 MiB document; JSON escaping can roughly double it.
pub const MAX_FRAME_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("connection: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("connection: {0}")]
    Read(#[from] quinn::ReadExactError),
    #[error("message of {0} bytes exceeds the size limit")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Decode(#[from] serde_json::Error),
}

/// Writes one message; returns the bytes it took on the stream.
pub async fn write_frame<T: Serialize>(
    send: &mut SendStream,
    message: &T,
) -> Result<u64, WireError> {
    let body = serde_json::to_vec(message)?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(WireError::TooLarge(body.len()));
    }
    send.write_all(&(body.len() as u32).to_be_bytes()).await?;
    send.write_all(&body).await?;
    Ok(4 + body.len() as u64)
}

/// Reads the next message, or `None` when the peer finished the stream cleanly.
pub async fn read_frame<T: DeserializeOwned>(
    recv: &mut RecvStream,
) -> Result<Option<T>, WireError> {
    Ok(read_frame_counted(recv).await?.map(|(message, _)| message))
}

/// [`read_frame`], with the bytes the message took on the stream.
pub async fn read_frame_counted<T: DeserializeOwned>(
    recv: &mut RecvStream,
) -> Result<Option<(T, u64)>, WireError> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(WireError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await?;
    Ok(Some((serde_json::from_slice(&body)?, 4 + len as u64)))
}

/// Learner bodies follow their request or response frame as raw bytes: a 4-byte big-endian
/// length, then the bytes. Models are large and opaque to the agent; JSON would triple them.
pub async fn write_body(send: &mut SendStream, body: &[u8]) -> Result<(), WireError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(WireError::TooLarge(body.len()));
    }
    send.write_all(&(body.len() as u32).to_be_bytes()).await?;
    send.write_all(body).await?;
    Ok(())
}

pub async fn read_body(recv: &mut RecvStream) -> Result<Vec<u8>, WireError> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_BODY_BYTES {
        return Err(WireError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await?;
    Ok(body)
}

/// The largest learner body: the learner link's own frame limit.
pub const MAX_BODY_BYTES: usize = orchestrator::learner_link::MAX_FRAME_BYTES;
