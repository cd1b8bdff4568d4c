//! The Delta Sum experiment in one process: N learner nodes, each with its own shard, model and
//! optimizer, exchanging messages over a gossip graph. The nodes run the same [`LearnerNode`]
//! state machine as the real workload; only the transport and the clock are simulated.
//!
//! Three protocols (see [`Protocol`]): the paper's (neighbours only, take everything,
//! free-running nodes in virtual time, [`asynchronous`]), the same exchange in lockstep epochs,
//! and the earlier multi-hop relay (both in [`lockstep`]), kept for comparison.

mod asynchronous;
pub mod clock;
pub mod drops;
mod lockstep;
mod network;
mod plot;
mod protocol;
mod report;

use std::time::{Duration, Instant};

pub use clock::Timing;
pub use protocol::{EvalMode, Phase, Protocol};
pub use report::{SummaryRow, read_metrics, summarize, summary_markdown, write_report};

use crate::aggregate::Method;
use crate::data::{Dataset, NodeShard, Partition, Splits, partition};
use crate::exchange::Fetch;
use crate::gossip::LatestMessages;
use crate::node::{LearnerNode, NodeConfig};
use crate::parallel::Workers;
use crate::topology::{Graph, GraphStats, Topology, TopologyError};
use crate::trainer::{Evaluation, TrainConfig, Trainer, initial_weights, model_layout};

/// One simulated run: one method at one network size with one seed.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulationConfig {
    pub nodes: usize,
    pub method: Method,
    pub train: TrainConfig,
    pub epochs: u64,
    pub window: u64,
    pub protocol: Protocol,
    pub topology: Topology,
    /// The paper protocol's clock.
    pub timing: Timing,
    /// Relay only: gossip exchanges per local epoch; each moves messages one hop.
    pub rounds: usize,
    /// Probability that one message transfer is lost.
    pub message_loss: f64,
    /// Peer messages a node takes in per epoch (`None`: all that arrived).
    pub intake: Option<usize>,
    /// Relay only: what an exchange fetches. With [`Fetch::Intake`] a node fetches once per
    /// epoch, from its neighbours' stores as they stood after training, and `rounds` is unused.
    pub fetch: Fetch,
    pub partition: Partition,
    /// Drives the topology, the partition, the initial weights, the jitter and the delays.
    pub seed: u64,
    pub eval: EvalMode,
    /// Evaluate intermediate windows on the first this many test examples (all when `None`);
    /// evaluations at the last epoch always use the whole test set.
    pub eval_samples: Option<usize>,
    /// Worker threads (0: one per core).
    pub threads: usize,
}

impl SimulationConfig {
    /// The Delta Sum paper's protocol and experiment (CNN, 200 epochs, window 10, Flocky's
    /// geometric topology, IID, everything taken in) for one method at one size.
    pub fn paper_protocol(nodes: usize, method: Method) -> Self {
        Self {
            nodes,
            method,
            train: TrainConfig::default(),
            epochs: 200,
            window: 10,
            protocol: Protocol::Paper,
            topology: Topology::Geometric {
                ping_spread: Topology::DEFAULT_PING_SPREAD,
            },
            timing: Timing::default(),
            rounds: 3,
            message_loss: 0.0,
            intake: None,
            fetch: Fetch::Lacking,
            partition: Partition::Iid,
            seed: 1,
            eval: EvalMode::Windows,
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
    pub seed: u64,
    pub node: usize,
    pub epoch: u64,
    /// Right after training (before aggregating), or after an aggregation.
    pub phase: Phase,
    pub test: Evaluation,
    pub validation: Evaluation,
    /// Senders heard in the last window that closed (this node included).
    pub senders_heard: usize,
    pub bytes_sent: u64,
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub config: SimulationConfig,
    /// What the gossip graph looked like (`None` when read back from a file).
    pub graph: Option<GraphStats>,
    pub metrics: Vec<NodeMetrics>,
    pub wall: Duration,
}

struct SimNode {
    index: usize,
    trainer: Trainer,
    learner: LearnerNode,
    /// Relay only: the latest message per sender this node holds and passes on.
    store: LatestMessages,
    shard: NodeShard,
    weights: Vec<f32>,
    bytes_sent: u64,
    last_heard: usize,
}

impl SimNode {
    /// One measurement of this node's current model.
    fn measure(&mut self, run: &RunContext<'_>, epoch: u64, phase: Phase) -> NodeMetrics {
        let test = match run.partial_test {
            Some(subset) if epoch < run.config.epochs && run.config.eval == EvalMode::Windows => {
                subset
            }
            _ => run.test,
        };
        NodeMetrics {
            method: run.config.method,
            nodes: run.config.nodes,
            seed: run.config.seed,
            node: self.index,
            epoch,
            phase,
            test: self.trainer.evaluate(test),
            validation: self.trainer.evaluate(&self.shard.validation),
            senders_heard: self.last_heard,
            bytes_sent: self.bytes_sent,
        }
    }

    /// Closes the window if one is due, and takes the result as the node's weights.
    fn aggregate_if_due(&mut self) -> bool {
        match self.learner.aggregate_if_due(&self.weights) {
            Some(aggregation) => {
                self.trainer.set_weights(&aggregation.weights);
                self.weights = aggregation.weights;
                self.last_heard = aggregation.senders_heard;
                true
            }
            None => false,
        }
    }

    /// Trains one epoch and returns the weights it started from.
    fn train_epoch(&mut self) -> Vec<f32> {
        self.trainer.train_epoch(&self.shard.train);
        std::mem::replace(&mut self.weights, self.trainer.weights())
    }
}

/// What every node of a run shares while it runs.
struct RunContext<'a> {
    config: &'a SimulationConfig,
    test: &'a Dataset,
    partial_test: Option<&'a Dataset>,
    graph: &'a Graph,
    message_bytes: u64,
}

impl RunContext<'_> {
    /// The evaluations due at `epoch`: right after training, and after an aggregation (when
    /// one happened, or at a window's end under [`EvalMode::Windows`]).
    fn due(&self, epoch: u64, aggregated: bool) -> (bool, bool) {
        let last = epoch == self.config.epochs;
        let window_end = epoch.is_multiple_of(self.config.window) || last;
        match self.config.eval {
            EvalMode::Windows => (last, window_end),
            EvalMode::Paper => (true, aggregated),
        }
    }
}

/// Runs one configuration; `on_epoch` is told how many epochs every node has completed.
pub fn run(
    config: &SimulationConfig,
    data: &Splits,
    mut on_epoch: impl FnMut(u64),
) -> Result<RunResult, TopologyError> {
    let started = Instant::now();
    let workers = Workers::new(config.threads);
    let graph = Graph::build(&config.topology, config.nodes, config.seed)?;
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
    let context = RunContext {
        config,
        test: &data.test,
        partial_test: partial_test.as_ref(),
        graph: &graph,
        message_bytes,
    };
    let metrics = match config.protocol {
        Protocol::Paper => asynchronous::run(&context, &mut nodes, &workers, &mut on_epoch),
        Protocol::Lockstep | Protocol::Relay => {
            lockstep::run(&context, &mut nodes, &workers, &mut on_epoch)
        }
    };
    Ok(RunResult {
        config: config.clone(),
        graph: Some(graph.stats()),
        metrics,
        wall: started.elapsed(),
    })
}

/// Each node's own stream for shuffling and dropout, derived from the run's seed.
fn node_seed(seed: u64, index: usize) -> u64 {
    let mut z = seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
