//! The simulator end to end on the committed Fashion-MNIST subset.

use std::collections::BTreeSet;

use learner::aggregate::Method;
use learner::backend::BackendKind;
use learner::data::{self, Partition, Splits};
use learner::model::ModelKind;
use learner::simulate::{self, EvalMode, Phase, Protocol, RunResult, SimulationConfig, Timing};
use learner::topology::{Graph, Topology};
use learner::trainer::TrainConfig;

fn splits() -> Splits {
    data::load(Some(&learner::fixture_dir())).unwrap()
}

/// The paper's protocol on a small geometric graph.
fn paper(method: Method) -> SimulationConfig {
    SimulationConfig {
        nodes: 5,
        method,
        train: TrainConfig {
            model: ModelKind::Mlp,
            backend: BackendKind::Flex,
            batch_size: 32,
            learning_rate: 1e-3,
        },
        epochs: 6,
        window: 2,
        protocol: Protocol::Paper,
        topology: Topology::Geometric { ping_spread: 0.2 },
        timing: Timing::default(),
        rounds: 2,
        message_loss: 0.0,
        intake: None,
        fetch: learner::exchange::Fetch::Lacking,
        partition: Partition::Iid,
        seed: 11,
        eval: EvalMode::Windows,
        eval_samples: None,
        threads: 2,
    }
}

/// The earlier relay protocol on a ring of four.
fn relay(method: Method) -> SimulationConfig {
    SimulationConfig {
        nodes: 4,
        protocol: Protocol::Relay,
        topology: Topology::Ring,
        ..paper(method)
    }
}

fn run(config: &SimulationConfig, splits: &Splits) -> RunResult {
    simulate::run(config, splits, |_| {}).unwrap()
}

fn finals(run: &RunResult, phase: Phase) -> Vec<&simulate::NodeMetrics> {
    run.metrics
        .iter()
        .filter(|m| m.epoch == run.config.epochs && m.phase == phase)
        .collect()
}

#[test]
fn under_the_papers_protocol_every_node_learns_and_hears_only_its_neighbours() {
    let splits = splits();
    for method in [Method::DeltaSumInPlace, Method::Average] {
        let config = paper(method);
        let graph = Graph::build(&config.topology, config.nodes, config.seed).unwrap();
        let result = run(&config, &splits);
        let finals = finals(&result, Phase::Aggregated);
        assert_eq!(finals.len(), 5, "{method}: one final row per node");
        for m in &finals {
            assert!(
                m.test.accuracy > 0.5,
                "{method}: node {} ended at {:.3} (chance is 0.1)",
                m.node,
                m.test.accuracy
            );
            // No relay: a window holds at most the node's neighbours and itself.
            let neighbours = graph.neighbours[m.node].len();
            assert!(
                (1..=neighbours + 1).contains(&m.senders_heard),
                "{method}: node {} heard {} senders with {neighbours} neighbours",
                m.node,
                m.senders_heard
            );
            let listeners = graph.listeners()[m.node].len() as u64;
            assert_eq!(m.bytes_sent, 6 * listeners * message_bytes(&result));
        }
        // Under the default evaluation, also the paper's figure right after the last training.
        assert_eq!(finals_len(&result, Phase::Trained), 5);
    }
}

fn finals_len(run: &RunResult, phase: Phase) -> usize {
    finals(run, phase).len()
}

/// One message on the wire: a 16-byte header and base + delta for Delta Sum, the model alone
/// for averaging.
fn message_bytes(run: &RunResult) -> u64 {
    let tensors = if matches!(run.config.method, Method::Average) {
        1
    } else {
        2
    };
    16 + tensors * 4 * 101_770
}

#[test]
fn the_same_seed_gives_the_same_run_on_any_thread_count() {
    let splits = splits();
    let two = run(&paper(Method::DeltaSum), &splits);
    let one = run(
        &SimulationConfig {
            threads: 1,
            ..paper(Method::DeltaSum)
        },
        &splits,
    );
    assert_eq!(one.metrics, two.metrics);
    let other_seed = run(
        &SimulationConfig {
            seed: 12,
            ..paper(Method::DeltaSum)
        },
        &splits,
    );
    assert_ne!(other_seed.metrics, two.metrics);
}

#[test]
fn paper_evaluation_measures_every_epoch_and_every_aggregation() {
    let splits = splits();
    let config = SimulationConfig {
        eval: EvalMode::Paper,
        epochs: 4,
        ..paper(Method::Average)
    };
    let result = run(&config, &splits);
    let trained: BTreeSet<u64> = result
        .metrics
        .iter()
        .filter(|m| m.phase == Phase::Trained)
        .map(|m| m.epoch)
        .collect();
    assert_eq!(trained.into_iter().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    let aggregated = result
        .metrics
        .iter()
        .filter(|m| m.phase == Phase::Aggregated)
        .count();
    // Windows close at epochs 2 and 4 on all five nodes.
    assert_eq!(aggregated, 10);
}

#[test]
fn the_lockstep_and_relay_protocols_still_learn() {
    let splits = splits();
    for config in [
        SimulationConfig {
            protocol: Protocol::Lockstep,
            ..paper(Method::DeltaSum)
        },
        relay(Method::DeltaSum),
        relay(Method::VarianceCorrected),
    ] {
        let result = run(&config, &splits);
        for m in finals(&result, Phase::Aggregated) {
            assert!(
                m.test.accuracy > 0.5,
                "{} {}: node {} at {:.3}",
                config.protocol,
                config.method,
                m.node,
                m.test.accuracy
            );
            if config.protocol == Protocol::Relay {
                assert_eq!(m.senders_heard, 4, "a ring of 4 with 2 hops hears everyone");
            }
        }
    }
}

#[test]
fn the_report_has_metrics_a_summary_with_seeds_and_plots() {
    let splits = splits();
    let mut runs = Vec::new();
    for nodes in [2, 4] {
        for seed in [1, 2] {
            runs.push(run(
                &SimulationConfig {
                    nodes,
                    seed,
                    epochs: 2,
                    topology: Topology::Ring,
                    ..paper(Method::Average)
                },
                &splits,
            ));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let summary = simulate::write_report(dir.path(), &runs).unwrap();
    assert_eq!(summary.len(), 2);
    assert_eq!(summary[0].seeds(), 2);
    assert_eq!(summary[0].drop, 0.0, "the smallest size is the reference");
    let per_seed_drops: Vec<f64> = summary[1].per_seed.iter().map(|s| s.drop).collect();
    for (seed, drop) in summary[1].per_seed.iter().zip(&per_seed_drops) {
        let at_two = summary[0]
            .per_seed
            .iter()
            .find(|s| s.seed == seed.seed)
            .unwrap()
            .final_median;
        assert!((drop - (at_two - seed.final_median)).abs() < 1e-12);
    }
    assert!((summary[1].drop - per_seed_drops.iter().sum::<f64>() / 2.0).abs() < 1e-12);
    let csv = std::fs::read_to_string(dir.path().join("summary.csv")).unwrap();
    assert!(csv.starts_with(
        "method,nodes,seeds,final_median_mean,final_median_std,final_min,final_max,paper_median_mean"
    ));
    let metrics = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
    assert_eq!(
        metrics.lines().count(),
        1 + 2 * 2 * (2 + 4),
        "header + per seed, a trained and an aggregated row per node at the last epoch"
    );
    // Reading the metrics back gives the same summary (the --from-metrics path).
    let reread = simulate::read_metrics(&[dir.path().join("metrics.csv")]).unwrap();
    let again = simulate::summarize(&reread);
    for (original, reread) in summary.iter().zip(&again) {
        assert_eq!(
            (original.method, original.nodes, original.seeds()),
            (reread.method, reread.nodes, reread.seeds())
        );
        assert!((original.final_median - reread.final_median).abs() < 1e-4);
        assert!((original.paper_median - reread.paper_median).abs() < 1e-4);
        assert_eq!(original.bytes_per_node, reread.bytes_per_node);
        // graphs.csv beside metrics.csv brings the topology back too.
        assert_eq!(original.mean_degree, reread.mean_degree);
        assert_eq!(original.components, 1.0, "a ring is connected");
        assert_eq!(original.components, reread.components);
    }
    for plot in ["accuracy-2.svg", "accuracy-4.svg", "final-accuracy.svg"] {
        let svg = std::fs::read_to_string(dir.path().join(plot)).unwrap();
        assert!(svg.contains("<svg") && svg.contains("average"), "{plot}");
    }
}

#[test]
fn relay_fetching_only_the_intake_learns_as_well_on_a_fraction_of_the_bytes() {
    let splits = splits();
    let mut lacking = relay(Method::DeltaSum);
    lacking.intake = Some(1);
    lacking.epochs = 10;
    let intake = SimulationConfig {
        fetch: learner::exchange::Fetch::Intake,
        ..lacking.clone()
    };
    let finals = |run: &RunResult| -> Vec<(f64, u64)> {
        finals(run, Phase::Aggregated)
            .iter()
            .map(|m| (m.test.accuracy, m.bytes_sent))
            .collect()
    };
    let lacking = finals(&run(&lacking, &splits));
    let intake = finals(&run(&intake, &splits));
    let bytes = |rows: &[(f64, u64)]| rows.iter().map(|r| r.1).sum::<u64>();
    for (accuracy, _) in &intake {
        assert!(*accuracy > 0.5, "a node ended at {accuracy}");
    }
    // A ring of 4 over 2 rounds delivers all 3 peers' messages each epoch; intake 1 fetches
    // one of them.
    assert!(
        bytes(&intake) * 2 < bytes(&lacking),
        "intake {} vs lacking {} bytes",
        bytes(&intake),
        bytes(&lacking)
    );
}
