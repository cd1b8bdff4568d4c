//! The pure core of gossipctl: the OAM application model, and the parser that validates a
//! document into it. No file or network I/O happens here.

pub mod learner_link;
pub mod model;
pub mod parse;
pub mod plan;
#[cfg(test)]
mod plan_properties;
pub mod rollout;
pub mod services;
pub mod state;

mod affinity;
mod components;
mod diagnostics;
mod emit;
mod graph;
mod json;
mod kubevela;
mod names;
mod node_tables;
mod overrides;
mod path;
mod positions;
mod probes;
mod quantity;
mod raw;
mod references;
mod render;
mod resources;
mod spread;
mod traits;
mod workflow;
mod workloads;

pub use model::*;
pub use parse::{
    Diagnostic, Diagnostics, MAX_DOCUMENT_BYTES, Parsed, parse_application, parse_document,
};
pub use probes::{HttpHeader, Probe, ProbeAction, Probes};
