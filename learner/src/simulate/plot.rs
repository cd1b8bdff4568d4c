//! SVG plots of a simulation: accuracy over epochs per size, and final accuracy against size.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::report::{SummaryRow, median};
use super::{Phase, RunResult};
use crate::aggregate::Method;

type PlotResult = Result<(), Box<dyn std::error::Error>>;

const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// The same colour for a method in every plot of every run.
fn colour_of(method: Method) -> RGBColor {
    let index = Method::ALL.iter().position(|m| *m == method).unwrap_or(0);
    COLOURS[index % COLOURS.len()]
}

/// `accuracy-N.svg` for every size N: per method, the median test accuracy across nodes after
/// each window (thick). With one seed, thin lines give the nodes' minimum and maximum; with
/// several, the thick line is the mean over seeds of that median and a shaded band spans the
/// seeds' lowest to highest median.
pub fn accuracy_over_epochs(dir: &Path, runs: &[RunResult]) -> PlotResult {
    let mut by_size: BTreeMap<usize, Vec<&RunResult>> = BTreeMap::new();
    for run in runs {
        by_size.entry(run.config.nodes).or_default().push(run);
    }
    for (nodes, runs) in by_size {
        let path = dir.join(format!("accuracy-{nodes}.svg"));
        let root = SVGBackend::new(&path, (900, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let epochs = runs.iter().map(|r| r.config.epochs).max().unwrap_or(1) as f64;
        let lowest = runs
            .iter()
            .flat_map(|r| &r.metrics)
            .filter(|m| m.phase == Phase::Aggregated)
            .map(|m| m.test.accuracy)
            .fold(1.0, f64::min);
        let bottom = ((lowest - 0.05) * 10.0).floor().max(0.0) / 10.0;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Test accuracy after each window, {nodes} nodes"),
                ("sans-serif", 22),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..epochs, bottom..1f64)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|x| format!("{x:.0}"))
            .x_desc("local epoch")
            .y_desc("test accuracy")
            .draw()?;
        let mut by_method: BTreeMap<&'static str, Vec<&RunResult>> = BTreeMap::new();
        for run in runs {
            by_method
                .entry(run.config.method.name())
                .or_default()
                .push(run);
        }
        for runs in by_method.into_values() {
            let method = runs[0].config.method;
            let colour = colour_of(method);
            // Per epoch: each seed's (min, median, max) over nodes.
            let mut per_epoch: BTreeMap<u64, Vec<(f64, f64, f64)>> = BTreeMap::new();
            for run in &runs {
                let mut values: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
                for m in run.metrics.iter().filter(|m| m.phase == Phase::Aggregated) {
                    values.entry(m.epoch).or_default().push(m.test.accuracy);
                }
                for (epoch, mut values) in values {
                    values.sort_by(f64::total_cmp);
                    per_epoch.entry(epoch).or_default().push((
                        values[0],
                        median(&values),
                        values[values.len() - 1],
                    ));
                }
            }
            let seeds = runs.len();
            // (epoch, low, centre, high): low/high are node extremes for one seed, the seeds'
            // lowest and highest median for several.
            let stats: Vec<(f64, f64, f64, f64)> = per_epoch
                .into_iter()
                .map(|(epoch, seeds_at)| {
                    let medians: Vec<f64> = seeds_at.iter().map(|s| s.1).collect();
                    let centre = medians.iter().sum::<f64>() / medians.len() as f64;
                    let (low, high) = if seeds == 1 {
                        (seeds_at[0].0, seeds_at[0].2)
                    } else {
                        (
                            medians.iter().copied().fold(f64::INFINITY, f64::min),
                            medians.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        )
                    };
                    (epoch as f64, low, centre, high)
                })
                .collect();
            if seeds > 1 {
                let band: Vec<(f64, f64)> = stats
                    .iter()
                    .map(|s| (s.0, s.3))
                    .chain(stats.iter().rev().map(|s| (s.0, s.1)))
                    .collect();
                chart.draw_series(std::iter::once(Polygon::new(
                    band,
                    colour.mix(0.2).filled(),
                )))?;
            } else {
                for edge in [1usize, 3] {
                    chart.draw_series(LineSeries::new(
                        stats
                            .iter()
                            .map(move |s| (s.0, if edge == 1 { s.1 } else { s.3 })),
                        colour.stroke_width(1),
                    ))?;
                }
            }
            let label = if seeds > 1 {
                format!("{} (mean of {seeds} seeds' medians)", method.name())
            } else {
                method.name().to_string()
            };
            chart
                .draw_series(LineSeries::new(
                    stats.iter().map(|s| (s.0, s.2)),
                    colour.stroke_width(3),
                ))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(())
}

/// `final-accuracy.svg`: final median test accuracy against node count (log scale), per method:
/// the mean over seeds, with a band of one standard deviation either side when there are
/// several.
pub fn final_accuracy_by_size(dir: &Path, summary: &[SummaryRow]) -> PlotResult {
    let path = dir.join("final-accuracy.svg");
    let root = SVGBackend::new(&path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let sizes: Vec<f64> = summary.iter().map(|r| r.nodes as f64).collect();
    let low = sizes.iter().copied().fold(f64::INFINITY, f64::min).max(1.0);
    let high = sizes.iter().copied().fold(0.0, f64::max).max(low * 2.0);
    let accuracies: Vec<f64> = summary.iter().map(|r| r.final_median).collect();
    let bottom = (accuracies.iter().copied().fold(1.0, f64::min) - 0.05).max(0.0);
    let top = (accuracies.iter().copied().fold(0.0, f64::max) + 0.02).min(1.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Final median test accuracy by network size",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d((low * 0.9..high * 1.1).log_scale(), bottom..top)?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("nodes (log scale)")
        .y_desc("final median test accuracy")
        .draw()?;
    let mut methods: Vec<Method> = Vec::new();
    for row in summary {
        if !methods.contains(&row.method) {
            methods.push(row.method);
        }
    }
    for method in methods {
        let colour = colour_of(method);
        let rows: Vec<&SummaryRow> = summary.iter().filter(|r| r.method == method).collect();
        let points: Vec<(f64, f64)> = rows
            .iter()
            .map(|r| (r.nodes as f64, r.final_median))
            .collect();
        if rows.iter().any(|r| r.seeds() > 1) {
            let band: Vec<(f64, f64)> = rows
                .iter()
                .map(|r| (r.nodes as f64, r.final_median + r.final_median_std))
                .chain(
                    rows.iter()
                        .rev()
                        .map(|r| (r.nodes as f64, r.final_median - r.final_median_std)),
                )
                .collect();
            chart.draw_series(std::iter::once(Polygon::new(
                band,
                colour.mix(0.2).filled(),
            )))?;
        }
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(3)))?
            .label(method.name())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 5, colour.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
