//! Gossip learning for gossipctl: burn models, Delta Sum and baseline aggregation, datasets,
//! the learner node state machine and the simulator that runs many of them in one process.

pub mod aggregate;
pub mod backend;
pub mod conv;
pub mod data;
pub mod dropout;
pub mod exchange;
mod flex;
pub mod gossip;
pub mod message;
pub mod model;
pub mod node;
pub mod numerics;
pub mod parallel;
pub mod params;
pub mod pool;
pub mod replica;
pub mod simulate;
pub mod topology;
pub mod trainer;

/// The small real Fashion-MNIST subset committed for tests.
pub fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fashion-mnist-small")
}
