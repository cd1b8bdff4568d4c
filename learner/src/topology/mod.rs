//! Who gossips with whom: the "limited connectivity" of the Delta Sum experiment.
//!
//! A [`Graph`] lists, for every node, the nodes it *hears*: under the paper's protocol a node
//! only ever receives its own neighbours' messages. Random, ring and full graphs are symmetric;
//! graphs from latency-bounded discovery (`geometric`, or the authors' files) need not be, since
//! each node applies the discovery rule to its own pings.

pub mod discovery;
pub mod pings;

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

/// The shape of the gossip graph.
#[derive(Debug, Clone, PartialEq)]
pub enum Topology {
    /// A connected random graph with about `degree` neighbours per node on average.
    Random { degree: f64 },
    /// Each node talks to the next and the previous one.
    Ring,
    /// Everyone talks to everyone.
    Full,
    /// Flocky's generator: nodes on a 2-D map, pings from distance times `U(1 - spread, 1 +
    /// spread)`, neighbours by the discovery rule. Diameter grows like sqrt(N), and a node can
    /// end up isolated.
    Geometric { ping_spread: f64 },
    /// One of the authors' topology files, neighbours by the discovery rule.
    File(PathBuf),
}

impl Topology {
    /// The generator's default ping randomisation, `U(0.8, 1.2)`.
    pub const DEFAULT_PING_SPREAD: f64 = 0.2;
}

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a Flocky topology file (a JSON list of {{name, pings}}): {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("{}: holds {file} nodes, but the run has {nodes}", path.display())]
    Size {
        path: PathBuf,
        file: usize,
        nodes: usize,
    },
}

impl FromStr for Topology {
    type Err = String;

    /// `random` (degree given separately), `ring`, `full` or `geometric`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "random" => Ok(Topology::Random { degree: 4.0 }),
            "ring" => Ok(Topology::Ring),
            "full" => Ok(Topology::Full),
            "geometric" => Ok(Topology::Geometric {
                ping_spread: Topology::DEFAULT_PING_SPREAD,
            }),
            other => Err(format!(
                "topology `{other}`: expected random, ring, full or geometric (or --topology-file)"
            )),
        }
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topology::Random { degree } => write!(f, "random (average degree {degree})"),
            Topology::Ring => f.write_str("ring"),
            Topology::Full => f.write_str("full"),
            Topology::Geometric { ping_spread } => {
                write!(f, "geometric (ping spread {ping_spread})")
            }
            Topology::File(path) => write!(
                f,
                "file {}",
                path.file_name()
                    .unwrap_or(path.as_os_str())
                    .to_string_lossy()
            ),
        }
    }
}

/// For every node, the nodes it hears, each list sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    pub neighbours: Vec<Vec<usize>>,
}

impl Graph {
    pub fn build(topology: &Topology, nodes: usize, seed: u64) -> Result<Graph, TopologyError> {
        Ok(match topology {
            Topology::Geometric { ping_spread } => {
                Self::discovered(&pings::generate(nodes, *ping_spread, seed))
            }
            Topology::File(path) => Self::from_file(path, nodes)?,
            symmetric => Self::symmetric(symmetric, nodes, seed),
        })
    }

    /// The graph the discovery rule gives on an authors' file, which must hold `nodes` nodes.
    pub fn from_file(path: &Path, nodes: usize) -> Result<Graph, TopologyError> {
        let map = pings::load(path)?;
        if map.names.len() != nodes {
            return Err(TopologyError::Size {
                path: path.to_path_buf(),
                file: map.names.len(),
                nodes,
            });
        }
        Ok(Self::discovered(&map))
    }

    /// Each node keeps the neighbours Flocky's discovery rule picks from its own pings.
    pub fn discovered(map: &pings::PingMap) -> Graph {
        Graph {
            neighbours: (0..map.names.len())
                .map(|i| discovery::neighbours(&map.pings_of(i), discovery::MAX_PING_MS))
                .collect(),
        }
    }

    fn symmetric(topology: &Topology, nodes: usize, seed: u64) -> Graph {
        let mut edges: BTreeSet<(usize, usize)> = BTreeSet::new();
        match *topology {
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
            Topology::Geometric { .. } | Topology::File(_) => {
                unreachable!("discovery graphs are built from pings")
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

/// What a graph looks like, for the summary: degrees (nodes heard), nodes that hear no one,
/// connected pieces and the diameter of the largest (both with links taken both ways).
#[derive(Debug, Clone, PartialEq)]
pub struct GraphStats {
    pub min_degree: usize,
    pub max_degree: usize,
    pub mean_degree: f64,
    pub isolated: usize,
    pub components: usize,
    pub diameter: usize,
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

    /// Who hears node `i`: the nodes its messages are delivered to.
    pub fn listeners(&self) -> Vec<Vec<usize>> {
        let mut listeners = vec![Vec::new(); self.len()];
        for (node, heard) in self.neighbours.iter().enumerate() {
            for &source in heard {
                listeners[source].push(node);
            }
        }
        listeners
    }

    /// Links taken both ways.
    fn undirected(&self) -> Vec<Vec<usize>> {
        let mut both = self.neighbours.clone();
        for (node, heard) in self.neighbours.iter().enumerate() {
            for &source in heard {
                both[source].push(node);
            }
        }
        for list in &mut both {
            list.sort_unstable();
            list.dedup();
        }
        both
    }

    /// The connected pieces (links taken both ways), each sorted, in order of their first node.
    pub fn components(&self) -> Vec<Vec<usize>> {
        let both = self.undirected();
        let mut seen = vec![false; self.len()];
        let mut pieces = Vec::new();
        for start in 0..self.len() {
            if seen[start] {
                continue;
            }
            seen[start] = true;
            let mut piece = vec![start];
            let mut stack = vec![start];
            while let Some(node) = stack.pop() {
                for &next in &both[node] {
                    if !std::mem::replace(&mut seen[next], true) {
                        piece.push(next);
                        stack.push(next);
                    }
                }
            }
            piece.sort_unstable();
            pieces.push(piece);
        }
        pieces
    }

    pub fn is_connected(&self) -> bool {
        self.components().len() <= 1
    }

    pub fn stats(&self) -> GraphStats {
        let degrees: Vec<usize> = self.neighbours.iter().map(Vec::len).collect();
        let pieces = self.components();
        let both = self.undirected();
        let largest = pieces
            .iter()
            .max_by_key(|p| p.len())
            .cloned()
            .unwrap_or_default();
        let diameter = largest
            .iter()
            .map(|&start| eccentricity(&both, start))
            .max()
            .unwrap_or(0);
        GraphStats {
            min_degree: degrees.iter().copied().min().unwrap_or(0),
            max_degree: degrees.iter().copied().max().unwrap_or(0),
            mean_degree: self.average_degree(),
            isolated: degrees.iter().filter(|&&d| d == 0).count(),
            components: pieces.len(),
            diameter,
        }
    }
}

/// The largest hop count from `start` to a node it reaches.
fn eccentricity(adjacency: &[Vec<usize>], start: usize) -> usize {
    let mut distance = vec![usize::MAX; adjacency.len()];
    distance[start] = 0;
    let mut queue = VecDeque::from([start]);
    let mut furthest = 0;
    while let Some(node) = queue.pop_front() {
        furthest = furthest.max(distance[node]);
        for &next in &adjacency[node] {
            if distance[next] == usize::MAX {
                distance[next] = distance[node] + 1;
                queue.push_back(next);
            }
        }
    }
    furthest
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn build(topology: Topology, nodes: usize, seed: u64) -> Graph {
        Graph::build(&topology, nodes, seed).unwrap()
    }

    fn authors_file(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/flocky-topologies")
            .join(name)
    }

    #[test]
    fn ring_and_full_have_their_degrees() {
        assert_eq!(build(Topology::Ring, 10, 0).average_degree(), 2.0);
        assert_eq!(build(Topology::Full, 10, 0).average_degree(), 9.0);
        assert_eq!(build(Topology::Ring, 1, 0).average_degree(), 0.0);
        let ring = build(Topology::Ring, 12, 0).stats();
        assert_eq!((ring.components, ring.diameter, ring.isolated), (1, 6, 0));
    }

    #[test]
    fn the_authors_ten_node_file_gives_their_degrees() {
        let graph = Graph::from_file(&authors_file("f10.json"), 10).unwrap();
        let stats = graph.stats();
        // delta-sum.md: 2 to 6 neighbours per node, 3.8 on average, connected.
        assert_eq!((stats.min_degree, stats.max_degree), (2, 6));
        assert!((stats.mean_degree - 3.8).abs() < 1e-9, "{stats:?}");
        assert_eq!((stats.components, stats.isolated), (1, 0));
        // Pings are symmetric in the file and every node has ten or fewer candidates.
        assert_eq!(graph.listeners(), graph.neighbours);
    }

    #[test]
    fn the_authors_larger_files_load_with_their_sizes() {
        for (name, nodes) in [("f25.json", 25), ("f50.json", 50), ("f100.json", 100)] {
            let graph = Graph::from_file(&authors_file(name), nodes).unwrap();
            let stats = graph.stats();
            assert_eq!(graph.len(), nodes);
            assert!(
                stats.min_degree >= 1 && stats.mean_degree > 2.0,
                "{name}: {stats:?}"
            );
        }
        let error = Graph::from_file(&authors_file("f25.json"), 50).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("holds 25 nodes, but the run has 50"),
            "{error}"
        );
    }

    #[test]
    fn geometric_graphs_are_sparse_wide_and_seeded() {
        let topology = Topology::Geometric { ping_spread: 0.2 };
        let mut degrees = Vec::new();
        for seed in 0..8 {
            let graph = build(topology.clone(), 50, seed);
            assert_eq!(graph, build(topology.clone(), 50, seed));
            degrees.push(graph.average_degree());
        }
        // About 5.6 neighbours at 50 nodes on the authors' 1200 x 750 map (a fixed 8 ms bound
        // would give about 4.3; sparse neighbourhoods widen it).
        let mean = degrees.iter().sum::<f64>() / degrees.len() as f64;
        assert!((4.5..6.5).contains(&mean), "{degrees:?}");
        // The diameter grows like sqrt(N), well past a random graph's.
        let wide = build(topology.clone(), 200, 1).stats();
        let random = build(
            Topology::Random {
                degree: wide.mean_degree,
            },
            200,
            1,
        )
        .stats();
        assert!(wide.diameter > random.diameter, "{wide:?} vs {random:?}");
    }

    proptest! {
        #[test]
        fn random_graphs_are_connected_with_the_asked_degree(nodes in 2usize..120, seed: u64) {
            let graph = build(Topology::Random { degree: 4.0 }, nodes, seed);
            prop_assert!(graph.is_connected());
            let expected = (nodes as f64 * 2.0).round().min((nodes * (nodes - 1) / 2) as f64)
                .max((nodes - 1) as f64);
            prop_assert!((graph.average_degree() * nodes as f64 / 2.0 - expected).abs() < 1e-9);
            prop_assert_eq!(&graph, &build(Topology::Random { degree: 4.0 }, nodes, seed));
        }
    }
}
