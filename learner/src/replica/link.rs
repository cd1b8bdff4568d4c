//! The learner process's end of the agent link (see `orchestrator::learner_link`): frames on
//! stdin and stdout, calls to peer replicas with timeouts, and answers to theirs.
//!
//! Blocking and thread-based on purpose: the process has one job, training, and a reader
//! thread that answers peers while it trains is all the concurrency it needs.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator::learner_link::{Frame, LearnerProgress};

type Answer = Result<Vec<u8>, String>;

/// Answers a peer's call: `(calling replica, body) -> reply body`.
pub type Handler = Box<dyn Fn(u32, &[u8]) -> Vec<u8> + Send + Sync>;

pub struct Link {
    output: Mutex<Box<dyn Write + Send>>,
    pending: Mutex<HashMap<u64, Sender<Answer>>>,
    next_id: AtomicU64,
    peers: Mutex<Vec<u32>>,
    closed: AtomicBool,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
}

impl Link {
    /// Starts reading frames from `input` on a thread of its own; peers' calls go to `handler`.
    pub fn start(
        input: impl Read + Send + 'static,
        output: impl Write + Send + 'static,
        handler: Handler,
    ) -> Arc<Link> {
        let link = Arc::new(Link {
            output: Mutex::new(Box::new(output)),
            pending: Mutex::default(),
            next_id: AtomicU64::new(1),
            peers: Mutex::default(),
            closed: AtomicBool::new(false),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
        });
        let reader = link.clone();
        std::thread::Builder::new()
            .name("agent-link".into())
            .spawn(move || reader.read_loop(input, handler))
            .expect("spawn the link reader");
        link
    }

    /// The replicas to exchange with, nearest first, as the agent last said.
    pub fn peers(&self) -> Vec<u32> {
        self.peers.lock().expect("peers lock").clone()
    }

    /// Whether the agent closed the link (it stopped or died).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Model bytes sent to and received from peers so far (call and reply bodies).
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.bytes_sent.load(Ordering::Relaxed),
            self.bytes_received.load(Ordering::Relaxed),
        )
    }

    /// Calls replica `to` and waits up to `timeout` for its answer.
    pub fn call(&self, to: u32, body: Vec<u8>, timeout: Duration) -> Answer {
        if self.is_closed() {
            return Err("the agent closed the link".into());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, wait) = channel();
        self.pending
            .lock()
            .expect("pending lock")
            .insert(id, answer);
        self.bytes_sent
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        self.send(&Frame::Call { id, to, body })?;
        let outcome = wait
            .recv_timeout(timeout)
            .unwrap_or_else(|_| Err(format!("replica {to} did not answer within {timeout:?}")));
        self.pending.lock().expect("pending lock").remove(&id);
        if let Ok(body) = &outcome {
            self.bytes_received
                .fetch_add(body.len() as u64, Ordering::Relaxed);
        }
        outcome
    }

    pub fn report(&self, progress: LearnerProgress) {
        let _ = self.send(&Frame::Progress(progress));
    }

    fn send(&self, frame: &Frame) -> Result<(), String> {
        let mut output = self.output.lock().expect("output lock");
        output
            .write_all(&frame.encode())
            .and_then(|()| output.flush())
            .map_err(|e| format!("writing to the agent: {e}"))
    }

    fn read_loop(&self, mut input: impl Read, handler: Handler) {
        while let Some(frame) = read_frame(&mut input) {
            match frame {
                Frame::Peers(peers) => *self.peers.lock().expect("peers lock") = peers,
                Frame::Answer { id, body } => self.complete(id, Ok(body)),
                Frame::Unreachable { id, reason } => self.complete(id, Err(reason)),
                Frame::Serve { id, from, body } => {
                    self.bytes_received
                        .fetch_add(body.len() as u64, Ordering::Relaxed);
                    let reply = handler(from, &body);
                    self.bytes_sent
                        .fetch_add(reply.len() as u64, Ordering::Relaxed);
                    let _ = self.send(&Frame::Reply { id, body: reply });
                }
                // Frames only a learner sends; an agent never should.
                Frame::Call { .. } | Frame::Reply { .. } | Frame::Progress(_) => {}
            }
        }
        self.closed.store(true, Ordering::SeqCst);
        for (_, answer) in self.pending.lock().expect("pending lock").drain() {
            let _ = answer.send(Err("the agent closed the link".into()));
        }
    }

    fn complete(&self, id: u64, answer: Answer) {
        if let Some(waiter) = self.pending.lock().expect("pending lock").remove(&id) {
            let _ = waiter.send(answer);
        }
    }
}

/// The next frame, or `None` at end of input or on a malformed frame (the agent is the only
/// writer, so a malformed frame means the link is broken).
fn read_frame(input: &mut impl Read) -> Option<Frame> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len).ok()?;
    let len = Frame::check_len(u32::from_be_bytes(len)).ok()?;
    let mut frame = vec![0u8; len];
    input.read_exact(&mut frame).ok()?;
    Frame::decode(&frame).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    /// A fake agent on the other end of a socket pair: it answers every call by echoing the
    /// body reversed, after telling the learner its peers.
    #[test]
    fn calls_are_answered_and_peers_and_serves_arrive() {
        let (learner_side, mut agent_side) = UnixStream::pair().unwrap();
        agent_side
            .write_all(&Frame::Peers(vec![2, 5]).encode())
            .unwrap();
        agent_side
            .write_all(
                &Frame::Serve {
                    id: 9,
                    from: 5,
                    body: b"ping".to_vec(),
                }
                .encode(),
            )
            .unwrap();
        let link = Link::start(
            learner_side.try_clone().unwrap(),
            learner_side,
            Box::new(|from, body| [&[from as u8][..], body].concat()),
        );
        let mut agent_reader = agent_side.try_clone().unwrap();
        let reply = read_frame(&mut agent_reader).unwrap();
        assert_eq!(
            reply,
            Frame::Reply {
                id: 9,
                body: [&[5u8][..], b"ping"].concat()
            }
        );
        std::thread::spawn(move || {
            while let Some(frame) = read_frame(&mut agent_reader) {
                if let Frame::Call { id, mut body, .. } = frame {
                    body.reverse();
                    agent_side
                        .write_all(&Frame::Answer { id, body }.encode())
                        .unwrap();
                }
            }
        });
        let answer = link
            .call(2, b"abc".to_vec(), Duration::from_secs(5))
            .unwrap();
        assert_eq!(answer, b"cba");
        assert_eq!(link.peers(), vec![2, 5]);
        let (sent, received) = link.bytes();
        assert_eq!((sent, received), (5 + 3, 4 + 3));
    }
}
