//! The `learner` runtime: the agent's end of the link to each learner process it runs.
//!
//! A learner replica is a `gossip-learner` child process, supervised like a `process` replica
//! (restarts, logs from stderr, no orphans) but started at lower priority so training never
//! starves this agent's failure detector, and with stdin and stdout carrying
//! [`orchestrator::learner_link`] frames. The agent moves those frames between the process and
//! the agents running its peers, over the cluster's mutual-TLS QUIC connections; it never
//! reads the model bytes inside.
//!
//! Memory stays bounded: frames to a process queue in a small bounded channel, so a process
//! that stops reading makes the peers calling it wait (and time out) instead of growing a
//! queue, and every call carries a deadline.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator::learner_link::{Frame, LearnerProgress};
use orchestrator::{EnvVar, LearnerSpec, ProcessSpec, RestartPolicy, WorkloadId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// How long a peer's call may wait for this node's learner to answer.
pub const SERVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Frames waiting to be written to one learner process.
const QUEUE_FRAMES: usize = 8;
/// Learner processes run at this `nice` value, below the agent's.
pub const NICENESS: i32 = 10;
pub const PROGRAM_NAME: &str = "gossip-learner";

/// Where this node finds the learner program and keeps replicas' state.
#[derive(Debug, Clone)]
pub struct LearnerRuntime {
    pub program: PathBuf,
    /// `<data-dir>/learners`: one directory per replica with its checkpoint and final model.
    pub state_root: PathBuf,
}

impl LearnerRuntime {
    /// The program beside this agent's own executable, if it is there.
    pub fn beside_agent(state_root: PathBuf) -> Option<Self> {
        let program = std::env::current_exe().ok()?.parent()?.join(PROGRAM_NAME);
        program.is_file().then_some(LearnerRuntime {
            program,
            state_root,
        })
    }

    pub fn state_dir(&self, id: &WorkloadId) -> PathBuf {
        self.state_root
            .join(&id.app)
            .join(&id.component)
            .join(id.replica.to_string())
    }

    /// The child process a replica runs: the learner program, told its properties and state
    /// directory through the environment. It restarts on failure only: a learner that
    /// finished has succeeded.
    pub fn process_spec(&self, id: &WorkloadId, spec: &LearnerSpec) -> ProcessSpec {
        let spec_json = serde_json::to_string(spec).expect("learner spec serialises");
        ProcessSpec {
            command: vec![self.program.display().to_string()],
            env: vec![
                EnvVar {
                    name: "GOSSIP_LEARNER".into(),
                    value: spec_json,
                },
                EnvVar {
                    name: "GOSSIP_STATE_DIR".into(),
                    value: self.state_dir(id).display().to_string(),
                },
            ],
            working_dir: None,
            restart: RestartPolicy::OnFailure,
            probes: Default::default(),
        }
    }
}

pub type CallFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>>;

/// Carries a learner's call to the replica it names, wherever that replica runs.
pub trait Router: Send + Sync {
    fn call(&self, from: &WorkloadId, to: u32, body: Vec<u8>) -> CallFuture;
}

/// The agent's side of one replica's link. It outlives process restarts: each new process is
/// attached to it.
pub struct LearnerLink {
    id: WorkloadId,
    router: Arc<dyn Router>,
    to_process: Mutex<Option<mpsc::Sender<Frame>>>,
    serving: Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>,
    next_id: AtomicU64,
    progress: Mutex<Option<LearnerProgress>>,
    peers: Mutex<Option<Vec<u32>>>,
}

impl std::fmt::Debug for LearnerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LearnerLink").field("id", &self.id).finish()
    }
}

impl LearnerLink {
    pub fn new(id: WorkloadId, router: Arc<dyn Router>) -> Arc<Self> {
        Arc::new(LearnerLink {
            id,
            router,
            to_process: Mutex::default(),
            serving: Mutex::default(),
            next_id: AtomicU64::new(1),
            progress: Mutex::default(),
            peers: Mutex::default(),
        })
    }

    /// The latest progress the process reported.
    pub fn progress(&self) -> Option<LearnerProgress> {
        self.progress.lock().expect("progress lock").clone()
    }

    /// Tells the process whom to exchange with, if that changed (or it is a new process).
    pub fn set_peers(&self, peers: Vec<u32>) {
        let mut last = self.peers.lock().expect("peers lock");
        if last.as_ref() == Some(&peers) {
            return;
        }
        let sender = self.to_process.lock().expect("link lock").clone();
        if let Some(sender) = sender
            && sender.try_send(Frame::Peers(peers.clone())).is_ok()
        {
            *last = Some(peers);
        }
    }

    /// Connects a freshly started process; runs until its stdout closes.
    pub async fn attach(
        self: Arc<Self>,
        stdin: impl AsyncWrite + Unpin + Send + 'static,
        stdout: impl AsyncRead + Unpin + Send + 'static,
    ) {
        let (sender, receiver) = mpsc::channel(QUEUE_FRAMES);
        *self.to_process.lock().expect("link lock") = Some(sender);
        // A new process knows no peers yet.
        *self.peers.lock().expect("peers lock") = None;
        let writer = tokio::spawn(write_frames(stdin, receiver));
        self.clone().read_frames(stdout).await;
        writer.abort();
        *self.to_process.lock().expect("link lock") = None;
        // Calls it never answered fail now rather than at their deadline.
        self.serving.lock().expect("serving lock").clear();
    }

    /// A peer's call, answered by this node's process for the replica.
    pub async fn serve(&self, from: u32, body: Vec<u8>) -> Result<Vec<u8>, String> {
        let sender = self
            .to_process
            .lock()
            .expect("link lock")
            .clone()
            .ok_or_else(|| format!("{} is not running", self.id))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, reply) = oneshot::channel();
        self.serving
            .lock()
            .expect("serving lock")
            .insert(id, answer);
        let exchange = async {
            sender
                .send(Frame::Serve { id, from, body })
                .await
                .map_err(|_| format!("{} stopped", self.id))?;
            reply.await.map_err(|_| format!("{} stopped", self.id))
        };
        let outcome = tokio::time::timeout(SERVE_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("{} did not answer in time", self.id)));
        self.serving.lock().expect("serving lock").remove(&id);
        outcome
    }

    async fn read_frames(self: Arc<Self>, mut stdout: impl AsyncRead + Unpin) {
        loop {
            let mut len = [0u8; 4];
            if stdout.read_exact(&mut len).await.is_err() {
                return;
            }
            let Ok(len) = Frame::check_len(u32::from_be_bytes(len)) else {
                tracing::warn!(workload = %self.id, "learner sent an oversized frame");
                return;
            };
            let mut frame = vec![0u8; len];
            if stdout.read_exact(&mut frame).await.is_err() {
                return;
            }
            match Frame::decode(&frame) {
                Ok(Frame::Call { id, to, body }) => {
                    let link = self.clone();
                    tokio::spawn(async move {
                        let answer = match link.router.call(&link.id, to, body).await {
                            Ok(body) => Frame::Answer { id, body },
                            Err(reason) => Frame::Unreachable { id, reason },
                        };
                        let sender = link.to_process.lock().expect("link lock").clone();
                        if let Some(sender) = sender {
                            let _ = sender.send(answer).await;
                        }
                    });
                }
                Ok(Frame::Reply { id, body }) => {
                    if let Some(waiter) = self.serving.lock().expect("serving lock").remove(&id) {
                        let _ = waiter.send(body);
                    }
                }
                Ok(Frame::Progress(progress)) => {
                    *self.progress.lock().expect("progress lock") = Some(progress);
                }
                Ok(other) => {
                    tracing::debug!(workload = %self.id, "unexpected frame from a learner: {other:?}")
                }
                Err(e) => {
                    tracing::warn!(workload = %self.id, "learner link: {e}");
                    return;
                }
            }
        }
    }
}

async fn write_frames(mut stdin: impl AsyncWrite + Unpin, mut frames: mpsc::Receiver<Frame>) {
    while let Some(frame) = frames.recv().await {
        if stdin.write_all(&frame.encode()).await.is_err() || stdin.flush().await.is_err() {
            return;
        }
    }
}

/// The replicas a learner exchanges with: the `count` nearest by round-trip time (ties broken
/// by distance on the ring of replica indices), always including its ring neighbours so the
/// exchange graph stays connected however the latencies fall.
///
/// `rtt` gives each other replica's measured round-trip time; `None` means not measured yet,
/// which sorts after every measured one.
pub fn choose_peers(
    me: u32,
    replicas: u32,
    count: u32,
    rtt: impl Fn(u32) -> Option<Duration>,
) -> Vec<u32> {
    if replicas <= 1 {
        return Vec::new();
    }
    let ring_distance = |other: u32| {
        let d = other.abs_diff(me);
        d.min(replicas - d)
    };
    // Round to milliseconds: finer differences are noise and would make the choice flap.
    let nearness = |r: &u32| {
        let millis = rtt(*r).map_or(u128::MAX, |d| d.as_millis());
        (millis, ring_distance(*r), *r)
    };
    let mut others: Vec<u32> = (0..replicas).filter(|&r| r != me).collect();
    others.sort_by_key(nearness);
    let mut chosen: Vec<u32> = Vec::new();
    for ring in [(me + 1) % replicas, (me + replicas - 1) % replicas] {
        if !chosen.contains(&ring) {
            chosen.push(ring);
        }
    }
    for other in others {
        if chosen.len() >= count.max(1) as usize {
            break;
        }
        if !chosen.contains(&other) {
            chosen.push(other);
        }
    }
    // Nearest first, as the learner asks them in this order.
    chosen.sort_by_key(nearness);
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Routes every call back with the callee's number appended.
    struct Echo;

    impl Router for Echo {
        fn call(&self, _from: &WorkloadId, to: u32, mut body: Vec<u8>) -> CallFuture {
            body.push(to as u8);
            Box::pin(async move { Ok(body) })
        }
    }

    async fn next_frame(input: &mut (impl AsyncRead + Unpin)) -> Frame {
        let mut len = [0u8; 4];
        input.read_exact(&mut len).await.unwrap();
        let mut frame = vec![0u8; Frame::check_len(u32::from_be_bytes(len)).unwrap()];
        input.read_exact(&mut frame).await.unwrap();
        Frame::decode(&frame).unwrap()
    }

    /// A fake learner process on in-memory pipes: the link carries its calls out through the
    /// router, hands it peers' calls, and keeps its progress.
    #[tokio::test]
    async fn the_link_carries_calls_both_ways_and_keeps_progress() {
        let id: WorkloadId = "app/learner/0".parse().unwrap();
        let link = LearnerLink::new(id, Arc::new(Echo));
        let (agent_stdin, mut learner_stdin) = tokio::io::duplex(1 << 16);
        let (mut learner_stdout, agent_stdout) = tokio::io::duplex(1 << 16);
        tokio::spawn(link.clone().attach(agent_stdin, agent_stdout));
        tokio::time::sleep(Duration::from_millis(20)).await;

        link.set_peers(vec![1, 2]);
        assert_eq!(
            next_frame(&mut learner_stdin).await,
            Frame::Peers(vec![1, 2])
        );

        // Outbound: the learner calls replica 7 and gets the router's answer.
        let call = Frame::Call {
            id: 5,
            to: 7,
            body: vec![1, 2],
        };
        learner_stdout.write_all(&call.encode()).await.unwrap();
        assert_eq!(
            next_frame(&mut learner_stdin).await,
            Frame::Answer {
                id: 5,
                body: vec![1, 2, 7]
            }
        );

        // Inbound: a peer's call is served by the learner's reply.
        let serving = tokio::spawn({
            let link = link.clone();
            async move { link.serve(3, b"digest?".to_vec()).await }
        });
        let Frame::Serve { id, from, body } = next_frame(&mut learner_stdin).await else {
            panic!("a serve frame");
        };
        assert_eq!((from, body.as_slice()), (3, &b"digest?"[..]));
        let reply = Frame::Reply {
            id,
            body: b"digest".to_vec(),
        };
        learner_stdout.write_all(&reply.encode()).await.unwrap();
        assert_eq!(serving.await.unwrap().unwrap(), b"digest");

        let progress = LearnerProgress {
            epoch: 4,
            epochs: 10,
            test_accuracy: 0.5,
            ..LearnerProgress::default()
        };
        learner_stdout
            .write_all(&Frame::Progress(progress.clone()).encode())
            .await
            .unwrap();
        for _ in 0..100 {
            if link.progress().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(link.progress(), Some(progress));

        // Once the process is gone, peers' calls fail at once instead of waiting.
        drop(learner_stdout);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused = link.serve(3, vec![]).await.unwrap_err();
        assert!(refused.contains("not running"), "{refused}");
    }

    #[test]
    fn nearest_by_rtt_plus_ring_neighbours() {
        // Replica 0 of 8; replicas 4 and 5 are 1 ms away, the rest 40 ms.
        let rtt = |r: u32| Some(Duration::from_millis(if r == 4 || r == 5 { 1 } else { 40 }));
        assert_eq!(choose_peers(0, 8, 4, rtt), vec![5, 4, 1, 7]);
        // Unmeasured peers come last; the ring neighbours are always there.
        assert_eq!(choose_peers(0, 8, 2, |_| None), vec![1, 7]);
    }

    #[test]
    fn small_groups() {
        assert!(choose_peers(0, 1, 4, |_| None).is_empty());
        assert_eq!(choose_peers(1, 2, 4, |_| None), vec![0]);
        assert_eq!(choose_peers(2, 3, 4, |_| None), vec![0, 1]);
    }

    #[test]
    fn the_exchange_graph_is_connected_whatever_the_latencies() {
        // Everyone's nearest peer is replica 0: without ring neighbours, 1..n would each pick
        // only 0 and 0 would pick 1, leaving most replicas unreachable from each other except
        // through 0; with them, the ring alone connects everyone.
        let n = 10;
        let graph: Vec<Vec<u32>> = (0..n)
            .map(|me| choose_peers(me, n, 1, |r| Some(Duration::from_millis(u64::from(r) * 5))))
            .collect();
        let mut seen = vec![false; n as usize];
        let mut stack = vec![0u32];
        while let Some(r) = stack.pop() {
            if std::mem::replace(&mut seen[r as usize], true) {
                continue;
            }
            stack.extend(graph[r as usize].iter().copied());
        }
        assert!(seen.iter().all(|&s| s));
    }
}
