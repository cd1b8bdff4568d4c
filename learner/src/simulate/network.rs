//! The simulated network of the lockstep protocols: moves messages between the nodes' stores
//! over the gossip graph, counts the bytes each sender puts on the wire, and loses transfers at
//! random.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::SimNode;
use crate::exchange::{Fetch, plan_fetches};
use crate::gossip::{DIGEST_ENTRY_BYTES, LatestMessages};
use crate::message::ModelMessage;
use crate::topology::Graph;

pub(super) struct Network {
    graph: Graph,
    wire: Wire,
}

/// What one message transfer costs and how likely it is to be lost.
struct Wire {
    message_bytes: u64,
    loss: f64,
    rng: StdRng,
}

/// One exchange in progress: every store as it stood when the exchange began (the sources, so a
/// message travels one hop per exchange) and the bytes each node has sent in it so far.
struct Exchange {
    sources: Vec<LatestMessages>,
    sent: Vec<u64>,
}

impl Network {
    pub(super) fn new(graph: Graph, message_bytes: u64, loss: f64, loss_seed: u64) -> Self {
        Self {
            graph,
            wire: Wire {
                message_bytes,
                loss,
                rng: StdRng::seed_from_u64(loss_seed),
            },
        }
    }

    /// One synchronous round: every node pulls, from each neighbour in turn, the messages its
    /// digest lacks. The puller's digest is refreshed between neighbours, so it never fetches
    /// the same message twice in a round.
    pub(super) fn gossip_round(&mut self, nodes: &mut [SimNode]) {
        let mut exchange = Exchange::begin(nodes);
        for (index, neighbours) in self.graph.neighbours.iter().enumerate() {
            for &peer in neighbours {
                let digest = nodes[index].store.digest();
                exchange.sent[index] += digest.len() as u64 * DIGEST_ENTRY_BYTES;
                let wanted = exchange.sources[peer].newer_than(&digest);
                exchange.deliver(nodes, (peer, index), wanted, &mut self.wire);
            }
        }
        exchange.finish(nodes);
    }

    /// One exchange per epoch in which every node fetches only what it will take in (see
    /// [`Fetch::Intake`]), planned on its neighbours' digests as they stood after training.
    pub(super) fn intake_exchange(&mut self, nodes: &mut [SimNode], intake: Option<usize>) {
        let mut exchange = Exchange::begin(nodes);
        for (index, neighbours) in self.graph.neighbours.iter().enumerate() {
            let offers: Vec<_> = neighbours
                .iter()
                .map(|&p| exchange.sources[p].digest())
                .collect();
            let held = nodes[index].store.digest();
            // Asking for a digest costs the asker nothing but the request; the answer is the
            // neighbour's digest.
            for (&peer, offer) in neighbours.iter().zip(&offers) {
                exchange.sent[peer] += offer.len() as u64 * DIGEST_ENTRY_BYTES;
            }
            let plan = plan_fetches(Fetch::Intake, &nodes[index].learner, intake, &held, &offers);
            for (neighbour, senders) in plan {
                let peer = neighbours[neighbour];
                let fetched = exchange.sources[peer].from_senders(&senders);
                exchange.deliver(nodes, (peer, index), fetched, &mut self.wire);
            }
        }
        exchange.finish(nodes);
    }
}

impl Network {
    /// The lockstep exchange of the paper's protocol: every node receives, from each node it
    /// hears, that node's own message of this epoch (no relay), unless the wire loses it.
    /// The caller counts the bytes: one transfer per listener, lost or not.
    pub(super) fn deliver_own(
        &mut self,
        published: &[Option<Arc<ModelMessage>>],
    ) -> Vec<Vec<Arc<ModelMessage>>> {
        let wire = &mut self.wire;
        self.graph
            .neighbours
            .iter()
            .map(|heard| {
                heard
                    .iter()
                    .filter_map(|&sender| published[sender].clone())
                    .filter(|_| !wire.lost())
                    .collect()
            })
            .collect()
    }
}

impl Wire {
    fn lost(&mut self) -> bool {
        self.loss > 0.0 && self.rng.random_bool(self.loss)
    }
}

impl Exchange {
    fn begin(nodes: &[SimNode]) -> Self {
        Self {
            sources: nodes.iter().map(|n| n.store.clone()).collect(),
            sent: vec![0; nodes.len()],
        }
    }

    /// Moves `messages` from node `from` to node `to`, counting each for the sender whether or
    /// not the wire loses it.
    fn deliver(
        &mut self,
        nodes: &mut [SimNode],
        (from, to): (usize, usize),
        messages: Vec<Arc<ModelMessage>>,
        wire: &mut Wire,
    ) {
        for message in messages {
            self.sent[from] += wire.message_bytes;
            if wire.lost() {
                continue;
            }
            nodes[to].store.offer(message);
        }
    }

    fn finish(self, nodes: &mut [SimNode]) {
        for (node, bytes) in nodes.iter_mut().zip(self.sent) {
            node.bytes_sent += bytes;
        }
    }
}
