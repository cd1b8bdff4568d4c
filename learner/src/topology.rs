//! Who gossips with whom: the "limited connectivity" of the Delta Sum experiment.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

/// The shape of the gossip graph.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Topology {
    /// A connected random graph with about `degree` neighbours per node on average.
    Random { degree: f64 },
    /// Each node talks to the next and the previous one.
    Ring,
    /// Everyone talks to everyone.
    Full,
}

impl FromStr for Topology {
    type Err = String;

    /// `random` (degree given separately), `ring` or `full`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "random" => Ok(Topology::Random { degree: 4.0 }),
            "ring" => Ok(Topology::Ring),
            "full" => Ok(Topology::Full),
            other => Err(format!("topology `{other}`: expected random, ring or full")),
        }
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topology::Random { degree } => write!(f, "random (average degree {degree})"),
            Topology::Ring => f.write_str("ring"),
            Topology::Full => f.write_str("full"),
        }
    }
}

/// Undirected adjacency lists, each sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    pub neighbours: Vec<Vec<usize>>,
}

impl Graph {
    pub fn build(topology: Topology, nodes: usize, seed: u64) -> Graph {
        let mut edges: BTreeSet<(usize, usize)> = BTreeSet::new();
        match topology {
            Topology::Full => {
                for a in 0..nodes {
                    for b in a + 1..nodes {
                        connect(&mut edges, a, b);
                    }
                }
            }
            Topology::Ring => {
                for a in 0..nodes {
                    connect(&mut edges, a, (a + 1) % nodes);
                }
            }
            Topology::Random { degree } => {
                let mut rng = StdRng::seed_from_u64(seed);
                let mut order: Vec<usize> = (0..nodes).collect();
                order.shuffle(&mut rng);
                // A random spanning tree keeps the graph connected ...
                for k in 1..nodes {
                    let earlier = order[rng.random_range(0..k)];
                    connect(&mut edges, order[k], earlier);
                }
                // ... and random extra edges bring the average degree up to the target.
                let max_edges = nodes * nodes.saturating_sub(1) / 2;
                let target = ((nodes as f64 * degree / 2.0).round() as usize).min(max_edges);
                while edges.len() < target {
                    let (a, b) = (rng.random_range(0..nodes), rng.random_range(0..nodes));
                    connect(&mut edges, a, b);
                }
            }
        }
        let mut neighbours = vec![Vec::new(); nodes];
        for (a, b) in edges {
            neighbours[a].push(b);
            neighbours[b].push(a);
        }
        neighbours.iter_mut().for_each(|list| list.sort_unstable());
        Graph { neighbours }
    }
}

fn connect(edges: &mut BTreeSet<(usize, usize)>, a: usize, b: usize) {
    if a != b {
        edges.insert((a.min(b), a.max(b)));
    }
}

impl Graph {
    pub fn len(&self) -> usize {
        self.neighbours.len()
    }

    pub fn is_empty(&self) -> bool {
        self.neighbours.is_empty()
    }

    pub fn average_degree(&self) -> f64 {
        let ends: usize = self.neighbours.iter().map(Vec::len).sum();
        ends as f64 / self.len().max(1) as f64
    }

    pub fn is_connected(&self) -> bool {
        if self.is_empty() {
            return true;
        }
        let mut seen = vec![false; self.len()];
        let mut stack = vec![0];
        seen[0] = true;
        while let Some(node) = stack.pop() {
            for &next in &self.neighbours[node] {
                if !std::mem::replace(&mut seen[next], true) {
                    stack.push(next);
                }
            }
        }
        seen.into_iter().all(|s| s)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn ring_and_full_have_their_degrees() {
        assert_eq!(Graph::build(Topology::Ring, 10, 0).average_degree(), 2.0);
        assert_eq!(Graph::build(Topology::Full, 10, 0).average_degree(), 9.0);
        assert_eq!(Graph::build(Topology::Ring, 1, 0).average_degree(), 0.0);
    }

    proptest! {
        #[test]
        fn random_graphs_are_connected_with_the_asked_degree(nodes in 2usize..120, seed: u64) {
            let graph = Graph::build(Topology::Random { degree: 4.0 }, nodes, seed);
            prop_assert!(graph.is_connected());
            let expected = (nodes as f64 * 2.0).round().min((nodes * (nodes - 1) / 2) as f64)
                .max((nodes - 1) as f64);
            prop_assert!((graph.average_degree() * nodes as f64 / 2.0 - expected).abs() < 1e-9);
            prop_assert_eq!(&graph, &Graph::build(Topology::Random { degree: 4.0 }, nodes, seed));
        }
    }
}
