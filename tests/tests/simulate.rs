//! `gossipctl simulate` as a researcher runs it: the real binary on real (fixture) data.

use std::path::Path;

use e2e::gossipctl;

fn fixture() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../learner/tests/fixtures/fashion-mnist-small")
        .display()
        .to_string()
}

#[test]
fn simulate_writes_metrics_summary_and_plots() {
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().display().to_string();
    let data = fixture();
    let run = gossipctl(
        &[
            "simulate",
            "--model",
            "mlp",
            "--nodes",
            "3,6",
            "--methods",
            "delta-sum,average",
            "--epochs",
            "4",
            "--window",
            "2",
            "--batch-size",
            "32",
            "--data",
            &data,
            "--out",
            &out_dir,
        ],
        Path::new("/nonexistent"),
    )
    .ok();
    assert!(run.stdout.contains("| delta-sum | 6 |"), "{}", run.stdout);
    // Two rules at two sizes: the report states Delta Sum's drop as a multiple of averaging's.
    assert!(
        run.stdout.contains("| delta-sum | 3 -> 6 |"),
        "{}",
        run.stdout
    );
    let summary = std::fs::read_to_string(out.path().join("summary.csv")).unwrap();
    let rows: Vec<&str> = summary.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "{summary}");
    for row in rows {
        let median: f64 = row.split(',').nth(3).unwrap().parse().unwrap();
        assert!(median > 0.4, "every run learns well above chance: {row}");
    }
    for file in [
        "metrics.csv",
        "summary.md",
        "accuracy-3.svg",
        "accuracy-6.svg",
        "final-accuracy.svg",
    ] {
        assert!(out.path().join(file).is_file(), "{file} missing");
    }
}

#[test]
fn bad_simulate_flags_exit_2_with_a_specific_message() {
    let missing = gossipctl(
        &["simulate", "--data", "/nonexistent/fmnist", "--epochs", "1"],
        Path::new("/nonexistent"),
    );
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(
        missing.stderr.contains("/nonexistent/fmnist"),
        "{}",
        missing.stderr
    );
    assert!(
        missing.stderr.contains("dataset-fashion-mnist"),
        "{}",
        missing.stderr
    );

    let unknown = gossipctl(
        &["simulate", "--methods", "fedavg"],
        Path::new("/nonexistent"),
    );
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(
        unknown
            .stderr
            .contains("delta-sum, delta-sum-in-place, average"),
        "{}",
        unknown.stderr
    );

    let skew = gossipctl(
        &["simulate", "--partition", "dirichlet:-1"],
        Path::new("/nonexistent"),
    );
    assert_eq!(skew.code, 2, "{skew:?}");
    assert!(skew.stderr.contains("dirichlet:ALPHA"), "{}", skew.stderr);

    let loss = gossipctl(&["simulate", "--loss", "1.5"], Path::new("/nonexistent"));
    assert_eq!(loss.code, 2, "{loss:?}");
    assert!(loss.stderr.contains("--loss"), "{}", loss.stderr);
}
