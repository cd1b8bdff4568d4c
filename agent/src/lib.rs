//! `gossipd`, the gossipctl node agent, as a library: the binary is a thin shell over it, and
//! the CLI and tests reuse its API types, client and identity tools.
//!
//! The modules stack by concern, each using only those below it:
//!
//! - the wire vocabulary: [`api`] (requests and answers) and [`wire`] (their framing);
//! - [`cluster`]: who is a member ([`cluster::membership`], [`cluster::gossip`]), the
//!   replicated state and how it spreads ([`cluster::replication`], [`sync`]), and
//!   the authenticated transport under them ([`cluster::transport`], [`cluster::identity`],
//!   [`cluster::tls`]);
//! - [`runtime`]: supervised replicas, one runner per workload type;
//! - what an operator steers beside applications: [`rollout`] (rolling updates, their
//!   history and the events agents record) and [`maintenance`] (cordon and drain);
//! - the [`node`], which plans ([`reconcile`]) and carries the plan out;
//! - the loops that drive it: [`server`], [`sync`] (pushes and anti-entropy), [`status`],
//!   [`logs`], and the [`client`].

pub mod api;
pub mod client;
pub mod cluster;
mod learner_routing;
pub mod logs;
mod logs_api;
pub mod maintenance;
pub mod metrics;
pub mod node;
pub mod reconcile;
pub mod rollout;
pub mod runtime;
pub mod server;
pub mod services;
pub mod status;
pub mod store;
pub mod sync;
pub mod trust;
pub mod wire;

pub use logs_api::Selector;
