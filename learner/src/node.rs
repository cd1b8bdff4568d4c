//! The learner node as a sans-IO state machine: it is told when a local epoch ended and when a
//! message arrived, and it answers with the message to publish and, at window boundaries, the
//! weights to continue from. Training, transport and clocks live outside, so the simulator and
//! the real workload drive the very same code.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::aggregate::{AggregationInput, Aggregator, Method, SenderWindow};
use crate::gossip::LatestMessages;
use crate::message::{ModelMessage, SenderId};

/// A node's fixed parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeConfig {
    pub id: SenderId,
    pub method: Method,
    /// Aggregate every `window` local epochs (and at the last one).
    pub window: u64,
    /// Local epochs in the whole run.
    pub epochs: u64,
}

/// What happened to a received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// Newer than anything seen from its sender: it counts in the current window.
    Accepted,
    /// Not newer than the last message processed from its sender (a duplicate or a straggler).
    Stale,
    /// This node's own message coming back through gossip.
    Own,
}

/// The result of a window closing.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregation {
    pub weights: Vec<f32>,
    /// How many senders (this node included) the window heard from.
    pub senders_heard: usize,
    /// Who they were, in the order first heard.
    pub senders: Vec<SenderId>,
}

#[derive(Debug, Clone)]
struct WindowEntry {
    first: Arc<ModelMessage>,
    last: Arc<ModelMessage>,
}

/// One learner's gossip state.
#[derive(Debug)]
pub struct LearnerNode {
    config: NodeConfig,
    aggregator: Box<dyn Aggregator>,
    layout: Vec<usize>,
    epoch: u64,
    last_seen: BTreeMap<SenderId, u64>,
    /// Senders heard in the current window, in the order first heard.
    window: Vec<(SenderId, WindowEntry)>,
    /// The local epoch at which each sender's latest message was taken in, for fair intake.
    taken_at: BTreeMap<SenderId, u64>,
}

impl LearnerNode {
    pub fn new(config: NodeConfig, layout: Vec<usize>) -> Self {
        assert!(config.window > 0, "a window of at least one epoch");
        Self {
            aggregator: config.method.aggregator(),
            config,
            layout,
            epoch: 0,
            last_seen: BTreeMap::new(),
            window: Vec::new(),
            taken_at: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Local epochs completed.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Continues a run that got as far as `epoch` elsewhere (a checkpoint, or the replica's own
    /// latest message held by a peer): the next message is stamped `epoch + 1`, so peers take
    /// it as newer than anything the earlier run sent. The open window starts empty.
    pub fn resume(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.last_seen.insert(self.config.id, epoch);
    }

    pub fn is_finished(&self) -> bool {
        self.epoch >= self.config.epochs
    }

    /// Senders heard so far in the open window.
    pub fn senders_in_window(&self) -> usize {
        self.window.len()
    }

    /// Records a finished local epoch that took the weights from `before` to `after`, and returns
    /// the message to publish (already counted in this node's own window).
    pub fn end_epoch(&mut self, before: &[f32], after: &[f32]) -> Arc<ModelMessage> {
        let message = self.publish(before, after);
        self.record_own(message.clone());
        message
    }

    /// The message for a finished local epoch, not yet counted in this node's window: the
    /// paper's learner drains its peers' messages first and appends its own after them
    /// ([`Self::record_own`]), which decides whose base the in-place quirk overwrites.
    pub fn publish(&mut self, before: &[f32], after: &[f32]) -> Arc<ModelMessage> {
        self.epoch += 1;
        Arc::new(ModelMessage::from_epoch(
            self.config.id,
            self.epoch,
            before,
            after,
        ))
    }

    /// Counts this node's own published message in its window.
    pub fn record_own(&mut self, message: Arc<ModelMessage>) {
        debug_assert_eq!(message.sender, self.config.id);
        self.record(message);
    }

    /// Takes in the peer messages that arrived since the last drain, in the order they arrived:
    /// every one newer than what was processed from its sender, or, with a `limit`, that many,
    /// senders waited on longest first. Returns how many were accepted.
    pub fn drain(&mut self, arrived: &[Arc<ModelMessage>], limit: Option<usize>) -> usize {
        let chosen: Vec<&Arc<ModelMessage>> = match limit {
            None => arrived.iter().collect(),
            Some(limit) => {
                let mut order = self.intake_order(arrived.iter().map(|m| (m.sender, m.timestamp)));
                order.truncate(limit);
                order
                    .into_iter()
                    .filter_map(|sender| {
                        arrived
                            .iter()
                            .filter(|m| m.sender == sender)
                            .max_by_key(|m| m.timestamp)
                    })
                    .collect()
            }
        };
        let mut accepted = 0;
        for message in chosen {
            self.taken_at.insert(message.sender, self.epoch);
            if self.receive(message.clone()) == Receipt::Accepted {
                accepted += 1;
            }
        }
        accepted
    }

    /// Takes in a peer's message.
    pub fn receive(&mut self, message: Arc<ModelMessage>) -> Receipt {
        if message.sender == self.config.id {
            return Receipt::Own;
        }
        if self
            .last_seen
            .get(&message.sender)
            .is_some_and(|&seen| message.timestamp <= seen)
        {
            return Receipt::Stale;
        }
        self.record(message);
        Receipt::Accepted
    }

    /// Takes in up to `limit` messages from `store` that are newer than what this node has
    /// processed (all of them when `limit` is `None`), senders waited on longest first; returns
    /// how many were accepted.
    ///
    /// The limit models a learner that digests a bounded number of peer models per epoch, as
    /// the reference implementation's learner did (one per epoch). It matters for Delta Sum:
    /// the rule *sums* the deltas of every sender heard in a window, so hearing all N senders
    /// scales the step with N.
    pub fn take_in(&mut self, store: &LatestMessages, limit: Option<usize>) -> usize {
        let offers = store.messages().map(|m| (m.sender, m.timestamp));
        let mut chosen = self.intake_order(offers);
        chosen.truncate(limit.unwrap_or(usize::MAX));
        let by_sender: BTreeMap<SenderId, &Arc<ModelMessage>> =
            store.messages().map(|m| (m.sender, m)).collect();
        let mut accepted = 0;
        for sender in chosen {
            self.taken_at.insert(sender, self.epoch);
            if self.receive(by_sender[&sender].clone()) == Receipt::Accepted {
                accepted += 1;
            }
        }
        accepted
    }

    /// The senders among `offers` (sender, timestamp) that this node would take in, in the
    /// order it would take them: only messages newer than what it processed from their sender,
    /// senders waited on longest first. Exchanges use it to fetch only what will be used.
    pub fn intake_order(&self, offers: impl IntoIterator<Item = (SenderId, u64)>) -> Vec<SenderId> {
        let mut pending: Vec<SenderId> = offers
            .into_iter()
            .filter(|&(sender, timestamp)| {
                sender != self.config.id
                    && self
                        .last_seen
                        .get(&sender)
                        .is_none_or(|&seen| timestamp > seen)
            })
            .map(|(sender, _)| sender)
            .collect();
        pending.sort_by_key(|sender| (self.taken_at.get(sender).copied(), *sender));
        pending.dedup();
        pending
    }

    /// Whether the epoch just ended closes a window.
    pub fn aggregation_due(&self) -> bool {
        self.epoch > 0
            && (self.epoch.is_multiple_of(self.config.window) || self.epoch == self.config.epochs)
    }

    /// Closes the window if one is due: aggregates over what it heard, then clears it.
    pub fn aggregate_if_due(&mut self, own_weights: &[f32]) -> Option<Aggregation> {
        if !self.aggregation_due() || self.window.is_empty() {
            return None;
        }
        let windows: Vec<SenderWindow<'_>> = self
            .window
            .iter()
            .map(|(_, entry)| SenderWindow::new(&entry.first, &entry.last))
            .collect();
        let input = AggregationInput {
            own_id: self.config.id,
            own_weights,
            senders: &windows,
            epoch: self.epoch,
            layout: &self.layout,
        };
        let weights = self.aggregator.aggregate(&input);
        let senders: Vec<SenderId> = self.window.iter().map(|(id, _)| *id).collect();
        self.window.clear();
        Some(Aggregation {
            weights,
            senders_heard: senders.len(),
            senders,
        })
    }

    /// Bytes one message occupies on the wire under this node's rule.
    pub fn message_bytes(&self, params: usize) -> u64 {
        crate::message::HEADER_BYTES + self.aggregator.tensors_per_message() * params as u64 * 4
    }

    fn record(&mut self, message: Arc<ModelMessage>) {
        self.last_seen.insert(message.sender, message.timestamp);
        match self.window.iter_mut().find(|(id, _)| *id == message.sender) {
            Some((_, entry)) => entry.last = message,
            None => self.window.push((
                message.sender,
                WindowEntry {
                    first: message.clone(),
                    last: message,
                },
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(method: Method) -> LearnerNode {
        LearnerNode::new(
            NodeConfig {
                id: 0,
                method,
                window: 3,
                epochs: 7,
            },
            vec![2],
        )
    }

    fn peer(
        sender: SenderId,
        timestamp: u64,
        base: [f32; 2],
        delta: [f32; 2],
    ) -> Arc<ModelMessage> {
        Arc::new(ModelMessage {
            sender,
            timestamp,
            base: Arc::from(&base[..]),
            delta: Arc::from(&delta[..]),
        })
    }

    #[test]
    fn duplicates_stale_and_own_messages_are_ignored() {
        let mut node = node(Method::Average);
        assert_eq!(
            node.receive(peer(1, 5, [0.0; 2], [0.0; 2])),
            Receipt::Accepted
        );
        assert_eq!(node.receive(peer(1, 5, [0.0; 2], [0.0; 2])), Receipt::Stale);
        assert_eq!(node.receive(peer(1, 4, [0.0; 2], [0.0; 2])), Receipt::Stale);
        assert_eq!(node.receive(peer(0, 99, [0.0; 2], [0.0; 2])), Receipt::Own);
        assert_eq!(
            node.receive(peer(1, 6, [0.0; 2], [0.0; 2])),
            Receipt::Accepted
        );
        assert_eq!(node.senders_in_window(), 1);
    }

    #[test]
    fn aggregates_every_window_epochs_and_at_the_last_epoch() {
        let mut node = node(Method::Average);
        let mut due = Vec::new();
        for _ in 0..7 {
            node.end_epoch(&[0.0, 0.0], &[1.0, 1.0]);
            if node.aggregate_if_due(&[1.0, 1.0]).is_some() {
                due.push(node.epoch());
            }
        }
        assert_eq!(due, vec![3, 6, 7]);
        assert!(node.is_finished());
    }

    #[test]
    fn a_window_uses_the_first_and_last_message_per_sender_then_clears() {
        let mut node = node(Method::DeltaSum);
        node.end_epoch(&[0.0, 0.0], &[0.0, 0.0]);
        node.receive(peer(1, 1, [2.0, 2.0], [1.0, 0.0]));
        node.end_epoch(&[0.0, 0.0], &[0.0, 0.0]);
        node.receive(peer(1, 2, [3.0, 2.0], [0.0, 1.0]));
        node.receive(peer(2, 2, [4.0, 4.0], [0.0, 0.0]));
        node.end_epoch(&[0.0, 0.0], &[0.0, 0.0]);
        let result = node
            .aggregate_if_due(&[0.0, 0.0])
            .expect("epoch 3 closes the window");
        assert_eq!(result.senders_heard, 3);
        // bases of first messages: [0,0], [2,2], [4,4] -> mean [2,2]. Deltas: own 0; node 1:
        // ([3,2] - [2,2]) + [0,1] = [1,1]; node 2: 0. lambda(3) = 0.153.
        let expected = [2.0 + 0.153, 2.0 + 0.153];
        for (got, want) in result.weights.iter().zip(expected) {
            assert!((got - want).abs() < 1e-5, "{:?}", result.weights);
        }
        assert_eq!(node.senders_in_window(), 0);
        assert_eq!(node.receive(peer(1, 2, [0.0; 2], [0.0; 2])), Receipt::Stale);
    }

    #[test]
    fn intake_takes_the_longest_waiting_senders_first_up_to_the_limit() {
        let mut node = node(Method::DeltaSum);
        let mut store = LatestMessages::default();
        for sender in [1, 2, 3] {
            store.offer(peer(sender, 1, [0.0; 2], [0.0; 2]));
        }
        store.offer(peer(0, 1, [0.0; 2], [0.0; 2]));
        assert_eq!(node.take_in(&store, Some(1)), 1); // sender 1 (never taken, lowest id)
        node.end_epoch(&[0.0; 2], &[0.0; 2]);
        assert_eq!(node.take_in(&store, Some(1)), 1); // sender 2
        for sender in [1, 2, 3] {
            store.offer(peer(sender, 2, [0.0; 2], [0.0; 2]));
        }
        node.end_epoch(&[0.0; 2], &[0.0; 2]);
        // Sender 3 never taken comes before 1 and 2, which were.
        assert_eq!(node.take_in(&store, Some(1)), 1);
        assert_eq!(node.last_seen.get(&3), Some(&2));
        assert_eq!(node.take_in(&store, None), 2);
        assert_eq!(node.take_in(&store, None), 0, "nothing newer left");
    }

    #[test]
    fn message_size_depends_on_the_rule() {
        assert_eq!(node(Method::DeltaSum).message_bytes(10), 16 + 80);
        assert_eq!(node(Method::Average).message_bytes(10), 16 + 40);
    }

    #[test]
    fn a_drain_takes_everything_new_in_arrival_order_then_the_own_message() {
        let mut node = node(Method::DeltaSum);
        let own = node.publish(&[0.0; 2], &[0.0; 2]);
        let arrived = [
            peer(2, 1, [0.0; 2], [0.0; 2]),
            peer(1, 1, [0.0; 2], [0.0; 2]),
        ];
        assert_eq!(node.drain(&arrived, None), 2);
        node.record_own(own);
        let order: Vec<SenderId> = node.window.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            order,
            vec![2, 1, 0],
            "remotes in the order drained, then the node"
        );
        // The same messages again are stale; a newer one from 1 is taken exactly once.
        let again = [
            peer(1, 1, [0.0; 2], [0.0; 2]),
            peer(1, 2, [0.0; 2], [0.0; 2]),
        ];
        assert_eq!(node.drain(&again, None), 1);
        assert_eq!(node.drain(&again, None), 0);
    }

    #[test]
    fn a_limited_drain_takes_the_longest_waiting_senders() {
        let mut node = node(Method::Average);
        node.end_epoch(&[0.0; 2], &[0.0; 2]);
        let arrived = [
            peer(3, 1, [0.0; 2], [0.0; 2]),
            peer(1, 1, [0.0; 2], [0.0; 2]),
        ];
        assert_eq!(node.drain(&arrived, Some(1)), 1);
        assert_eq!(
            node.last_seen.get(&1),
            Some(&1),
            "never taken, lowest id first"
        );
        assert_eq!(node.drain(&arrived, Some(1)), 1);
        assert_eq!(node.last_seen.get(&3), Some(&1));
    }
}
