//! SVG plots of a simulation: accuracy over epochs per size, and final accuracy against size.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::RunResult;
use super::report::{SummaryRow, median};
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

/// `accuracy-N.svg` for every size N: per method, the median test accuracy across nodes
/// (thick) between the minimum and the maximum (thin), against the epoch.
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
            .map(|m| m.test.accuracy)
            .fold(1.0, f64::min);
        let bottom = ((lowest - 0.05) * 10.0).floor().max(0.0) / 10.0;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Test accuracy, {nodes} nodes (median, min-max)"),
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
        for run in runs {
            let colour = colour_of(run.config.method);
            let mut per_epoch: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
            for m in &run.metrics {
                per_epoch.entry(m.epoch).or_default().push(m.test.accuracy);
            }
            let stats: Vec<(f64, f64, f64, f64)> = per_epoch
                .into_iter()
                .map(|(epoch, mut values)| {
                    values.sort_by(f64::total_cmp);
                    (
                        epoch as f64,
                        values[0],
                        median(&values),
                        values[values.len() - 1],
                    )
                })
                .collect();
            chart
                .draw_series(LineSeries::new(
                    stats.iter().map(|s| (s.0, s.2)),
                    colour.stroke_width(3),
                ))?
                .label(run.config.method.name())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3))
                });
            chart.draw_series(LineSeries::new(
                stats.iter().map(|s| (s.0, s.1)),
                colour.stroke_width(1),
            ))?;
            chart.draw_series(LineSeries::new(
                stats.iter().map(|s| (s.0, s.3)),
                colour.stroke_width(1),
            ))?;
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

/// `final-accuracy.svg`: final median test accuracy against node count (log scale), per method.
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
        let points: Vec<(f64, f64)> = summary
            .iter()
            .filter(|r| r.method == method)
            .map(|r| (r.nodes as f64, r.final_median))
            .collect();
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
