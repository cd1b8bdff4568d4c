//! One replica of a `learner` workload, as the process an agent starts for it.
//!
//! The same [`LearnerNode`] and [`Trainer`] as the simulator, driven by real time and a real
//! link, under the paper's protocol: after every local epoch the replica asks each of its peers
//! (the agent chose them, nearest by round-trip time) for its digest and fetches that peer's
//! *own* latest message when it is newer than the last one taken from it; nobody's messages are
//! relayed. It drains everything new (or `intake` messages, longest-waiting peer first), appends
//! its own message after them, merges at window boundaries, checkpoints, and logs one line.
//! Peers' calls are answered from its store on the link's thread meanwhile: its own latest
//! message, and the latest it took from each peer (which a peer that moved asks back for).
//!
//! Resuming: from the local checkpoint when there is one (a restart on the same node), else from
//! the newest copy of this replica's own latest message that a peer holds (a move after its
//! node died), else from the start.

pub mod checkpoint;
pub mod codec;
pub mod link;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orchestrator::LearnerSpec;
use orchestrator::learner_link::LearnerProgress;

use crate::aggregate::Method;
use crate::backend::BackendKind;
use crate::data::{self, Partition, partition};
use crate::gossip::LatestMessages;
use crate::message::{ModelMessage, SenderId};
use crate::model::ModelKind;
use crate::node::{LearnerNode, NodeConfig};
use crate::trainer::{TrainConfig, Trainer, initial_weights, model_layout};
use checkpoint::Checkpoint;
use codec::{PeerRequest, PeerResponse};
use link::Link;

/// How long one call to a peer may take before the replica moves on without it.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a replica without a checkpoint waits to hear its peers before starting afresh.
const RESUME_WAIT: Duration = Duration::from_secs(5);
pub const FINAL_MODEL_FILE: &str = "model.bpk";

/// Everything a replica process is started with.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub spec: LearnerSpec,
    pub replica: u32,
    pub replicas: u32,
    /// Where the checkpoint and the final model live.
    pub state_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("learner property {field}: {message}")]
    Spec {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error(transparent)]
    Trainer(#[from] crate::trainer::TrainerError),
}

struct Parsed {
    model: ModelKind,
    method: Method,
    partition: Partition,
    backend: BackendKind,
}

fn parse_spec(spec: &LearnerSpec) -> Result<Parsed, ReplicaError> {
    fn field<T: std::str::FromStr>(field: &'static str, value: &str) -> Result<T, ReplicaError>
    where
        T::Err: std::fmt::Display,
    {
        value.parse().map_err(|e: T::Err| ReplicaError::Spec {
            field,
            message: e.to_string(),
        })
    }
    Ok(Parsed {
        model: field("model", &spec.model)?,
        method: field("aggregation", &spec.aggregation)?,
        partition: field("partition", &spec.partition)?,
        backend: field("backend", &spec.backend)?,
    })
}

/// Loads the dataset a spec names: `fashion-mnist` is the installed package (or `$GOSSIP_DATA`),
/// anything else a directory of IDX files.
pub fn load_dataset(dataset: &str) -> Result<data::Splits, data::DataError> {
    if dataset == "fashion-mnist" {
        data::load(None)
    } else {
        data::load_dir(Path::new(dataset))
    }
}

/// What the link's thread needs to answer peers: the store, shared with the training loop.
struct Shared {
    store: Mutex<LatestMessages>,
    tensors: u64,
    message_bytes: u64,
}

impl Shared {
    fn answer(&self, body: &[u8]) -> Vec<u8> {
        let store = self.store.lock().expect("store lock");
        let response = match PeerRequest::decode(body) {
            Ok(PeerRequest::Digest) => PeerResponse::Digest {
                digest: store.digest(),
                full_bytes: store.len() as u64 * self.message_bytes,
            },
            Ok(PeerRequest::Fetch(senders)) => PeerResponse::Messages(store.from_senders(&senders)),
            // A malformed call gets an empty answer; the caller's decode reports it.
            Err(_) => return Vec::new(),
        };
        response.encode(self.tensors)
    }
}

/// Runs the replica to its last epoch, then keeps answering peers until the agent closes the
/// link, so slower peers can still fetch its final model. Log lines go to stderr.
pub fn run(
    config: ReplicaConfig,
    input: impl std::io::Read + Send + 'static,
    output: impl std::io::Write + Send + 'static,
) -> Result<(), ReplicaError> {
    let spec = &config.spec;
    let parsed = parse_spec(spec)?;
    let splits = load_dataset(&spec.dataset)?;
    let shard = partition(
        &splits.train,
        config.replicas as usize,
        parsed.partition,
        spec.seed,
    )
    .swap_remove(config.replica as usize);
    let train = TrainConfig {
        model: parsed.model,
        backend: parsed.backend,
        batch_size: spec.batch_size as usize,
        learning_rate: spec.learning_rate.0,
    };
    let me: SenderId = config.replica;
    let mut learner = LearnerNode::new(
        NodeConfig {
            id: me,
            method: parsed.method,
            window: u64::from(spec.window),
            epochs: u64::from(spec.epochs),
        },
        model_layout(parsed.model),
    );
    let initial = initial_weights(parsed.model, parsed.backend, spec.seed);
    let shared = Arc::new(Shared {
        store: Mutex::default(),
        tensors: parsed.method.aggregator().tensors_per_message(),
        message_bytes: learner.message_bytes(initial.len()),
    });
    let answering = shared.clone();
    let link = Link::start(
        input,
        output,
        Box::new(move |_from, body| answering.answer(body)),
    );

    let (mut trainer, resumed_from) = resume(&config, &link, &shared, train, &initial)?;
    if let Some(epoch) = resumed_from {
        learner.resume(epoch);
    }
    let intake = (spec.intake != orchestrator::INTAKE_ALL).then_some(spec.intake as usize);
    // memberlist's push-pull interval in the paper's deployment: 1 s, 2 s above 32 members.
    let push_pull = if config.replicas > 32 { 2.0 } else { 1.0 };
    let mut progress = LearnerProgress {
        epochs: u64::from(spec.epochs),
        resumed_from,
        ..LearnerProgress::default()
    };
    let mut full_design_bytes = 0u64;
    let mut weights = trainer.weights();
    while !learner.is_finished() {
        let started = Instant::now();
        trainer.train_epoch(&shard.train);
        let after = trainer.weights();
        let message = learner.publish(&weights, &after);
        shared
            .store
            .lock()
            .expect("store lock")
            .offer(message.clone());
        weights = after;

        let peers = link.peers();
        let arrived = exchange(&link, &learner, &shared, &peers, intake);
        learner.drain(&arrived, intake);
        learner.record_own(message);
        let epoch = learner.epoch();
        if let Some(aggregation) = learner.aggregate_if_due(&weights) {
            trainer.set_weights(&aggregation.weights);
            weights = aggregation.weights;
            progress.senders_heard = aggregation.senders_heard;
            eprintln!(
                "epoch {epoch}: aggregated {} models ({}) from replicas {:?}; peers {peers:?}",
                aggregation.senders_heard, parsed.method, aggregation.senders
            );
        }
        // The paper's design: every push-pull interval a node sends its whole store (its own
        // and its neighbours' latest messages) to a random member, and answers one such call.
        let store_bytes =
            shared.store.lock().expect("store lock").len() as u64 * shared.message_bytes;
        let intervals = (started.elapsed().as_secs_f64() / push_pull).ceil() as u64;
        full_design_bytes += 2 * store_bytes * intervals.max(1);
        let test = trainer.evaluate(&splits.test);
        let validation = trainer.evaluate(&shard.validation);
        let (sent, received) = link.bytes();
        progress.epoch = epoch;
        progress.test_accuracy = test.accuracy;
        progress.validation_accuracy = validation.accuracy;
        progress.bytes_sent = sent;
        progress.bytes_received = received;
        progress.full_exchange_bytes = full_design_bytes;
        eprintln!(
            "epoch {epoch}/{}: test_accuracy={:.4} validation_accuracy={:.4} senders_in_window={} \
             bytes_sent={sent} bytes_received={received} full_exchange_bytes={full_design_bytes}",
            spec.epochs,
            test.accuracy,
            validation.accuracy,
            learner.senders_in_window(),
        );
        Checkpoint {
            epoch,
            weights: weights.clone(),
            optimizer: trainer.optimizer_state()?,
        }
        .save(&config.state_dir)?;
        if !learner.is_finished() {
            link.report(progress.clone());
        }
    }

    let final_model = config.state_dir.join(FINAL_MODEL_FILE);
    trainer.save_model(&final_model)?;
    eprintln!(
        "finished {} epochs: test_accuracy={:.4}; final model in {}",
        spec.epochs,
        progress.test_accuracy,
        final_model.display()
    );
    progress.final_model = Some(final_model.display().to_string());
    link.report(progress);
    while !link.is_closed() {
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// One exchange with every peer: ask each for its digest, and fetch the peer's own latest
/// message from those whose digest shows one the learner will take in (all that are newer, or
/// with an `intake` limit the longest-waiting peers'). Returns the fetched messages in the
/// order they arrived. Only a peer's own message is ever asked of it: no relay.
fn exchange(
    link: &Link,
    learner: &LearnerNode,
    shared: &Shared,
    peers: &[SenderId],
    intake: Option<usize>,
) -> Vec<Arc<ModelMessage>> {
    let mut offers = Vec::new();
    for &peer in peers {
        let answer = link.call(peer, PeerRequest::Digest.encode(), CALL_TIMEOUT);
        match answer.as_deref().map(PeerResponse::decode) {
            Ok(Ok(PeerResponse::Digest { digest, .. })) => {
                if let Some(&(_, timestamp)) = digest.iter().find(|(sender, _)| *sender == peer) {
                    offers.push((peer, timestamp));
                }
            }
            Ok(_) => eprintln!("replica {peer} answered a digest request with something else"),
            Err(reason) => eprintln!("exchange with replica {peer} skipped: {reason}"),
        }
    }
    let mut wanted = learner.intake_order(offers);
    wanted.truncate(intake.unwrap_or(usize::MAX));
    let mut arrived = Vec::new();
    for peer in wanted {
        let answer = link.call(peer, PeerRequest::Fetch(vec![peer]).encode(), CALL_TIMEOUT);
        match answer.as_deref().map(PeerResponse::decode) {
            Ok(Ok(PeerResponse::Messages(messages))) => {
                let mut store = shared.store.lock().expect("store lock");
                for message in messages.into_iter().filter(|m| m.sender == peer) {
                    store.offer(message.clone());
                    arrived.push(message);
                }
            }
            Ok(_) => eprintln!("replica {peer} answered a fetch with something else"),
            Err(reason) => eprintln!("fetch from replica {peer} failed: {reason}"),
        }
    }
    arrived
}

/// The trainer to continue with, and the epoch it resumes from (if not the start).
fn resume(
    config: &ReplicaConfig,
    link: &Link,
    shared: &Shared,
    train: TrainConfig,
    initial: &[f32],
) -> Result<(Trainer, Option<u64>), ReplicaError> {
    let seed = replica_seed(config.spec.seed, config.replica);
    if let Some(checkpoint) = Checkpoint::load(&config.state_dir)? {
        let mut trainer = Trainer::new(train, &checkpoint.weights, seed ^ checkpoint.epoch);
        trainer.restore_optimizer_state(&checkpoint.optimizer)?;
        eprintln!(
            "resumed from the local checkpoint at epoch {}",
            checkpoint.epoch
        );
        return Ok((trainer, Some(checkpoint.epoch)));
    }
    if let Some(own) = own_latest_from_peers(link, config.replica) {
        eprintln!(
            "resumed at epoch {} from a peer's copy of this replica's latest model",
            own.timestamp
        );
        let trainer = Trainer::new(train, &own.model(), seed ^ own.timestamp);
        let epoch = own.timestamp;
        shared.store.lock().expect("store lock").offer(own);
        return Ok((trainer, Some(epoch)));
    }
    Ok((Trainer::new(train, initial, seed), None))
}

/// Asks the peers for this replica's own latest message; waits a little for the agent to name
/// peers, since a moved replica starts before its new agent has measured anyone.
fn own_latest_from_peers(link: &Link, me: SenderId) -> Option<Arc<crate::message::ModelMessage>> {
    let started = Instant::now();
    while link.peers().is_empty() && started.elapsed() < RESUME_WAIT && !link.is_closed() {
        std::thread::sleep(Duration::from_millis(50));
    }
    link.peers()
        .into_iter()
        .filter_map(|peer| {
            let body = PeerRequest::Fetch(vec![me]).encode();
            match PeerResponse::decode(&link.call(peer, body, CALL_TIMEOUT).ok()?).ok()? {
                PeerResponse::Messages(messages) => messages.into_iter().find(|m| m.sender == me),
                PeerResponse::Digest { .. } => None,
            }
        })
        .max_by_key(|m| m.timestamp)
}

/// This replica's stream for shuffling and dropout.
fn replica_seed(seed: u64, replica: u32) -> u64 {
    seed.rotate_left(17) ^ (u64::from(replica) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_the_orchestrator_accepts_parses_here() {
        for model in orchestrator::LEARNER_MODELS {
            model.parse::<ModelKind>().unwrap();
        }
        for method in orchestrator::LEARNER_AGGREGATIONS {
            method.parse::<Method>().unwrap();
        }
        for backend in orchestrator::LEARNER_BACKENDS {
            backend.parse::<BackendKind>().unwrap();
        }
        parse_spec(&LearnerSpec::default()).unwrap();
        let skewed = LearnerSpec {
            partition: "dirichlet:0.5".into(),
            ..LearnerSpec::default()
        };
        assert_eq!(
            parse_spec(&skewed).unwrap().partition,
            Partition::Dirichlet { alpha: 0.5 }
        );
    }
}
