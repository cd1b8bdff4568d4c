//! Virtual time for the paper's protocol: when every node ends each epoch, and when each of its
//! messages becomes visible to each node that hears it. Pure and computed up front: epoch
//! durations and gossip delays do not depend on what the models learn, so the whole timetable
//! is a function of the seed, and any order of computing the models that respects it gives the
//! same run.
//!
//! The model follows the reference deployment (all nodes on one host, memberlist push-pull):
//! - a node's epoch takes `(train + eval + sleep [+ eval after an aggregation]) * jitter`, with
//!   training time proportional to its shard and `jitter ~ U(1 - j, 1 + j)` per node and epoch;
//!   nodes start up to `start_spread` apart, so their epochs and windows are not aligned;
//! - it publishes its message and drains everything visible right after training and evaluating;
//! - a message reaches a node that hears its sender after `U(0, push_pull) + bytes / bandwidth`,
//!   where `push_pull` is 1 s, doubled above 32 nodes as memberlist's does, and is lost with the
//!   run's message-loss probability.

use crate::topology::Graph;

/// The constants of the time model; defaults are modelled on the reference runs (the paper's
/// CNN at about 2,500 training examples per second, a full test-set evaluation of about a
/// second, 1 s of sleep).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub train_seconds_per_sample: f64,
    pub eval_seconds: f64,
    pub sleep_seconds: f64,
    /// Each epoch's duration is multiplied by `U(1 - jitter, 1 + jitter)`.
    pub jitter: f64,
    /// Nodes start at `U(0, start_spread)` seconds.
    pub start_spread_seconds: f64,
    /// The push-pull interval; `None`: 1 s, 2 s above 32 nodes.
    pub push_pull_seconds: Option<f64>,
    pub bandwidth_bits_per_second: f64,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            train_seconds_per_sample: 1.0 / 2500.0,
            eval_seconds: 1.0,
            sleep_seconds: 1.0,
            jitter: 0.1,
            start_spread_seconds: 1.0,
            push_pull_seconds: None,
            bandwidth_bits_per_second: 1e9,
        }
    }
}

impl Timing {
    /// memberlist's push-pull interval for a cluster of `nodes`.
    pub fn push_pull(&self, nodes: usize) -> f64 {
        self.push_pull_seconds
            .unwrap_or(if nodes > 32 { 2.0 } else { 1.0 })
    }
}

/// A uniform draw in `[0, 1)` that depends only on the seed and the key, whatever order draws
/// are made in (a counter-based generator: SplitMix64 over the key's words).
pub(crate) fn unit(seed: u64, key: [u64; 4]) -> f64 {
    let mut state = seed;
    for word in key {
        state = mix(state ^ word.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
    (mix(state) >> 11) as f64 / (1u64 << 53) as f64
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Draw streams, one per kind of decision.
const START: u64 = 1;
const JITTER: u64 = 2;
const DELAY: u64 = 3;
const LOSS: u64 = 4;

/// One message as a node finds it when it drains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    pub sender: usize,
    /// The sender's epoch that produced it (its timestamp).
    pub epoch: u64,
    pub visible_at: f64,
}

/// The run's timetable.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// `publish[i][e - 1]`: when node `i` publishes epoch `e`'s message and drains.
    publish: Vec<Vec<f64>>,
    heard: Vec<Vec<usize>>,
    push_pull: f64,
    transfer: f64,
    loss: f64,
    seed: u64,
}

/// What the timetable needs to know about a run.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleInputs<'a> {
    pub graph: &'a Graph,
    /// Training examples per node.
    pub train_samples: &'a [usize],
    pub epochs: u64,
    pub window: u64,
    pub timing: Timing,
    pub message_bytes: u64,
    pub loss: f64,
    pub seed: u64,
}

impl Schedule {
    pub fn new(inputs: ScheduleInputs<'_>) -> Self {
        let timing = inputs.timing;
        let nodes = inputs.graph.len();
        let publish = (0..nodes)
            .map(|node| {
                let key = |stream, epoch| [stream, node as u64, epoch, 0];
                let train = inputs.train_samples[node] as f64 * timing.train_seconds_per_sample;
                let mut start = unit(inputs.seed, key(START, 0)) * timing.start_spread_seconds;
                (1..=inputs.epochs)
                    .map(|epoch| {
                        let jitter = 1.0 - timing.jitter
                            + 2.0 * timing.jitter * unit(inputs.seed, key(JITTER, epoch));
                        let aggregates =
                            epoch.is_multiple_of(inputs.window) || epoch == inputs.epochs;
                        let publish = start + (train + timing.eval_seconds) * jitter;
                        let after = timing.sleep_seconds
                            + if aggregates { timing.eval_seconds } else { 0.0 };
                        start = publish + after * jitter;
                        publish
                    })
                    .collect()
            })
            .collect();
        Self {
            publish,
            heard: inputs.graph.neighbours.clone(),
            push_pull: timing.push_pull(nodes),
            transfer: inputs.message_bytes as f64 * 8.0 / timing.bandwidth_bits_per_second,
            loss: inputs.loss,
            seed: inputs.seed,
        }
    }

    pub fn nodes(&self) -> usize {
        self.publish.len()
    }

    /// When `node` publishes its epoch-`epoch` message (epochs count from 1).
    pub fn publish_time(&self, node: usize, epoch: u64) -> f64 {
        self.publish[node][epoch as usize - 1]
    }

    /// The shortest delay any message can take: what keeps the timetable causal.
    pub fn min_delay(&self) -> f64 {
        self.transfer
    }

    /// When `from`'s epoch-`epoch` message becomes visible to `to`; `None` if it is lost.
    pub fn visible_at(&self, from: usize, to: usize, epoch: u64) -> Option<f64> {
        let key = |stream| [stream, from as u64, to as u64, epoch];
        if self.loss > 0.0 && unit(self.seed, key(LOSS)) < self.loss {
            return None;
        }
        let wait = unit(self.seed, key(DELAY)) * self.push_pull;
        Some(self.publish_time(from, epoch) + wait + self.transfer)
    }

    /// What `node` drains after its epoch `epoch`: the newest visible message of each node it
    /// hears, in the order they arrived. Whether each is newer than what the node already
    /// processed is the learner's to decide; the sender epochs never go down from one drain
    /// to the next.
    pub fn drain(&self, node: usize, epoch: u64) -> Vec<Arrival> {
        let now = self.publish_time(node, epoch);
        let mut arrivals: Vec<Arrival> = self.heard[node]
            .iter()
            .filter_map(|&sender| self.newest_visible(sender, node, now))
            .collect();
        arrivals.sort_by(|a, b| {
            a.visible_at
                .total_cmp(&b.visible_at)
                .then(a.sender.cmp(&b.sender))
        });
        arrivals
    }

    /// The newest of `sender`'s messages that `to` can see at time `now`.
    fn newest_visible(&self, sender: usize, to: usize, now: f64) -> Option<Arrival> {
        // Only messages published before `now` can be visible; try the newest first. Without
        // loss the search ends within a push-pull interval's worth of epochs.
        let published = self.publish[sender].partition_point(|&t| t < now);
        for epoch in (1..=published as u64).rev() {
            if let Some(visible_at) = self.visible_at(sender, to, epoch)
                && visible_at <= now
            {
                return Some(Arrival {
                    sender,
                    epoch,
                    visible_at,
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::topology::Topology;

    fn schedule(nodes: usize, topology: Topology, loss: f64, seed: u64) -> Schedule {
        let graph = Graph::build(&topology, nodes, seed).unwrap();
        Schedule::new(ScheduleInputs {
            graph: &graph,
            train_samples: &vec![4800; nodes],
            epochs: 40,
            window: 10,
            timing: Timing::default(),
            message_bytes: 800_000,
            loss,
            seed,
        })
    }

    #[test]
    fn draws_are_uniform_and_keyed() {
        let draws: Vec<f64> = (0..10_000).map(|i| unit(7, [1, i, 0, 0])).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        assert_eq!(unit(7, [1, 5, 0, 0]), draws[5]);
        assert_ne!(unit(8, [1, 5, 0, 0]), draws[5]);
    }

    #[test]
    fn epochs_last_train_eval_and_sleep_with_jitter() {
        let s = schedule(4, Topology::Ring, 0.0, 1);
        // 4,800 examples at 2,500/s + 1 s eval + 1 s sleep = 3.92 s, +-10%, +1 s after windows.
        for node in 0..4 {
            for epoch in 2..=9 {
                let step = s.publish_time(node, epoch) - s.publish_time(node, epoch - 1);
                assert!((3.92 * 0.9..=3.92 * 1.1).contains(&step), "{step}");
            }
        }
        // Nodes are not aligned.
        assert_ne!(s.publish_time(0, 5), s.publish_time(1, 5));
    }

    #[test]
    fn delays_follow_memberlist_push_pull() {
        assert_eq!(Timing::default().push_pull(32), 1.0);
        assert_eq!(Timing::default().push_pull(33), 2.0);
        let s = schedule(4, Topology::Ring, 0.0, 3);
        for epoch in 1..=40 {
            let delay = s.visible_at(0, 1, epoch).unwrap() - s.publish_time(0, epoch);
            assert!(delay >= s.min_delay() && delay <= 1.0 + s.min_delay());
        }
    }

    proptest! {
        /// No relay: a node only ever finds its own neighbours' messages, each one visible by
        /// the time it drains, and from one drain to the next a sender's epoch never goes down,
        /// so "newer than the last drain" takes every message at most once.
        #[test]
        fn drains_hold_only_neighbours_newest_visible_messages(
            nodes in 3usize..30,
            seed: u64,
            lossy in proptest::bool::ANY,
        ) {
            let topology = Topology::Geometric { ping_spread: 0.2 };
            let loss = if lossy { 0.3 } else { 0.0 };
            let s = schedule(nodes, topology.clone(), loss, seed);
            let graph = Graph::build(&topology, nodes, seed).unwrap();
            for node in 0..nodes {
                let mut last: std::collections::BTreeMap<usize, u64> = Default::default();
                for epoch in 1..=40 {
                    let now = s.publish_time(node, epoch);
                    let drained = s.drain(node, epoch);
                    for pair in drained.windows(2) {
                        prop_assert!(pair[0].visible_at <= pair[1].visible_at);
                    }
                    for arrival in drained {
                        prop_assert!(graph.neighbours[node].contains(&arrival.sender));
                        prop_assert!(arrival.visible_at <= now);
                        prop_assert!(s.publish_time(arrival.sender, arrival.epoch) < now);
                        let previous = last.insert(arrival.sender, arrival.epoch);
                        prop_assert!(previous.is_none_or(|p| p <= arrival.epoch));
                        // It is the newest visible: no later message of the sender is visible.
                        for later in arrival.epoch + 1..=40 {
                            if let Some(t) = s.visible_at(arrival.sender, node, later) {
                                prop_assert!(t > now);
                            }
                        }
                    }
                }
            }
        }
    }
}
