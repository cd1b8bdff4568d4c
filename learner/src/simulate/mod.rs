//! The Delta Sum experiment in one process: N learner nodes, each with its own shard, model and
//! optimizer, exchanging messages over a gossip graph. The nodes run the same [`LearnerNode`]
//! state machine as the real workload; only the transport is simulated.

pub mod drops;
mod network;
mod plot;
mod report;

use std::time::{Duration, Instant};

pub use report::{SummaryRow, read_metrics, summarize, summary_markdown, write_report};

use crate::aggregate::Method;
use crate::data::{NodeShard, Partition, Splits, partition};
use crate::exchange::Fetch;
use crate::gossip::LatestMessages;
use crate::node::{LearnerNode, NodeConfig};
use crate::parallel::Workers;
use crate::topology::{Graph, Topology};
use crate::trainer::{Evaluation, TrainConfig, Trainer, initial_weights, model_layout};
use network::Network;

/// One simulated run: one method at one network size.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulationConfig {
    pub nodes: usize,
    pub method: Method,
    pub train: TrainConfig,
    pub epochs: u64,
    pub window: u64,
    pub topology: Topology,
    /// Gossip exchanges per local epoch; each moves messages one hop.
    pub rounds: usize,
    /// Probability that one message transfer is lost.
    pub message_loss: f64,
    /// Peer messages a node takes in per epoch (`None`: all that arrived).
    pub intake: Option<usize>,
    /// What an exchange fetches. With [`Fetch::Intake`] a node fetches once per epoch, from
    /// its neighbours' stores as they stood after training, and `rounds` is not used.
    pub fetch: Fetch,
    pub partition: Partition,
    pub seed: u64,
    /// Evaluate on the first this many test examples (all when `None`); the last evaluation
    /// always uses the whole test set.
    pub eval_samples: Option<usize>,
    /// Worker threads (0: one per core).
    pub threads: usize,
}

impl SimulationConfig {
    /// The Delta Sum paper's protocol (CNN, 200 epochs, window 10, degree 4, IID) for one
    /// method at one size, with one peer message taken in per epoch.
    pub fn paper_protocol(nodes: usize, method: Method) -> Self {
        Self {
            nodes,
            method,
            train: TrainConfig::default(),
            epochs: 200,
            window: 10,
            topology: Topology::Random { degree: 4.0 },
            rounds: 3,
            message_loss: 0.0,
            intake: Some(1),
            fetch: Fetch::Lacking,
            partition: Partition::Iid,
            seed: 1,
            eval_samples: None,
            threads: 0,
        }
    }
}

/// One node's measurements after one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeMetrics {
    pub method: Method,
    pub nodes: usize,
    pub node: usize,
    pub epoch: u64,
    pub test: Evaluation,
    pub validation: Evaluation,
    /// Senders heard in the window that just closed (this node included).
    pub senders_heard: usize,
    pub bytes_sent: u64,
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub config: SimulationConfig,
    pub metrics: Vec<NodeMetrics>,
    pub wall: Duration,
}

struct SimNode {
    index: usize,
    trainer: Trainer,
    learner: LearnerNode,
    store: LatestMessages,
    shard: NodeShard,
    weights: Vec<f32>,
    bytes_sent: u64,
    last_heard: usize,
}

/// Runs one configuration; `on_epoch` is called after every epoch of the whole network.
pub fn run(config: &SimulationConfig, data: &Splits, mut on_epoch: impl FnMut(u64)) -> RunResult {
    let started = Instant::now();
    let workers = Workers::new(config.threads);
    let graph = Graph::build(config.topology, config.nodes, config.seed);
    let initial = initial_weights(config.train.model, config.train.backend, config.seed);
    let layout = model_layout(config.train.model);
    let shards = partition(&data.train, config.nodes, config.partition, config.seed);
    let mut nodes: Vec<SimNode> = shards
        .into_iter()
        .enumerate()
        .map(|(index, shard)| SimNode {
            index,
            trainer: Trainer::new(config.train, &initial, node_seed(config.seed, index)),
            learner: LearnerNode::new(
                NodeConfig {
                    id: index as u32,
                    method: config.method,
                    window: config.window,
                    epochs: config.epochs,
                },
                layout.clone(),
            ),
            store: LatestMessages::default(),
            shard,
            weights: initial.clone(),
            bytes_sent: 0,
            last_heard: 0,
        })
        .collect();
    let message_bytes = nodes
        .first()
        .map_or(0, |n| n.learner.message_bytes(initial.len()));
    let partial_test = config
        .eval_samples
        .filter(|&n| n < data.test.len())
        .map(|n| data.test.select(&(0..n).collect::<Vec<_>>()));
    let mut network = Network::new(
        graph,
        message_bytes,
        config.message_loss,
        config.seed ^ 0x5eed_1055,
    );
    let mut metrics = Vec::new();

    for epoch in 1..=config.epochs {
        workers.for_each(&mut nodes, |node| {
            node.trainer.train_epoch(&node.shard.train);
            let after = node.trainer.weights();
            let message = node.learner.end_epoch(&node.weights, &after);
            node.store.offer(message);
            node.weights = after;
        });
        match config.fetch {
            Fetch::Lacking => {
                for _ in 0..config.rounds {
                    network.gossip_round(&mut nodes);
                }
            }
            Fetch::Intake => network.intake_exchange(&mut nodes, config.intake),
        }
        for node in &mut nodes {
            node.learner.take_in(&node.store, config.intake);
        }
        let evaluate = epoch.is_multiple_of(config.window) || epoch == config.epochs;
        let test = match &partial_test {
            Some(subset) if epoch < config.epochs => subset,
            _ => &data.test,
        };
        let mut evaluations: Vec<Option<(Evaluation, Evaluation)>> = vec![None; nodes.len()];
        {
            let mut jobs: Vec<(&mut SimNode, &mut Option<(Evaluation, Evaluation)>)> =
                nodes.iter_mut().zip(evaluations.iter_mut()).collect();
            workers.for_each(&mut jobs, |(node, out)| {
                if let Some(aggregation) = node.learner.aggregate_if_due(&node.weights) {
                    node.trainer.set_weights(&aggregation.weights);
                    node.weights = aggregation.weights;
                    node.last_heard = aggregation.senders_heard;
                }
                if evaluate {
                    **out = Some((
                        node.trainer.evaluate(test),
                        node.trainer.evaluate(&node.shard.validation),
                    ));
                }
            });
        }
        for (node, evaluation) in nodes.iter().zip(evaluations) {
            if let Some((test, validation)) = evaluation {
                metrics.push(NodeMetrics {
                    method: config.method,
                    nodes: config.nodes,
                    node: node.index,
                    epoch,
                    test,
                    validation,
                    senders_heard: node.last_heard,
                    bytes_sent: node.bytes_sent,
                });
            }
        }
        on_epoch(epoch);
    }
    RunResult {
        config: config.clone(),
        metrics,
        wall: started.elapsed(),
    }
}

/// Each node's own stream for shuffling and dropout, derived from the run's seed.
fn node_seed(seed: u64, index: usize) -> u64 {
    let mut z = seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
