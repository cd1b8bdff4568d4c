//! The replicated-state core: desired state (applications) and observed state (node info,
//! workload status) as maps of versioned entries that every agent holds a replica of.
//!
//! Pure on purpose: no I/O, and no clock is read here; callers pass wall time in. That keeps
//! every merge deterministic and lets the properties in `laws` replay any interleaving.
//!
//! # Design
//!
//! - **Versions** come from a hybrid logical clock ([`Clock`]): close to wall time, yet never
//!   behind anything a node has written or seen, so a write made after seeing another always
//!   outranks it. Peers' clocks more than [`MAX_DRIFT_MS`] ahead are refused, so one bad clock
//!   cannot push everyone's versions into the future.
//! - **Last writer wins** ([`LwwMap`]): each key keeps the entry with the highest version.
//!   Taking a maximum is commutative, associative and idempotent, so replicas converge no
//!   matter how gossip reorders, duplicates or delays updates.
//! - **Tombstones**: a delete is a write of "nothing" at a version, so an older value arriving
//!   late cannot bring the key back. Tombstones expire by age
//!   ([`LwwMap::expire_tombstones`]); a replica partitioned for longer than that age can
//!   resurrect a deleted key, which is the price of not keeping them forever.
//! - **Dissemination**: a node pushes each change to peers as it happens, and periodically
//!   runs anti-entropy to repair what pushes missed: compare [`LwwMap::fingerprint`]s first (a
//!   converged cluster exchanges a few bytes per round), and only on a mismatch swap
//!   [`Digest`]s and the entries each side lacks.
//!
//! Before merging remote entries, an agent passes their versions to [`Clock::observe`] and
//! drops the entries it refuses; otherwise a version from a runaway clock would still win.

mod digest;
mod hlc;
mod lww;

#[cfg(test)]
mod laws;

pub use digest::Digest;
pub use hlc::{Clock, ClockError, MAX_DRIFT_MS, Timestamp};
pub use lww::{Entry, LwwMap, canonical_json};
