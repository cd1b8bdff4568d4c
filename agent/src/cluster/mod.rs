//! The cluster layer: membership (SWIM), the replicated state and how it spreads, and the
//! mutually authenticated QUIC transport both run over.

pub mod counters;
pub mod dissemination;
pub mod gossip;
pub mod health;
pub mod hints;
pub mod identity;
pub mod membership;
pub mod repair;
pub mod replication;
pub mod suspicion;
pub mod tls;
pub mod transport;
