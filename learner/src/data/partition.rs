//! Splitting a training set across learner nodes: IID equal shards (the Delta Sum paper's
//! protocol) or Dirichlet label skew, each shard split 80/20 into local train and validation.

use std::fmt;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Gamma};

use super::{CLASSES, DataError, Dataset};

/// How training examples are dealt to nodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Partition {
    /// Shuffle with the seed, cut into equal disjoint shards; the remainder is left out.
    Iid,
    /// Per class, node shares drawn from a symmetric Dirichlet(alpha): small alpha, strong skew.
    Dirichlet { alpha: f64 },
}

impl FromStr for Partition {
    type Err = DataError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || DataError::BadPartition(text.to_string());
        match text.split_once(':') {
            None if text == "iid" => Ok(Partition::Iid),
            Some(("dirichlet", alpha)) => match alpha.parse::<f64>() {
                Ok(alpha) if alpha.is_finite() && alpha > 0.0 => Ok(Partition::Dirichlet { alpha }),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partition::Iid => f.write_str("iid"),
            Partition::Dirichlet { alpha } => write!(f, "dirichlet:{alpha}"),
        }
    }
}

/// One node's data: what it trains on and what it validates on.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeShard {
    pub train: Dataset,
    pub validation: Dataset,
}

/// The share of each shard used for local training; the rest is local validation.
pub const TRAIN_FRACTION: f64 = 0.8;

/// Deals `data` to `nodes` nodes. Same inputs and seed, same shards.
pub fn partition(data: &Dataset, nodes: usize, scheme: Partition, seed: u64) -> Vec<NodeShard> {
    assert!(nodes > 0, "at least one node");
    let mut rng = StdRng::seed_from_u64(seed);
    let index_sets = match scheme {
        Partition::Iid => iid_indices(data.len(), nodes, &mut rng),
        Partition::Dirichlet { alpha } => dirichlet_indices(&data.labels, nodes, alpha, &mut rng),
    };
    index_sets
        .into_iter()
        .map(|mut indices| {
            indices.shuffle(&mut rng);
            let cut = (indices.len() as f64 * TRAIN_FRACTION).round() as usize;
            NodeShard {
                train: data.select(&indices[..cut]),
                validation: data.select(&indices[cut..]),
            }
        })
        .collect()
}

fn iid_indices(len: usize, nodes: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let mut all: Vec<usize> = (0..len).collect();
    all.shuffle(rng);
    let shard = len / nodes;
    all.chunks_exact(shard.max(1))
        .take(nodes)
        .map(<[usize]>::to_vec)
        .chain(std::iter::repeat_with(Vec::new))
        .take(nodes)
        .collect()
}

fn dirichlet_indices(labels: &[u8], nodes: usize, alpha: f64, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let gamma = Gamma::new(alpha, 1.0).expect("alpha checked positive when parsed");
    let mut shards = vec![Vec::new(); nodes];
    for class in 0..CLASSES as u8 {
        let mut members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        members.shuffle(rng);
        let mut weights: Vec<f64> = (0..nodes).map(|_| gamma.sample(rng)).collect();
        let total: f64 = weights.iter().sum();
        if total <= 0.0 || !total.is_finite() {
            // Every draw underflowed (tiny alpha): the whole class goes to one node.
            weights.iter_mut().for_each(|w| *w = 0.0);
            weights[rng.random_range(0..nodes)] = 1.0;
        }
        let total: f64 = weights.iter().sum();
        let mut start = 0;
        let mut cumulative = 0.0;
        for (node, weight) in weights.iter().enumerate() {
            cumulative += weight / total;
            let end = if node + 1 == nodes {
                members.len()
            } else {
                ((cumulative * members.len() as f64).round() as usize).min(members.len())
            };
            shards[node].extend_from_slice(&members[start..end.max(start)]);
            start = end.max(start);
        }
    }
    shards
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(len: usize) -> Dataset {
        Dataset {
            // Every pixel of example i is i, so an image names the example it came from.
            images: (0..len * super::super::IMAGE_PIXELS)
                .map(|i| (i / super::super::IMAGE_PIXELS) as f32)
                .collect(),
            labels: (0..len).map(|i| (i % CLASSES) as u8).collect(),
        }
    }

    #[test]
    fn parses_and_prints_schemes() {
        assert_eq!("iid".parse::<Partition>().unwrap(), Partition::Iid);
        assert_eq!(
            "dirichlet:0.5".parse::<Partition>().unwrap(),
            Partition::Dirichlet { alpha: 0.5 }
        );
        for bad in [
            "dirichlet",
            "dirichlet:0",
            "dirichlet:-1",
            "dirichlet:x",
            "zipf:2",
        ] {
            assert!(bad.parse::<Partition>().is_err(), "{bad}");
        }
        assert_eq!(
            Partition::Dirichlet { alpha: 0.1 }.to_string(),
            "dirichlet:0.1"
        );
    }

    #[test]
    fn iid_shards_are_equal_disjoint_and_split_80_20() {
        let data = toy(1000);
        let shards = partition(&data, 7, Partition::Iid, 3);
        assert_eq!(shards.len(), 7);
        for shard in &shards {
            assert_eq!(shard.train.len() + shard.validation.len(), 1000 / 7);
            assert_eq!(shard.train.len(), (142.0 * TRAIN_FRACTION).round() as usize);
        }
        let mut seen = std::collections::BTreeSet::new();
        for shard in &shards {
            for data in [&shard.train, &shard.validation] {
                for index in 0..data.len() {
                    assert!(
                        seen.insert(data.image(index)[0] as usize),
                        "an example in two shards"
                    );
                }
            }
        }
        assert_eq!(shards, partition(&data, 7, Partition::Iid, 3));
        assert_ne!(shards, partition(&data, 7, Partition::Iid, 4));
    }

    #[test]
    fn dirichlet_uses_every_example_once_and_skews_labels() {
        let data = toy(2000);
        let shards = partition(&data, 5, Partition::Dirichlet { alpha: 0.1 }, 9);
        let total: usize = shards
            .iter()
            .map(|s| s.train.len() + s.validation.len())
            .sum();
        assert_eq!(total, 2000);
        let dominant_share = |shard: &NodeShard| {
            let mut counts = [0usize; CLASSES];
            for &label in shard.train.labels.iter().chain(&shard.validation.labels) {
                counts[label as usize] += 1;
            }
            let n: usize = counts.iter().sum();
            *counts.iter().max().unwrap() as f64 / n.max(1) as f64
        };
        let skewed = shards.iter().filter(|s| dominant_share(s) > 0.3).count();
        assert!(skewed >= 3, "alpha 0.1 should give label-skewed shards");
    }
}
