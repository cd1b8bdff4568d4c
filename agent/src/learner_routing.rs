//! How a learner replica's calls reach its peers: which node runs each planned learner
//! replica, whom each local learner exchanges with, and the two directions of a call (a local
//! learner calling out, a peer's call arriving for a local learner).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use orchestrator::{Workload, WorkloadId};

use crate::node::{Node, Replica, View};
use crate::runtime::learner::{CallFuture, Router, choose_peers};

/// Where a planned learner replica runs, as seen from this agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Here,
    Agent(SocketAddr),
}

impl Node {
    /// Records where every planned learner replica runs, and tells each local learner its peers:
    /// the `peers` nearest replicas of its component by measured round-trip time.
    pub(crate) fn route_learners(&self, view: &View, replicas: &BTreeMap<WorkloadId, Replica>) {
        let mut routes = BTreeMap::new();
        for (id, node) in &view.plan.assignments {
            if !matches!(
                view.component(id).map(|c| &c.workload),
                Some(Workload::Learner(_))
            ) {
                continue;
            }
            let route = if node == self.name() {
                Some(Route::Here)
            } else {
                view.nodes
                    .get(node)
                    .map(|(_, record)| Route::Agent(record.address))
            };
            if let Some(route) = route {
                routes.insert(id.clone(), route);
            }
        }
        for (id, replica) in replicas.iter().filter(|(_, r)| !r.stopping) {
            let (Some(link), Some(component)) = (&replica.link, view.component(id)) else {
                continue;
            };
            let Workload::Learner(spec) = &component.workload else {
                continue;
            };
            let rtt = |replica: u32| {
                let peer = WorkloadId {
                    replica,
                    ..id.clone()
                };
                match routes.get(&peer)? {
                    Route::Here => Some(Duration::ZERO),
                    Route::Agent(addr) => self.peers.rtt(*addr),
                }
            };
            let peers = choose_peers(id.replica, component.replicas, spec.peers, rtt)
                .into_iter()
                .filter(|r| {
                    routes.contains_key(&WorkloadId {
                        replica: *r,
                        ..id.clone()
                    })
                })
                .collect();
            link.set_peers(peers);
        }
        *self.learner_routes.lock().expect("routes lock") = routes;
    }

    /// Carries a local learner's call to replica `to` of the same component.
    async fn call_learner(
        self: Arc<Self>,
        from: WorkloadId,
        to: u32,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let target = WorkloadId {
            replica: to,
            ..from.clone()
        };
        let route = self
            .learner_routes
            .lock()
            .expect("routes lock")
            .get(&target)
            .copied();
        match route {
            Some(Route::Here) => self.serve_learner(&target, from.replica, body).await,
            Some(Route::Agent(addr)) => {
                self.peers
                    .learner_call(addr, &target, from.replica, &body)
                    .await
            }
            None => Err(format!("{target} is not placed on any node")),
        }
    }

    /// A peer replica's call to `workload`, answered by the local learner process.
    pub async fn serve_learner_call(
        &self,
        workload: &str,
        from: u32,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let target: WorkloadId = workload
            .parse()
            .map_err(|_| format!("{workload:?} is not a workload id"))?;
        self.serve_learner(&target, from, body).await
    }

    async fn serve_learner(
        &self,
        target: &WorkloadId,
        from: u32,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let link = self
            .replicas
            .lock()
            .expect("replicas lock")
            .get(target)
            .filter(|r| !r.stopping)
            .and_then(|r| r.link.clone())
            .ok_or_else(|| format!("{target} does not run on {}", self.name()))?;
        link.serve(from, body).await
    }
}

/// Routes learners' calls through the node without keeping it alive.
pub(crate) struct NodeRouter(pub(crate) std::sync::Weak<Node>);

impl Router for NodeRouter {
    fn call(&self, from: &WorkloadId, to: u32, body: Vec<u8>) -> CallFuture {
        let node = self.0.upgrade();
        let from = from.clone();
        Box::pin(async move {
            match node {
                Some(node) => node.call_learner(from, to, body).await,
                None => Err("the agent is shutting down".to_string()),
            }
        })
    }
}
