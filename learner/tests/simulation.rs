//! The simulator end to end on the committed Fashion-MNIST subset.

use learner::aggregate::Method;
use learner::backend::BackendKind;
use learner::data::{self, Partition};
use learner::model::ModelKind;
use learner::simulate::{self, SimulationConfig};
use learner::topology::Topology;
use learner::trainer::TrainConfig;

fn config(method: Method) -> SimulationConfig {
    SimulationConfig {
        nodes: 4,
        method,
        train: TrainConfig {
            model: ModelKind::Mlp,
            backend: BackendKind::Flex,
            batch_size: 32,
            learning_rate: 1e-3,
        },
        epochs: 6,
        window: 2,
        topology: Topology::Ring,
        rounds: 2,
        message_loss: 0.0,
        intake: None,
        fetch: learner::exchange::Fetch::Lacking,
        partition: Partition::Iid,
        seed: 11,
        eval_samples: None,
        threads: 2,
    }
}

#[test]
fn every_node_learns_well_above_chance_and_hears_its_peers() {
    let splits = data::load(Some(&learner::fixture_dir())).unwrap();
    for method in [Method::DeltaSum, Method::Average, Method::VarianceCorrected] {
        let run = simulate::run(&config(method), &splits, |_| {});
        let finals: Vec<_> = run.metrics.iter().filter(|m| m.epoch == 6).collect();
        assert_eq!(finals.len(), 4, "{method}: one final row per node");
        for m in &finals {
            assert!(
                m.test.accuracy > 0.5,
                "{method}: node {} ended at {:.3} (chance is 0.1)",
                m.node,
                m.test.accuracy
            );
            assert_eq!(
                m.senders_heard, 4,
                "{method}: a ring of 4 with 2 hops hears everyone"
            );
            assert!(m.bytes_sent > 0);
        }
        // Evaluations after every window: epochs 2, 4 and 6.
        let epochs: std::collections::BTreeSet<u64> = run.metrics.iter().map(|m| m.epoch).collect();
        assert_eq!(epochs.into_iter().collect::<Vec<_>>(), vec![2, 4, 6]);
    }
}

#[test]
fn the_same_seed_gives_the_same_results() {
    let splits = data::load(Some(&learner::fixture_dir())).unwrap();
    let first = simulate::run(&config(Method::DeltaSum), &splits, |_| {});
    let second = simulate::run(&config(Method::DeltaSum), &splits, |_| {});
    assert_eq!(first.metrics, second.metrics);
    let mut other_seed = config(Method::DeltaSum);
    other_seed.seed = 12;
    assert_ne!(
        simulate::run(&other_seed, &splits, |_| {}).metrics,
        first.metrics
    );
}

#[test]
fn the_report_has_metrics_a_summary_and_plots() {
    let splits = data::load(Some(&learner::fixture_dir())).unwrap();
    let mut runs = Vec::new();
    for nodes in [2, 4] {
        let mut small = config(Method::Average);
        small.nodes = nodes;
        small.epochs = 2;
        runs.push(simulate::run(&small, &splits, |_| {}));
    }
    let dir = tempfile::tempdir().unwrap();
    let summary = simulate::write_report(dir.path(), &runs).unwrap();
    assert_eq!(summary.len(), 2);
    assert_eq!(summary[0].drop, 0.0, "the smallest size is the reference");
    assert!((summary[1].drop - (summary[0].final_median - summary[1].final_median)).abs() < 1e-12);
    let csv = std::fs::read_to_string(dir.path().join("summary.csv")).unwrap();
    assert!(csv.starts_with("method,nodes,final_min,final_median,final_max,drop,bytes_per_node\n"));
    let metrics = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
    assert_eq!(
        metrics.lines().count(),
        1 + 2 + 4,
        "header + one row per node per evaluation"
    );
    // Reading the metrics back gives the same summary (the --from-metrics path).
    let reread = simulate::read_metrics(&[dir.path().join("metrics.csv")]).unwrap();
    let again = simulate::summarize(&reread);
    for (original, reread) in summary.iter().zip(&again) {
        assert_eq!(
            (original.method, original.nodes),
            (reread.method, reread.nodes)
        );
        assert!((original.final_median - reread.final_median).abs() < 1e-4);
        assert_eq!(original.bytes_per_node, reread.bytes_per_node);
    }
    for plot in ["accuracy-2.svg", "accuracy-4.svg", "final-accuracy.svg"] {
        let svg = std::fs::read_to_string(dir.path().join(plot)).unwrap();
        assert!(svg.contains("<svg") && svg.contains("average"), "{plot}");
    }
}

#[test]
fn fetching_only_the_intake_learns_as_well_on_a_fraction_of_the_bytes() {
    let splits = data::load(Some(&learner::fixture_dir())).unwrap();
    let mut lacking = config(Method::DeltaSum);
    lacking.intake = Some(1);
    lacking.epochs = 10;
    let intake = SimulationConfig {
        fetch: learner::exchange::Fetch::Intake,
        ..lacking.clone()
    };
    let finals = |run: &simulate::RunResult| -> Vec<(f64, u64)> {
        run.metrics
            .iter()
            .filter(|m| m.epoch == 10)
            .map(|m| (m.test.accuracy, m.bytes_sent))
            .collect()
    };
    let lacking = finals(&simulate::run(&lacking, &splits, |_| {}));
    let intake = finals(&simulate::run(&intake, &splits, |_| {}));
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
