//! A burst on real agents, sized for CI: ten agents on this machine, then one application of
//! 10 `process` components x 10 replicas deployed at once. The benchmark (`scripts/bench.sh
//! burst`) runs the operator's full size, 50 agents and 500 replicas.

use std::time::Duration;

use e2e::{Cluster, burst};

#[test]
fn a_hundred_replicas_at_once_run_exactly_once_and_no_live_agent_is_declared_dead() {
    let cluster = Cluster::up_joined(10);
    let outcome = burst::run(&cluster, 10, 10, Duration::from_secs(30));
    eprintln!("{outcome:?}");
    assert!(
        outcome.converged.is_some(),
        "not every replica ran exactly once with every agent alive within 30 s: {outcome:?}"
    );
    assert_eq!(
        outcome.most_processes, 100,
        "duplicate replica processes ran: {outcome:?}"
    );
    let verdicts = cluster.declared_down();
    assert!(
        verdicts.is_empty(),
        "live agents were declared dead: {verdicts:#?}"
    );
    assert!(
        outcome.cleaned.is_some(),
        "replica processes were left 30 s after `delete app`: {outcome:?}"
    );
}
