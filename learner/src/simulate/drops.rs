//! The paper's two claims about the global accuracy drop, computed from a summary rather than
//! read off a table: each rule's drop relative to averaging's at the same size, and whether a
//! rule's drop grows with the logarithm of the network size or linearly in it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::SummaryRow;
use crate::aggregate::Method;

/// One rule's drop at one size next to the baseline's drop at that size, both measured from
/// the same smallest size.
#[derive(Debug, Clone, PartialEq)]
pub struct DropRatio {
    pub method: Method,
    pub from: usize,
    pub nodes: usize,
    pub drop: f64,
    pub baseline_drop: f64,
    /// `drop / baseline_drop`; the paper's "58% lower drop" is a ratio of 0.42.
    pub ratio: f64,
    /// A 95% percentile-bootstrap interval for the ratio, resampling the seeds both rules ran
    /// (`None` with fewer than two such seeds).
    pub interval: Option<(f64, f64)>,
    /// Seeds the ratio is measured over.
    pub seeds: usize,
}

/// Bootstrap resamples for a ratio's interval.
pub const BOOTSTRAP_RESAMPLES: usize = 4000;

/// The ratio of mean drops, and its percentile-bootstrap 95% interval over seeds: each resample
/// draws the seeds with replacement and keeps each seed's pair of drops together.
pub fn bootstrap_ratio(pairs: &[(f64, f64)]) -> (f64, Option<(f64, f64)>) {
    let ratio_of = |sample: &mut dyn Iterator<Item = (f64, f64)>| {
        let (mut drop, mut base) = (0.0, 0.0);
        for (d, b) in sample {
            drop += d;
            base += b;
        }
        drop / base
    };
    let ratio = ratio_of(&mut pairs.iter().copied());
    if pairs.len() < 2 {
        return (ratio, None);
    }
    let mut rng = StdRng::seed_from_u64(0xb007_5742);
    let mut ratios: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| ratio_of(&mut (0..pairs.len()).map(|_| pairs[rng.random_range(0..pairs.len())])))
        .filter(|r| !r.is_nan())
        .collect();
    ratios.sort_by(f64::total_cmp);
    if ratios.is_empty() {
        return (ratio, None);
    }
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    (ratio, Some((at(0.025), at(0.975))))
}

/// Least-squares fits of one rule's drop against network size, each with one free slope and
/// zero drop at the smallest size: `drop = a * log2(N / smallest)` and
/// `drop = b * (N - smallest)`. The closer fit (lower RMS residual) says how the drop grows.
#[derive(Debug, Clone, PartialEq)]
pub struct GrowthFit {
    pub method: Method,
    pub from: usize,
    pub sizes: Vec<usize>,
    /// Drop per doubling of the network.
    pub per_doubling: f64,
    pub logarithmic_rms: f64,
    /// Drop per node added.
    pub per_node: f64,
    pub linear_rms: f64,
}

impl GrowthFit {
    pub fn closer(&self) -> &'static str {
        if self.logarithmic_rms <= self.linear_rms {
            "logarithmic"
        } else {
            "linear"
        }
    }
}

/// Every row's size group per rule, smallest first, as `(smallest size, rows beyond it)`.
fn by_method(summary: &[SummaryRow]) -> BTreeMap<&'static str, (usize, Vec<&SummaryRow>)> {
    let mut groups: BTreeMap<&'static str, Vec<&SummaryRow>> = BTreeMap::new();
    for row in summary {
        groups.entry(row.method.name()).or_default().push(row);
    }
    groups
        .into_iter()
        .map(|(name, mut rows)| {
            rows.sort_by_key(|row| row.nodes);
            let smallest = rows[0].nodes;
            let beyond = rows
                .into_iter()
                .filter(|row| row.nodes > smallest)
                .collect();
            (name, (smallest, beyond))
        })
        .collect()
}

/// Each other rule's drop as a multiple of `baseline`'s, at every size both ran beyond a
/// common smallest size.
pub fn drop_ratios(summary: &[SummaryRow], baseline: Method) -> Vec<DropRatio> {
    let groups = by_method(summary);
    let Some((base_from, base_rows)) = groups.get(baseline.name()) else {
        return Vec::new();
    };
    let mut ratios = Vec::new();
    for (name, (from, rows)) in &groups {
        if *name == baseline.name() || from != base_from {
            continue;
        }
        for row in rows {
            if let Some(base) = base_rows.iter().find(|b| b.nodes == row.nodes) {
                let pairs: Vec<(f64, f64)> = row
                    .per_seed
                    .iter()
                    .filter_map(|own| {
                        let theirs = base.per_seed.iter().find(|b| b.seed == own.seed)?;
                        (!own.drop.is_nan() && !theirs.drop.is_nan())
                            .then_some((own.drop, theirs.drop))
                    })
                    .collect();
                let (ratio, interval) = if pairs.is_empty() {
                    (row.drop / base.drop, None)
                } else {
                    bootstrap_ratio(&pairs)
                };
                ratios.push(DropRatio {
                    method: row.method,
                    from: *from,
                    nodes: row.nodes,
                    drop: row.drop,
                    baseline_drop: base.drop,
                    ratio,
                    interval,
                    seeds: pairs.len(),
                });
            }
        }
    }
    ratios
}

/// Growth fits for every rule run at two or more sizes beyond its smallest (with one, both
/// curves fit exactly and say nothing).
pub fn growth_fits(summary: &[SummaryRow]) -> Vec<GrowthFit> {
    by_method(summary)
        .into_values()
        .filter(|(_, rows)| rows.len() >= 2)
        .map(|(from, rows)| {
            let drops: Vec<f64> = rows.iter().map(|row| row.drop).collect();
            let doublings: Vec<f64> = rows
                .iter()
                .map(|row| (row.nodes as f64 / from as f64).log2())
                .collect();
            let added: Vec<f64> = rows.iter().map(|row| (row.nodes - from) as f64).collect();
            let (per_doubling, logarithmic_rms) = fit_through_origin(&doublings, &drops);
            let (per_node, linear_rms) = fit_through_origin(&added, &drops);
            GrowthFit {
                method: rows[0].method,
                from,
                sizes: rows.iter().map(|row| row.nodes).collect(),
                per_doubling,
                logarithmic_rms,
                per_node,
                linear_rms,
            }
        })
        .collect()
}

/// The least-squares slope of `y = slope * x` and the RMS of its residuals.
fn fit_through_origin(x: &[f64], y: &[f64]) -> (f64, f64) {
    let sxy: f64 = x.iter().zip(y).map(|(x, y)| x * y).sum();
    let sxx: f64 = x.iter().map(|x| x * x).sum();
    let slope = sxy / sxx;
    let squares: f64 = x.iter().zip(y).map(|(x, y)| (y - slope * x).powi(2)).sum();
    (slope, (squares / x.len() as f64).sqrt())
}

/// Every rule's drop ratio against averaging as CSV.
pub fn ratios_csv(summary: &[SummaryRow]) -> String {
    let mut out =
        String::from("method,from,nodes,drop,average_drop,ratio,ratio_low,ratio_high,seeds\n");
    for r in drop_ratios(summary, Method::Average) {
        let (low, high) = r.interval.unwrap_or((f64::NAN, f64::NAN));
        writeln!(
            out,
            "{},{},{},{:.4},{:.4},{:.4},{:.4},{:.4},{}",
            r.method, r.from, r.nodes, r.drop, r.baseline_drop, r.ratio, low, high, r.seeds
        )
        .expect("writing to a string");
    }
    out
}

/// Both claims as Markdown, in percentage points; empty when the summary holds neither.
pub fn markdown(summary: &[SummaryRow]) -> String {
    let mut out = String::new();
    let ratios = drop_ratios(summary, Method::Average);
    if !ratios.is_empty() {
        out.push_str(
            "\nDrop relative to averaging's at the same size (the paper: Delta Sum's 10 -> 50 drop \
             58% lower, a ratio of 0.42):\n\n\
             | method | sizes | drop | average's drop | ratio | 95% interval (bootstrap over seeds) | seeds |\n\
             |---|---|---:|---:|---:|---|---:|\n",
        );
        for r in &ratios {
            writeln!(
                out,
                "| {} | {} -> {} | {:.2} pp | {:.2} pp | {:.2} | {} | {} |",
                r.method,
                r.from,
                r.nodes,
                r.drop * 100.0,
                r.baseline_drop * 100.0,
                r.ratio,
                r.interval.map_or("-".to_string(), |(low, high)| format!(
                    "{low:.2} to {high:.2}"
                )),
                r.seeds
            )
            .expect("writing to a string");
        }
    }
    let fits = growth_fits(summary);
    if !fits.is_empty() {
        out.push_str(
            "\nHow the drop grows with size: least-squares fits with zero drop at the smallest \
             size, `a * log2(N / smallest)` against `b * (N - smallest)`:\n\n\
             | method | sizes | log: pp per doubling | log RMS | linear: pp per 10 nodes | linear RMS | closer fit |\n\
             |---|---|---:|---:|---:|---:|---|\n",
        );
        for f in &fits {
            let sizes: Vec<String> = std::iter::once(f.from)
                .chain(f.sizes.iter().copied())
                .map(|n| n.to_string())
                .collect();
            writeln!(
                out,
                "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
                f.method,
                sizes.join(", "),
                f.per_doubling * 100.0,
                f.logarithmic_rms * 100.0,
                f.per_node * 1000.0,
                f.linear_rms * 100.0,
                f.closer()
            )
            .expect("writing to a string");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::simulate::report::SeedResult;

    fn row(method: Method, nodes: usize, drop: f64) -> SummaryRow {
        seeded(method, nodes, &[drop])
    }

    /// A row with one drop per seed (seeds 1, 2, ...).
    fn seeded(method: Method, nodes: usize, drops: &[f64]) -> SummaryRow {
        let mean = drops.iter().sum::<f64>() / drops.len() as f64;
        SummaryRow {
            method,
            nodes,
            per_seed: drops
                .iter()
                .enumerate()
                .map(|(i, d)| SeedResult {
                    seed: i as u64 + 1,
                    final_median: 0.9 - d,
                    paper_median: f64::NAN,
                    drop: *d,
                })
                .collect(),
            final_min: 0.9 - mean,
            final_max: 0.9 - mean,
            final_median: 0.9 - mean,
            final_median_std: 0.0,
            paper_median: f64::NAN,
            paper_median_std: f64::NAN,
            drop: mean,
            drop_std: 0.0,
            bytes_per_node: 0.0,
            mean_degree: f64::NAN,
            isolated: f64::NAN,
            components: f64::NAN,
            diameter: f64::NAN,
            wall_seconds: 0.0,
        }
    }

    #[test]
    fn the_interval_resamples_seeds_and_covers_the_ratio() {
        let summary = [
            seeded(Method::Average, 10, &[0.0, 0.0, 0.0, 0.0]),
            seeded(Method::Average, 50, &[0.04, 0.05, 0.03, 0.04]),
            seeded(Method::DeltaSum, 10, &[0.0, 0.0, 0.0, 0.0]),
            seeded(Method::DeltaSum, 50, &[0.01, 0.03, 0.02, 0.02]),
        ];
        let ratio = &drop_ratios(&summary, Method::Average)[0];
        assert_eq!(ratio.seeds, 4);
        assert!((ratio.ratio - 0.5).abs() < 1e-12);
        let (low, high) = ratio.interval.expect("four seeds give an interval");
        assert!(low < 0.5 && 0.5 < high, "{low} {high}");
        // Each resample's ratio lies between the smallest and largest per-seed ratios.
        assert!(low >= 0.25 - 1e-12 && high <= 0.75 + 1e-12, "{low} {high}");
        // Identical seeds leave no spread.
        let same = bootstrap_ratio(&[(0.01, 0.04), (0.01, 0.04)]);
        assert_eq!(same.1, Some((0.25, 0.25)));
        assert_eq!(bootstrap_ratio(&[(0.01, 0.04)]).1, None);
        assert!(ratios_csv(&summary).contains("delta-sum,10,50,0.0200,0.0400,0.5000,"));
    }

    #[test]
    fn ratios_compare_drops_at_the_same_size() {
        let summary = [
            row(Method::Average, 10, 0.0),
            row(Method::Average, 50, 0.04),
            row(Method::DeltaSum, 10, 0.0),
            row(Method::DeltaSum, 25, 0.01),
            row(Method::DeltaSum, 50, 0.01),
        ];
        let ratios = drop_ratios(&summary, Method::Average);
        assert_eq!(ratios.len(), 1, "25 nodes has no averaging run: {ratios:?}");
        assert_eq!((ratios[0].from, ratios[0].nodes), (10, 50));
        assert!((ratios[0].ratio - 0.25).abs() < 1e-12);
    }

    #[test]
    fn ratios_need_the_same_smallest_size() {
        let summary = [
            row(Method::Average, 10, 0.0),
            row(Method::Average, 50, 0.04),
            row(Method::DeltaSum, 25, 0.0),
            row(Method::DeltaSum, 50, 0.01),
        ];
        assert!(drop_ratios(&summary, Method::Average).is_empty());
    }

    #[test]
    fn a_drop_of_one_point_per_doubling_fits_the_logarithm() {
        // 1 point per doubling from 10 nodes.
        let summary: Vec<SummaryRow> = [10, 20, 40, 80, 160]
            .into_iter()
            .enumerate()
            .map(|(i, n)| row(Method::DeltaSum, n, i as f64 / 100.0))
            .collect();
        let fit = &growth_fits(&summary)[0];
        assert_eq!(fit.sizes, vec![20, 40, 80, 160]);
        assert!((fit.per_doubling - 0.01).abs() < 1e-12);
        assert!(fit.logarithmic_rms < 1e-12);
        assert!(fit.linear_rms > 0.001);
        assert_eq!(fit.closer(), "logarithmic");
    }

    #[test]
    fn a_drop_proportional_to_the_nodes_added_fits_the_line() {
        let summary: Vec<SummaryRow> = [10, 25, 50, 100]
            .into_iter()
            .map(|n| row(Method::Average, n, (n - 10) as f64 * 0.001))
            .collect();
        let fit = &growth_fits(&summary)[0];
        assert!((fit.per_node - 0.001).abs() < 1e-12);
        assert!(fit.linear_rms < 1e-12);
        assert_eq!(fit.closer(), "linear");
    }

    #[test]
    fn one_size_beyond_the_smallest_gives_no_fit_and_no_section() {
        let summary = [
            row(Method::Average, 10, 0.0),
            row(Method::Average, 50, 0.03),
        ];
        assert!(growth_fits(&summary).is_empty());
        assert_eq!(markdown(&summary), "");
    }

    #[test]
    fn markdown_states_both_claims_in_points() {
        let summary = [
            row(Method::Average, 10, 0.0),
            row(Method::Average, 25, 0.01),
            row(Method::Average, 50, 0.03),
            row(Method::DeltaSum, 10, 0.0),
            row(Method::DeltaSum, 25, 0.006),
            row(Method::DeltaSum, 50, 0.012),
        ];
        let text = markdown(&summary);
        assert!(
            text.contains("| delta-sum | 10 -> 50 | 1.20 pp | 3.00 pp | 0.40 | - | 1 |"),
            "{text}"
        );
        assert!(text.contains("| average | 10, 25, 50 |"), "{text}");
    }
}
