//! What a simulation leaves behind: per-node metrics, a summary per method and size (CSV and
//! Markdown), and plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::{NodeMetrics, RunResult, drops, plot};
use crate::aggregate::Method;

/// One method at one size, at the end of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub method: Method,
    pub nodes: usize,
    pub final_min: f64,
    pub final_median: f64,
    pub final_max: f64,
    /// Final median accuracy at the smallest size run with this method, minus at this size.
    pub drop: f64,
    pub bytes_per_node: f64,
    pub wall_seconds: f64,
}

/// The final test accuracies of a run, sorted.
fn final_accuracies(run: &RunResult) -> Vec<f64> {
    let last = run.metrics.iter().map(|m| m.epoch).max().unwrap_or(0);
    let mut accuracies: Vec<f64> = run
        .metrics
        .iter()
        .filter(|m| m.epoch == last)
        .map(|m| m.test.accuracy)
        .collect();
    accuracies.sort_by(f64::total_cmp);
    accuracies
}

/// The median of sorted values (mean of the middle two for an even count).
pub fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

pub fn summarize(runs: &[RunResult]) -> Vec<SummaryRow> {
    let mut rows: Vec<SummaryRow> = runs
        .iter()
        .map(|run| {
            let accuracies = final_accuracies(run);
            let last = run.metrics.iter().map(|m| m.epoch).max().unwrap_or(0);
            let finals: Vec<&NodeMetrics> =
                run.metrics.iter().filter(|m| m.epoch == last).collect();
            SummaryRow {
                method: run.config.method,
                nodes: run.config.nodes,
                final_min: accuracies.first().copied().unwrap_or(f64::NAN),
                final_median: median(&accuracies),
                final_max: accuracies.last().copied().unwrap_or(f64::NAN),
                drop: 0.0,
                bytes_per_node: finals.iter().map(|m| m.bytes_sent as f64).sum::<f64>()
                    / finals.len().max(1) as f64,
                wall_seconds: run.wall.as_secs_f64(),
            }
        })
        .collect();
    let mut smallest: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    for row in &rows {
        let entry = smallest
            .entry(row.method.name())
            .or_insert((row.nodes, row.final_median));
        if row.nodes < entry.0 {
            *entry = (row.nodes, row.final_median);
        }
    }
    for row in &mut rows {
        row.drop = smallest[row.method.name()].1 - row.final_median;
    }
    rows.sort_by_key(|row| (row.method.name(), row.nodes));
    rows
}

/// Writes `metrics.csv`, `summary.csv`, `summary.md` and the SVG plots into `dir`.
pub fn write_report(dir: &Path, runs: &[RunResult]) -> std::io::Result<Vec<SummaryRow>> {
    std::fs::create_dir_all(dir)?;
    let mut metrics = String::from(
        "method,nodes,node,epoch,test_accuracy,test_loss,validation_accuracy,senders_heard,bytes_sent\n",
    );
    for m in runs.iter().flat_map(|run| &run.metrics) {
        writeln!(
            metrics,
            "{},{},{},{},{:.4},{:.4},{:.4},{},{}",
            m.method,
            m.nodes,
            m.node,
            m.epoch,
            m.test.accuracy,
            m.test.loss,
            m.validation.accuracy,
            m.senders_heard,
            m.bytes_sent
        )
        .expect("writing to a string");
    }
    std::fs::write(dir.join("metrics.csv"), metrics)?;

    let summary = summarize(runs);
    let mut csv =
        String::from("method,nodes,final_min,final_median,final_max,drop,bytes_per_node\n");
    for row in &summary {
        writeln!(
            csv,
            "{},{},{:.4},{:.4},{:.4},{:.4},{:.0}",
            row.method,
            row.nodes,
            row.final_min,
            row.final_median,
            row.final_max,
            row.drop,
            row.bytes_per_node
        )
        .expect("writing to a string");
    }
    std::fs::write(dir.join("summary.csv"), csv)?;
    std::fs::write(dir.join("summary.md"), summary_markdown(&summary))?;
    plot::accuracy_over_epochs(dir, runs).map_err(|e| std::io::Error::other(e.to_string()))?;
    plot::final_accuracy_by_size(dir, &summary)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(summary)
}

/// Reads back `metrics.csv` files written by [`write_report`], one run per method and size, so a
/// finished experiment (or several) can be summarised and plotted again. Settings not recorded
/// in the file (seed, topology, ...) are left at the paper's protocol, wall times at zero.
pub fn read_metrics(paths: &[std::path::PathBuf]) -> std::io::Result<Vec<RunResult>> {
    let mut runs: BTreeMap<(String, usize), Vec<NodeMetrics>> = BTreeMap::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        for (index, line) in text.lines().enumerate().skip(1) {
            let bad = |what: &str| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}:{}: {what}", path.display(), index + 1),
                )
            };
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() != 9 {
                return Err(bad("expected 9 comma-separated fields"));
            }
            let number = |i: usize| -> std::io::Result<f64> {
                fields[i]
                    .parse()
                    .map_err(|_| bad(&format!("field {} is not a number", i + 1)))
            };
            let method: Method = fields[0].parse().map_err(|e: String| bad(&e))?;
            let metrics = NodeMetrics {
                method,
                nodes: number(1)? as usize,
                node: number(2)? as usize,
                epoch: number(3)? as u64,
                test: crate::trainer::Evaluation {
                    accuracy: number(4)?,
                    loss: number(5)?,
                },
                validation: crate::trainer::Evaluation {
                    accuracy: number(6)?,
                    loss: f64::NAN,
                },
                senders_heard: number(7)? as usize,
                bytes_sent: number(8)? as u64,
            };
            runs.entry((fields[0].to_string(), metrics.nodes))
                .or_default()
                .push(metrics);
        }
    }
    Ok(runs
        .into_values()
        .map(|metrics| {
            let mut config =
                super::SimulationConfig::paper_protocol(metrics[0].nodes, metrics[0].method);
            config.epochs = metrics.iter().map(|m| m.epoch).max().unwrap_or(0);
            RunResult {
                config,
                metrics,
                wall: std::time::Duration::ZERO,
            }
        })
        .collect())
}

/// The summary table followed by the paper's two claims computed from it (see [`drops`]).
pub fn summary_markdown(summary: &[SummaryRow]) -> String {
    markdown_table(summary) + &drops::markdown(summary)
}

/// The summary as a Markdown table (accuracies in percent).
fn markdown_table(summary: &[SummaryRow]) -> String {
    let mut out = String::from(
        "| method | nodes | final min | final median | final max | drop vs smallest | MB sent per node | wall time |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in summary {
        writeln!(
            out,
            "| {} | {} | {:.2}% | {:.2}% | {:.2}% | {:.2} pp | {:.1} | {} |",
            row.method,
            row.nodes,
            row.final_min * 100.0,
            row.final_median * 100.0,
            row.final_max * 100.0,
            row.drop * 100.0,
            row.bytes_per_node / 1e6,
            if row.wall_seconds > 0.0 {
                format!("{:.0} s", row.wall_seconds)
            } else {
                "-".to_string()
            }
        )
        .expect("writing to a string");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), 3.0);
        assert!(median(&[]).is_nan());
    }
}
