//! Rolling updates without a coordinator, and the record of what happened.
//!
//! [`decide`] turns one agent's view (applications, replica status, witnessed completions,
//! the clock) into every component's rollout step with [`orchestrator::rollout`]'s pure
//! planner; the node places the step's slots and replaces only its own replicas.
//! [`history`] is what a deploy stores beside the new definition (earlier generations and
//! each component's rollback target); [`activity`] is each agent's replicated record of
//! events and completed rollouts.

pub mod activity;
pub mod decide;
pub mod history;
