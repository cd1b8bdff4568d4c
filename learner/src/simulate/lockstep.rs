//! The lockstep protocols: every node trains epoch `e`, messages move, every node takes them in
//! and closes its window, then epoch `e + 1` starts everywhere.
//!
//! - [`Protocol::Lockstep`]: each node receives its neighbours' epoch-`e` messages, in the
//!   order it lists its neighbours, and appends its own after them, as the paper's learner does.
//! - [`Protocol::Relay`]: gossip rounds relay every node's latest message hop by hop, the node's
//!   own message opens its window, and it takes in `intake` messages per epoch.

use std::sync::Arc;

use super::network::Network;
use super::{NodeMetrics, Phase, Protocol, RunContext, SimNode};
use crate::exchange::Fetch;
use crate::message::ModelMessage;
use crate::parallel::Workers;

pub(super) fn run(
    run: &RunContext<'_>,
    nodes: &mut [SimNode],
    workers: &Workers,
    on_epoch: &mut dyn FnMut(u64),
) -> Vec<NodeMetrics> {
    let config = run.config;
    let mut network = Network::new(
        run.graph.clone(),
        run.message_bytes,
        config.message_loss,
        config.seed ^ 0x5eed_1055,
    );
    let listeners = run.graph.listeners();
    let mut metrics = Vec::new();
    let mut published: Vec<Option<Arc<ModelMessage>>> = vec![None; nodes.len()];

    for epoch in 1..=config.epochs {
        {
            let mut jobs: Vec<(&mut SimNode, &mut Option<Arc<ModelMessage>>)> =
                nodes.iter_mut().zip(published.iter_mut()).collect();
            workers.for_each(&mut jobs, |(node, out)| {
                let before = node.train_epoch();
                let message = match config.protocol {
                    Protocol::Relay => {
                        let message = node.learner.end_epoch(&before, &node.weights);
                        node.store.offer(message.clone());
                        message
                    }
                    _ => node.learner.publish(&before, &node.weights),
                };
                **out = Some(message);
            });
        }
        match config.protocol {
            Protocol::Relay => {
                match config.fetch {
                    Fetch::Lacking => {
                        for _ in 0..config.rounds {
                            network.gossip_round(nodes);
                        }
                    }
                    Fetch::Intake => network.intake_exchange(nodes, config.intake),
                }
                for node in nodes.iter_mut() {
                    node.learner.take_in(&node.store, config.intake);
                }
            }
            _ => {
                let delivered = network.deliver_own(&published);
                for ((node, arrived), own) in nodes.iter_mut().zip(delivered).zip(&published) {
                    node.learner.drain(&arrived, config.intake);
                    node.learner
                        .record_own(own.clone().expect("every node published"));
                }
                for (node, listeners) in nodes.iter_mut().zip(&listeners) {
                    node.bytes_sent += run.message_bytes * listeners.len() as u64;
                }
            }
        }
        let mut rows: Vec<Vec<NodeMetrics>> = vec![Vec::new(); nodes.len()];
        {
            let mut jobs: Vec<(&mut SimNode, &mut Vec<NodeMetrics>)> =
                nodes.iter_mut().zip(rows.iter_mut()).collect();
            workers.for_each(&mut jobs, |(node, out)| {
                let aggregation_due = node.learner.aggregation_due();
                if run.due(epoch, aggregation_due).0 {
                    out.push(node.measure(run, epoch, Phase::Trained));
                }
                let aggregated = node.aggregate_if_due();
                if run.due(epoch, aggregated).1 {
                    out.push(node.measure(run, epoch, Phase::Aggregated));
                }
            });
        }
        metrics.extend(rows.into_iter().flatten());
        on_epoch(epoch);
    }
    metrics
}
