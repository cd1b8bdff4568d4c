//! `gossipctl simulate` as a researcher runs it: the real binary on real (fixture) data.

use std::path::Path;

use e2e::gossipctl;

fn fixture() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../learner/tests/fixtures/fashion-mnist-small")
        .display()
        .to_string()
}

/// Runs the paper's protocol on the fixture: MLP, 3 and 6 nodes, two rules, two seeds.
fn simulate_paper(out: &Path) -> e2e::Run {
    gossipctl(
        &[
            "simulate",
            "--protocol",
            "paper",
            "--model",
            "mlp",
            "--nodes",
            "3,6",
            "--methods",
            "delta-sum-in-place,average",
            "--seeds",
            "1,2",
            "--epochs",
            "4",
            "--window",
            "2",
            "--batch-size",
            "32",
            "--data",
            &fixture(),
            "--out",
            out.to_str().unwrap(),
        ],
        Path::new("/nonexistent"),
    )
    .ok()
}

#[test]
fn simulate_under_the_papers_protocol_with_seeds_writes_intervals_and_repeats_exactly() {
    let out = tempfile::tempdir().unwrap();
    let run = simulate_paper(out.path());
    assert!(
        run.stdout.contains("| delta-sum-in-place | 6 | 2 |"),
        "{}",
        run.stdout
    );
    // Two rules at two sizes and two seeds: Delta Sum's drop as a multiple of averaging's,
    // with a bootstrap interval over the seeds.
    assert!(
        run.stdout.contains("| delta-sum-in-place | 3 -> 6 |"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("95% interval"), "{}", run.stdout);
    let summary = std::fs::read_to_string(out.path().join("summary.csv")).unwrap();
    let header: Vec<&str> = summary.lines().next().unwrap().split(',').collect();
    for column in [
        "seeds",
        "final_median_mean",
        "final_median_std",
        "drop_mean",
        "drop_std",
    ] {
        assert!(header.contains(&column), "{column} missing: {header:?}");
    }
    let rows: Vec<&str> = summary.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "{summary}");
    for row in &rows {
        let fields: Vec<&str> = row.split(',').collect();
        assert_eq!(fields[2], "2", "two seeds per cell: {row}");
        let median: f64 = fields[3].parse().unwrap();
        assert!(median > 0.4, "every cell learns well above chance: {row}");
    }
    // Every node of every run, not only the median, ends well above chance (0.1).
    let metrics = std::fs::read_to_string(out.path().join("metrics.csv")).unwrap();
    let finals = metrics
        .lines()
        .skip(1)
        .filter(|line| line.contains(",4,aggregated,"));
    let mut count = 0;
    for line in finals {
        let accuracy: f64 = line.split(',').nth(6).unwrap().parse().unwrap();
        assert!(accuracy > 0.3, "a node ended near chance: {line}");
        count += 1;
    }
    assert_eq!(
        count,
        2 * 2 * (3 + 6),
        "a final row per node, rule and seed"
    );
    let ratios = std::fs::read_to_string(out.path().join("ratios.csv")).unwrap();
    assert!(
        ratios.starts_with("method,from,nodes,drop,average_drop,ratio,ratio_low,ratio_high,seeds")
    );
    for file in [
        "summary.md",
        "accuracy-3.svg",
        "accuracy-6.svg",
        "final-accuracy.svg",
    ] {
        assert!(out.path().join(file).is_file(), "{file} missing");
    }

    // Same seeds, same numbers: a second run writes identical files.
    let again = tempfile::tempdir().unwrap();
    simulate_paper(again.path());
    for file in ["metrics.csv", "summary.csv", "ratios.csv"] {
        assert_eq!(
            std::fs::read(out.path().join(file)).unwrap(),
            std::fs::read(again.path().join(file)).unwrap(),
            "{file} differs between two runs"
        );
    }
}

#[test]
fn simulate_reads_the_authors_topology_files() {
    let out = tempfile::tempdir().unwrap();
    let topology = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../learner/tests/fixtures/flocky-topologies/f10.json");
    let run = gossipctl(
        &[
            "simulate",
            "--model",
            "mlp",
            "--nodes",
            "10",
            "--methods",
            "average",
            "--epochs",
            "2",
            "--window",
            "2",
            "--topology-file",
            topology.to_str().unwrap(),
            "--data",
            &fixture(),
            "--out",
            out.path().to_str().unwrap(),
        ],
        Path::new("/nonexistent"),
    )
    .ok();
    // The summary reports the graph: f10.json gives 3.8 neighbours on average, none isolated.
    assert!(run.stdout.contains("| 3.8 | 0.0 |"), "{}", run.stdout);

    let wrong_size = gossipctl(
        &[
            "simulate",
            "--nodes",
            "25",
            "--topology-file",
            topology.to_str().unwrap(),
        ],
        Path::new("/nonexistent"),
    );
    assert_eq!(wrong_size.code, 2, "{wrong_size:?}");
    assert!(
        wrong_size
            .stderr
            .contains("holds 10 nodes, but the run has 25"),
        "{}",
        wrong_size.stderr
    );
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
