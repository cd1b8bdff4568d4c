//! The paper's protocol in virtual time: free-running nodes, each hearing only its own
//! neighbours, draining everything that became visible since its last drain after every epoch.
//!
//! The timetable ([`Schedule`]) is fixed by the seed, so the only question is the order in
//! which to compute the models. A node's next epoch (train, publish, drain, maybe aggregate) can
//! be computed once every message it will drain exists, that is once each neighbour has
//! computed the epoch whose message the timetable says is the newest visible then. Messages
//! only become visible strictly after they are published (a transfer takes time), so the node
//! whose next drain comes first in virtual time is always ready: the run never stalls. Every
//! pass computes all ready nodes at once on the worker threads (a conservative parallel
//! discrete-event simulation); what each computes depends only on the timetable and on
//! messages that already exist, so any thread count gives the same results.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::clock::{Schedule, ScheduleInputs};
use super::{NodeMetrics, Phase, RunContext, SimNode};
use crate::message::ModelMessage;
use crate::parallel::Workers;

/// One node's next epoch, ready to compute.
struct Job<'a> {
    node: &'a mut SimNode,
    epoch: u64,
    /// What it drains, in the order it arrived.
    arrived: Vec<Arc<ModelMessage>>,
    /// Filled in by the worker.
    published: Option<Arc<ModelMessage>>,
    rows: Vec<NodeMetrics>,
}

pub(super) fn run(
    run: &RunContext<'_>,
    nodes: &mut [SimNode],
    workers: &Workers,
    on_epoch: &mut dyn FnMut(u64),
) -> Vec<NodeMetrics> {
    let config = run.config;
    let train_samples: Vec<usize> = nodes.iter().map(|n| n.shard.train.len()).collect();
    let schedule = Schedule::new(ScheduleInputs {
        graph: run.graph,
        train_samples: &train_samples,
        epochs: config.epochs,
        window: config.window,
        timing: config.timing,
        message_bytes: run.message_bytes,
        loss: config.message_loss,
        seed: config.seed,
    });
    assert!(
        schedule.min_delay() > 0.0,
        "a message needs time to travel, or the timetable is not causal"
    );
    let listeners = run.graph.listeners();
    let count = nodes.len();
    // Epochs each node has computed, and the messages some node may still drain.
    let mut done = vec![0u64; count];
    let mut history: Vec<BTreeMap<u64, Arc<ModelMessage>>> = vec![BTreeMap::new(); count];
    // For each sender and each of its listeners, the oldest epoch that listener may still
    // drain: the newest it drained last time (drains never go back).
    let mut oldest_needed: Vec<BTreeMap<usize, u64>> = listeners
        .iter()
        .map(|l| l.iter().map(|&listener| (listener, 1)).collect())
        .collect();
    let mut metrics = Vec::new();
    let mut reported = 0;

    while done.iter().any(|&d| d < config.epochs) {
        let mut plans: Vec<(usize, u64, Vec<Arc<ModelMessage>>)> = Vec::new();
        for node in 0..count {
            let epoch = done[node] + 1;
            if epoch > config.epochs {
                continue;
            }
            let arrivals = schedule.drain(node, epoch);
            if arrivals.iter().all(|a| done[a.sender] >= a.epoch) {
                for arrival in &arrivals {
                    oldest_needed[arrival.sender].insert(node, arrival.epoch);
                }
                let arrived = arrivals
                    .iter()
                    .map(|a| history[a.sender][&a.epoch].clone())
                    .collect();
                plans.push((node, epoch, arrived));
            }
        }
        assert!(!plans.is_empty(), "the earliest drain is always ready");

        let mut jobs: Vec<Job<'_>> = Vec::with_capacity(plans.len());
        {
            let mut plans = plans.into_iter().peekable();
            for (index, node) in nodes.iter_mut().enumerate() {
                if plans.peek().is_some_and(|p| p.0 == index) {
                    let (_, epoch, arrived) = plans.next().expect("peeked");
                    jobs.push(Job {
                        node,
                        epoch,
                        arrived,
                        published: None,
                        rows: Vec::new(),
                    });
                }
            }
        }
        workers.for_each(&mut jobs, |job| {
            let node = &mut *job.node;
            let before = node.train_epoch();
            let message = node.learner.publish(&before, &node.weights);
            node.learner.drain(&job.arrived, config.intake);
            node.learner.record_own(message.clone());
            node.bytes_sent = job.epoch * listeners[node.index].len() as u64 * run.message_bytes;
            let aggregation_due = node.learner.aggregation_due();
            if run.due(job.epoch, aggregation_due).0 {
                job.rows.push(node.measure(run, job.epoch, Phase::Trained));
            }
            let aggregated = node.aggregate_if_due();
            if run.due(job.epoch, aggregated).1 {
                job.rows
                    .push(node.measure(run, job.epoch, Phase::Aggregated));
            }
            job.published = Some(message);
        });
        for job in jobs {
            let index = job.node.index;
            done[index] = job.epoch;
            history[index].insert(job.epoch, job.published.expect("computed"));
            if job.epoch == config.epochs {
                // A finished node drains nothing more.
                for &sender in &run.graph.neighbours[index] {
                    oldest_needed[sender].insert(index, u64::MAX);
                }
            }
            metrics.extend(job.rows);
        }
        // Forget the messages no listener can drain any more.
        for (sender, kept) in history.iter_mut().enumerate() {
            let floor = oldest_needed[sender]
                .values()
                .copied()
                .min()
                .unwrap_or(u64::MAX);
            kept.retain(|&epoch, _| epoch >= floor);
        }
        let everywhere = done.iter().copied().min().unwrap_or(0);
        while reported < everywhere {
            reported += 1;
            on_epoch(reported);
        }
    }
    metrics.sort_by_key(|m| (m.epoch, m.node, m.phase));
    metrics
}
