//! What a simulation leaves behind: per-node metrics, a summary per method and size (CSV and
//! Markdown), and plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::{NodeMetrics, Phase, RunResult, drops, plot};
use crate::aggregate::Method;
use crate::topology::GraphStats;

/// One method at one size, over every seed run, at the end of the runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub method: Method,
    pub nodes: usize,
    /// Each seed's final median and drop, by seed.
    pub per_seed: Vec<SeedResult>,
    /// Lowest and highest final accuracy of any node in any seed.
    pub final_min: f64,
    pub final_max: f64,
    /// Mean over seeds of the median final accuracy across nodes (after the last aggregation).
    pub final_median: f64,
    pub final_median_std: f64,
    /// Mean over seeds of the authors' figure: right after the last epoch's training, values
    /// outside median +- 2 std dropped, then the median (NaN when not measured).
    pub paper_median: f64,
    pub paper_median_std: f64,
    /// Mean over seeds of: final median at the smallest size run with this method and seed,
    /// minus at this size.
    pub drop: f64,
    pub drop_std: f64,
    pub bytes_per_node: f64,
    /// The gossip graphs, averaged over seeds (NaN when read back from metrics alone).
    pub mean_degree: f64,
    pub isolated: f64,
    /// Connected pieces of the graph (1: connected).
    pub components: f64,
    pub diameter: f64,
    pub wall_seconds: f64,
}

impl SummaryRow {
    pub fn seeds(&self) -> usize {
        self.per_seed.len()
    }
}

/// One seed's result for one method at one size.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedResult {
    pub seed: u64,
    pub final_median: f64,
    pub paper_median: f64,
    pub drop: f64,
}

/// The final test accuracies of a run's nodes after `phase` at the last epoch, sorted.
fn final_accuracies(run: &RunResult, phase: Phase) -> Vec<f64> {
    let last = run.metrics.iter().map(|m| m.epoch).max().unwrap_or(0);
    let mut accuracies: Vec<f64> = run
        .metrics
        .iter()
        .filter(|m| m.epoch == last && m.phase == phase)
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

/// Mean and sample standard deviation (n - 1; 0 for a single value, NaN for none).
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt())
}

/// The authors' post-processing at one index (`dataprocess.py`): drop the values not strictly
/// within the median +- 2 sample standard deviations, then take the median of the rest.
pub fn paper_median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.len() < 2 {
        return median(&sorted);
    }
    let centre = median(&sorted);
    let (_, std) = mean_std(&sorted);
    let kept: Vec<f64> = sorted
        .into_iter()
        .filter(|v| *v < centre + 2.0 * std && *v > centre - 2.0 * std)
        .collect();
    median(&kept)
}

pub fn summarize(runs: &[RunResult]) -> Vec<SummaryRow> {
    // Per (method, nodes), every seed's run.
    let mut cells: BTreeMap<(&'static str, usize), Vec<&RunResult>> = BTreeMap::new();
    for run in runs {
        cells
            .entry((run.config.method.name(), run.config.nodes))
            .or_default()
            .push(run);
    }
    let seed_final = |run: &RunResult| median(&final_accuracies(run, Phase::Aggregated));
    // The smallest size per method, and each seed's final median there.
    let mut smallest: BTreeMap<&str, (usize, BTreeMap<u64, f64>)> = BTreeMap::new();
    for ((method, nodes), runs) in &cells {
        let entry = smallest
            .entry(method)
            .or_insert((usize::MAX, BTreeMap::new()));
        if *nodes < entry.0 {
            *entry = (
                *nodes,
                runs.iter()
                    .map(|r| (r.config.seed, seed_final(r)))
                    .collect(),
            );
        }
    }
    let mut rows: Vec<SummaryRow> = cells
        .into_iter()
        .map(|((method, nodes), mut runs)| {
            runs.sort_by_key(|r| r.config.seed);
            let reference = &smallest[method].1;
            let per_seed: Vec<SeedResult> = runs
                .iter()
                .map(|run| {
                    let final_median = seed_final(run);
                    SeedResult {
                        seed: run.config.seed,
                        final_median,
                        paper_median: paper_median(&final_accuracies(run, Phase::Trained)),
                        drop: reference
                            .get(&run.config.seed)
                            .map_or(f64::NAN, |at_smallest| at_smallest - final_median),
                    }
                })
                .collect();
            let column = |f: fn(&SeedResult) -> f64| -> Vec<f64> {
                per_seed.iter().map(f).filter(|v| !v.is_nan()).collect()
            };
            let (final_median, final_median_std) = mean_std(&column(|s| s.final_median));
            let (paper, paper_std) = mean_std(&column(|s| s.paper_median));
            let (drop, drop_std) = mean_std(&column(|s| s.drop));
            let all_finals: Vec<f64> = runs
                .iter()
                .flat_map(|r| final_accuracies(r, Phase::Aggregated))
                .collect();
            let graphs: Vec<&GraphStats> = runs.iter().filter_map(|r| r.graph.as_ref()).collect();
            let graph_mean = |f: fn(&GraphStats) -> f64| -> f64 {
                mean_std(&graphs.iter().map(|g| f(g)).collect::<Vec<_>>()).0
            };
            let bytes: Vec<f64> = runs
                .iter()
                .map(|run| {
                    let last = run.metrics.iter().map(|m| m.epoch).max().unwrap_or(0);
                    let finals: Vec<f64> = run
                        .metrics
                        .iter()
                        .filter(|m| m.epoch == last && m.phase == Phase::Aggregated)
                        .map(|m| m.bytes_sent as f64)
                        .collect();
                    mean_std(&finals).0
                })
                .collect();
            SummaryRow {
                method: runs[0].config.method,
                nodes,
                final_min: all_finals.iter().copied().fold(f64::INFINITY, f64::min),
                final_max: all_finals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                per_seed,
                final_median,
                final_median_std,
                paper_median: paper,
                paper_median_std: paper_std,
                drop,
                drop_std,
                bytes_per_node: mean_std(&bytes).0,
                mean_degree: graph_mean(|g| g.mean_degree),
                isolated: graph_mean(|g| g.isolated as f64),
                components: graph_mean(|g| g.components as f64),
                diameter: graph_mean(|g| g.diameter as f64),
                wall_seconds: runs.iter().map(|r| r.wall.as_secs_f64()).sum(),
            }
        })
        .collect();
    rows.sort_by_key(|row| (row.method.name(), row.nodes));
    rows
}

const GRAPHS_HEADER: &str =
    "method,nodes,seed,mean_degree,min_degree,max_degree,isolated,components,diameter";

/// The gossip graphs recorded in `graphs.csv` beside a `metrics.csv`, by (method, nodes, seed).
fn read_graphs(metrics: &Path) -> BTreeMap<(String, usize, u64), GraphStats> {
    let Ok(text) = std::fs::read_to_string(metrics.with_file_name("graphs.csv")) else {
        return BTreeMap::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let int = |i: usize| f.get(i)?.parse::<usize>().ok();
            Some((
                (f.first()?.to_string(), int(1)?, f.get(2)?.parse().ok()?),
                GraphStats {
                    mean_degree: f.get(3)?.parse().ok()?,
                    min_degree: int(4)?,
                    max_degree: int(5)?,
                    isolated: int(6)?,
                    components: int(7)?,
                    diameter: int(8)?,
                },
            ))
        })
        .collect()
}

const METRICS_HEADER: &str = "method,nodes,seed,node,epoch,phase,test_accuracy,test_loss,validation_accuracy,senders_heard,bytes_sent";

/// Writes `metrics.csv`, `summary.csv`, `ratios.csv`, `summary.md` and the SVG plots into `dir`.
pub fn write_report(dir: &Path, runs: &[RunResult]) -> std::io::Result<Vec<SummaryRow>> {
    std::fs::create_dir_all(dir)?;
    let mut metrics = format!("{METRICS_HEADER}\n");
    for m in runs.iter().flat_map(|run| &run.metrics) {
        writeln!(
            metrics,
            "{},{},{},{},{},{},{:.4},{:.4},{:.4},{},{}",
            m.method,
            m.nodes,
            m.seed,
            m.node,
            m.epoch,
            m.phase,
            m.test.accuracy,
            m.test.loss,
            m.validation.accuracy,
            m.senders_heard,
            m.bytes_sent
        )
        .expect("writing to a string");
    }
    std::fs::write(dir.join("metrics.csv"), metrics)?;
    let mut graphs = String::from(GRAPHS_HEADER);
    graphs.push('\n');
    for run in runs {
        if let Some(g) = &run.graph {
            writeln!(
                graphs,
                "{},{},{},{:.4},{},{},{},{},{}",
                run.config.method,
                run.config.nodes,
                run.config.seed,
                g.mean_degree,
                g.min_degree,
                g.max_degree,
                g.isolated,
                g.components,
                g.diameter
            )
            .expect("writing to a string");
        }
    }
    std::fs::write(dir.join("graphs.csv"), graphs)?;

    let summary = summarize(runs);
    let mut csv = String::from(
        "method,nodes,seeds,final_median_mean,final_median_std,final_min,final_max,paper_median_mean,paper_median_std,drop_mean,drop_std,bytes_per_node,mean_degree,isolated,components,diameter\n",
    );
    for row in &summary {
        writeln!(
            csv,
            "{},{},{},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.0},{:.2},{:.2},{:.2},{:.2}",
            row.method,
            row.nodes,
            row.seeds(),
            row.final_median,
            row.final_median_std,
            row.final_min,
            row.final_max,
            row.paper_median,
            row.paper_median_std,
            row.drop,
            row.drop_std,
            row.bytes_per_node,
            row.mean_degree,
            row.isolated,
            row.components,
            row.diameter
        )
        .expect("writing to a string");
    }
    std::fs::write(dir.join("summary.csv"), csv)?;
    std::fs::write(dir.join("ratios.csv"), drops::ratios_csv(&summary))?;
    std::fs::write(dir.join("summary.md"), summary_markdown(&summary))?;
    plot::accuracy_over_epochs(dir, runs).map_err(|e| std::io::Error::other(e.to_string()))?;
    plot::final_accuracy_by_size(dir, &summary)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(summary)
}

/// Reads back `metrics.csv` files written by [`write_report`], one run per method, size and
/// seed, so a finished experiment (or several, built over several sittings) can be summarised
/// and plotted again. Files from before seeds and phases were recorded (9 columns) read as
/// seed 1, every row after aggregation. The graphs come from `graphs.csv` beside each file when
/// it is there. Settings not recorded in the file (topology, ...) are
/// left at the paper's protocol, wall times at zero.
pub fn read_metrics(paths: &[std::path::PathBuf]) -> std::io::Result<Vec<RunResult>> {
    let mut runs: BTreeMap<(String, usize, u64), Vec<NodeMetrics>> = BTreeMap::new();
    let mut graphs = BTreeMap::new();
    for path in paths {
        graphs.extend(read_graphs(path));
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
            // The legacy layout lacks `seed` (third) and `phase` (sixth).
            let fields: Vec<&str> = match fields.len() {
                11 => fields,
                9 => {
                    let mut f = fields;
                    f.insert(2, "1");
                    f.insert(5, "aggregated");
                    f
                }
                _ => return Err(bad("expected 11 comma-separated fields (or the older 9)")),
            };
            let number = |i: usize| -> std::io::Result<f64> {
                fields[i]
                    .parse()
                    .map_err(|_| bad(&format!("field {} is not a number", i + 1)))
            };
            let method: Method = fields[0].parse().map_err(|e: String| bad(&e))?;
            let phase: Phase = fields[5].parse().map_err(|e: String| bad(&e))?;
            let metrics = NodeMetrics {
                method,
                nodes: number(1)? as usize,
                seed: number(2)? as u64,
                node: number(3)? as usize,
                epoch: number(4)? as u64,
                phase,
                test: crate::trainer::Evaluation {
                    accuracy: number(6)?,
                    loss: number(7)?,
                },
                validation: crate::trainer::Evaluation {
                    accuracy: number(8)?,
                    loss: f64::NAN,
                },
                senders_heard: number(9)? as usize,
                bytes_sent: number(10)? as u64,
            };
            runs.entry((fields[0].to_string(), metrics.nodes, metrics.seed))
                .or_default()
                .push(metrics);
        }
    }
    Ok(runs
        .into_iter()
        .map(|(key, metrics)| {
            let mut config =
                super::SimulationConfig::paper_protocol(metrics[0].nodes, metrics[0].method);
            config.epochs = metrics.iter().map(|m| m.epoch).max().unwrap_or(0);
            config.seed = metrics[0].seed;
            RunResult {
                config,
                graph: graphs.get(&key).cloned(),
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

/// A mean with its spread over seeds, in percent (`-` when not measured).
fn percent(mean: f64, std: f64, seeds: usize) -> String {
    if mean.is_nan() {
        "-".to_string()
    } else if seeds > 1 {
        format!("{:.2} ± {:.2}", mean * 100.0, std * 100.0)
    } else {
        format!("{:.2}", mean * 100.0)
    }
}

fn optional(value: f64, digits: usize) -> String {
    if value.is_nan() {
        "-".to_string()
    } else {
        format!("{value:.digits$}")
    }
}

/// The summary as a Markdown table (accuracies and drops in percent, mean ± sd over seeds).
fn markdown_table(summary: &[SummaryRow]) -> String {
    let mut out = String::from(
        "| method | nodes | seeds | final median % | paper's figure % | min-max % | drop vs smallest (pp) | MB sent per node | degree | isolated | pieces | diameter | wall time |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in summary {
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.2}-{:.2} | {} | {:.1} | {} | {} | {} | {} | {} |",
            row.method,
            row.nodes,
            row.seeds(),
            percent(row.final_median, row.final_median_std, row.seeds()),
            percent(row.paper_median, row.paper_median_std, row.seeds()),
            row.final_min * 100.0,
            row.final_max * 100.0,
            percent(row.drop, row.drop_std, row.seeds()),
            row.bytes_per_node / 1e6,
            optional(row.mean_degree, 1),
            optional(row.isolated, 1),
            optional(row.components, 1),
            optional(row.diameter, 1),
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
    fn the_papers_figure_drops_outliers_beyond_two_deviations() {
        // Nine nodes near 0.9 and one that diverged: the median is unaffected either way, but
        // the authors' filter removes the straggler before taking it.
        let mut values = vec![0.90, 0.91, 0.89, 0.90, 0.92, 0.88, 0.90, 0.91, 0.89, 0.10];
        assert_eq!(paper_median(&values), 0.90);
        // With the outlier gone the median of an even count shifts: mean of the middle two.
        values = vec![0.80, 0.82, 0.84, 0.86, 0.10];
        // median 0.82, sd 0.3226 -> keep (0.175, 1.47): drops 0.10, median of 4 = 0.83.
        assert!((paper_median(&values) - 0.83).abs() < 1e-12);
        assert_eq!(paper_median(&[0.5]), 0.5);
        assert!(paper_median(&[]).is_nan());
    }

    #[test]
    fn mean_and_sample_deviation() {
        assert_eq!(mean_std(&[2.0]), (2.0, 0.0));
        let (mean, std) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(mean, 2.5);
        assert!((std - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), 3.0);
        assert!(median(&[]).is_nan());
    }
}
