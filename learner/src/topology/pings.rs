//! Round-trip times between nodes on a 2-D map: Flocky's topology generator, and the JSON files
//! it writes (`[{"x", "y", "name", "pings": {"fJ": ms}}]`).

use std::collections::BTreeMap;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Deserialize;

use super::TopologyError;

/// Width and height of the generator's density map, in pixels.
pub const MAP_WIDTH: f64 = 1200.0;
pub const MAP_HEIGHT: f64 = 750.0;
/// Map distance per millisecond of simulated ping.
pub const DISTANCE_PER_MS: f64 = 20.0;

/// Pings between every pair of nodes: `ms[i][j]`, `None` where a file gives none.
#[derive(Debug, Clone, PartialEq)]
pub struct PingMap {
    pub names: Vec<String>,
    pub ms: Vec<Vec<Option<f64>>>,
}

impl PingMap {
    /// Node `i`'s pings to every other node it has one for.
    pub fn pings_of(&self, i: usize) -> Vec<(usize, f64)> {
        self.ms[i]
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .filter_map(|(j, ping)| ping.map(|p| (j, p)))
            .collect()
    }
}

/// Flocky's generator on a uniform density map: `nodes` placed uniformly on the map, and
/// `ping = distance / 20 * U(1 - spread, 1 + spread)`, the same both ways. (The authors drew
/// positions from a population-density image, which is not published; where population does
/// not dominate, their placement density is uniform.)
pub fn generate(nodes: usize, spread: f64, seed: u64) -> PingMap {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x7090_1091);
    let positions: Vec<(f64, f64)> = (0..nodes)
        .map(|_| {
            (
                rng.random_range(0.0..MAP_WIDTH).floor(),
                rng.random_range(0.0..MAP_HEIGHT).floor(),
            )
        })
        .collect();
    let mut ms = vec![vec![None; nodes]; nodes];
    for a in 0..nodes {
        for b in a + 1..nodes {
            let (dx, dy) = (
                positions[a].0 - positions[b].0,
                positions[a].1 - positions[b].1,
            );
            let factor = 1.0 - spread + rng.random::<f64>() * 2.0 * spread;
            let ping = factor * (dx * dx + dy * dy).sqrt() / DISTANCE_PER_MS;
            ms[a][b] = Some(ping);
            ms[b][a] = Some(ping);
        }
    }
    PingMap {
        names: (0..nodes).map(|i| format!("f{i}")).collect(),
        ms,
    }
}

#[derive(Deserialize)]
struct FileNode {
    name: String,
    pings: BTreeMap<String, f64>,
}

/// Reads one of the authors' topology files; nodes keep the file's order.
pub fn load(path: &Path) -> Result<PingMap, TopologyError> {
    let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let nodes: Vec<FileNode> =
        serde_json::from_str(&text).map_err(|e| TopologyError::Malformed {
            path: path.to_path_buf(),
            reason: format!("line {} column {}: {e}", e.line(), e.column()),
        })?;
    let index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| (node.name.as_str(), i))
        .collect();
    if index.len() != nodes.len() {
        return Err(TopologyError::Malformed {
            path: path.to_path_buf(),
            reason: "two nodes share a name".into(),
        });
    }
    let mut ms = vec![vec![None; nodes.len()]; nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        for (other, &ping) in &node.pings {
            let Some(&j) = index.get(other.as_str()) else {
                return Err(TopologyError::Malformed {
                    path: path.to_path_buf(),
                    reason: format!("node {} has a ping to unknown node {other}", node.name),
                });
            };
            ms[i][j] = Some(ping);
        }
    }
    Ok(PingMap {
        names: nodes.into_iter().map(|n| n.name).collect(),
        ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pings_are_symmetric_scaled_distances() {
        let map = generate(30, 0.2, 5);
        assert_eq!(map.names.len(), 30);
        for a in 0..30 {
            assert_eq!(map.ms[a][a], None);
            for b in 0..30 {
                if a != b {
                    let ping = map.ms[a][b].unwrap();
                    assert_eq!(Some(ping), map.ms[b][a]);
                    // No two pixels are further apart than the map's diagonal.
                    let diagonal = (MAP_WIDTH.powi(2) + MAP_HEIGHT.powi(2)).sqrt();
                    assert!((0.0..=1.2 * diagonal / DISTANCE_PER_MS).contains(&ping));
                }
            }
        }
        assert_eq!(map, generate(30, 0.2, 5));
        assert_ne!(map, generate(30, 0.2, 6));
    }

    #[test]
    fn a_malformed_file_is_named_with_the_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        std::fs::write(&path, "[{\"name\": \"f0\", \"pings\": {\"f1\": }}]").unwrap();
        let error = load(&path).unwrap_err().to_string();
        assert!(
            error.contains("bad.json") && error.contains("line 1"),
            "{error}"
        );
        std::fs::write(&path, r#"[{"name": "f0", "pings": {"f9": 1.0}}]"#).unwrap();
        let error = load(&path).unwrap_err().to_string();
        assert!(error.contains("unknown node f9"), "{error}");
    }
}
