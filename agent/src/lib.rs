//! `gossipd`, the gossipctl node agent, as a library: the binary is a thin shell over it, and
//! the CLI and tests reuse its API types, client and identity tools.

pub mod api;
pub mod capacity;
pub mod client;
pub mod container;
pub mod gossip;
pub mod identity;
pub mod learner;
mod learner_routing;
pub mod logs;
mod logs_api;
pub mod membership;
pub mod node;
pub mod orphans;
pub mod process;
pub mod reconcile;
pub mod replication;
pub mod runtimes;
pub mod server;
pub mod status;
pub mod store;
pub mod supervisor;
pub mod sync;
pub mod tls;
pub mod transport;
pub mod wire;

pub use logs_api::Selector;
