//! What every replica finds in its environment.

use orchestrator::WorkloadId;

/// The variables every replica finds in its environment, whatever runs it: who it is, how many
/// replicas its component has, and which node runs it.
pub fn replica_env(id: &WorkloadId, replicas: u32, node: &str) -> [(&'static str, String); 5] {
    [
        ("GOSSIP_APP", id.app.clone()),
        ("GOSSIP_COMPONENT", id.component.clone()),
        ("GOSSIP_REPLICA", id.replica.to_string()),
        ("GOSSIP_REPLICAS", replicas.to_string()),
        ("GOSSIP_NODE", node.to_string()),
    ]
}
