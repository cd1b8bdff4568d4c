//! One agent's live state and the shell that carries out the reconciler's decisions.
//!
//! The node owns the replicated state (what should run, and what runs where), its own
//! supervisors and their logs. A single reconcile loop, woken by deploys, by membership
//! changes, by replica state changes and by a periodic tick, turns the pure plan and diff into
//! started and stopped replicas here, and reports their status to the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator::plan::{NodeInfo, Plan, Running, plan, required_runtime};
use orchestrator::state::Timestamp;
use orchestrator::{Application, Component, ProcessSpec, Workload, WorkloadId};
use tokio::sync::Notify;

use crate::api::{NodeState, WorkloadState};
use crate::cluster::dissemination::{self, Dissemination};
use crate::cluster::gossip::Gossip;
use crate::cluster::membership::Liveness;
use crate::cluster::replication::{
    NodeRecord, ReplicatedState, Updates, WorkloadRecord, workload_key,
};
use crate::cluster::transport::Peers;
use crate::learner_routing::{NodeRouter, Route};
use crate::logs::{LogStore, now_ms};
use crate::maintenance::{self, Mode};
use crate::reconcile::{Action, Wanted, pace, reconcile};
use crate::rollout::activity::{self, Event};
use crate::rollout::decide::{self, ComponentKey, Decision};
use crate::runtime::Runtimes;
use crate::runtime::container::ContainerLaunch;
use crate::runtime::learner::LearnerLink;
use crate::runtime::probe::Probes;
use crate::runtime::process::{Launch, ProcessRunner};
use crate::runtime::supervisor::{Runner, Supervisor};
use crate::services::Services;
use crate::store::{Store, StoreError, StoredApp};

/// How often the reconciler looks again even when nothing woke it.
const RECONCILE_TICK: Duration = Duration::from_secs(1);
/// After a reconcile pass the reconciler rests this many times as long as the pass took,
/// within [`RECONCILE_MIN_GAP`] and [`RECONCILE_MAX_GAP`]: wake-ups in between (a burst of
/// status reports from peers, say) coalesce into one pass, so reconciling takes at most a fifth
/// of the agent's time however fast changes arrive, while a cheap pass (a small deploy on an
/// idle agent) is followed by the next within milliseconds.
const RECONCILE_REST_PER_PASS: u32 = 4;
const RECONCILE_MIN_GAP: Duration = Duration::from_millis(5);
const RECONCILE_MAX_GAP: Duration = Duration::from_millis(100);
/// At most this many replicas start per pass (see [`crate::reconcile::pace`]): with the rest
/// above, starting fifty at once takes a few passes instead of starving the agent.
const STARTS_PER_PASS: usize = 16;
/// How long a serving replica that is to stop is reported as stopping before it is stopped:
/// long enough for its status to reach the other agents and the clients that pick replicas
/// by readiness.
const DRAIN_DELAY: Duration = Duration::from_secs(1);
/// How often this node looks for containers it labelled but no longer runs.
const CONTAINER_SWEEP: Duration = Duration::from_secs(15);
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

mod events;
mod view;

pub use view::View;

use events::{replacing, rescheduled};

pub struct Node {
    pub info: NodeInfo,
    pub address: SocketAddr,
    pub store: Store,
    pub state: ReplicatedState,
    pub logs: LogStore,
    pub peers: Arc<Peers>,
    pub gossip: Gossip,
    /// Changes on their way to the other members.
    pub(crate) rumours: Mutex<Dissemination>,
    pub(crate) replicas: Mutex<BTreeMap<WorkloadId, Replica>>,
    pub(crate) waiting: Mutex<BTreeMap<WorkloadId, String>>,
    /// Each node record's certificate expiry, by node and record version: parsing a
    /// certificate per node on every `get nodes` would cost more than the rest of the answer.
    pub(crate) expiries: Mutex<BTreeMap<String, (Timestamp, Option<i64>)>>,
    /// The status last reported for each of this node's replicas, to report only changes.
    reported: Mutex<BTreeMap<String, WorkloadRecord>>,
    /// When this agent last swapped member lists with a peer (see [`crate::sync`]).
    last_member_lists: Mutex<Option<std::time::Instant>>,
    wake: Arc<Notify>,
    runtimes: Runtimes,
    /// Where each planned learner replica runs, for carrying learners' calls to their peers.
    pub(crate) learner_routes: Mutex<BTreeMap<WorkloadId, Route>>,
    /// The services this agent forwards and names.
    pub services: Services,
    /// What the loops record for the metrics.
    pub instruments: crate::metrics::Instruments,
}

pub(crate) struct Replica {
    supervisor: Supervisor,
    /// The link to a learner replica's process.
    pub(crate) link: Option<Arc<LearnerLink>>,
    fingerprint: u64,
    /// Asked to stop; it leaves the map once its processes are gone.
    pub(crate) stopping: bool,
}

impl Node {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        info: NodeInfo,
        address: SocketAddr,
        store: Store,
        state: ReplicatedState,
        logs: LogStore,
        peers: Arc<Peers>,
        gossip: Gossip,
        wake: Arc<Notify>,
        runtimes: Runtimes,
        services: Services,
    ) -> Arc<Self> {
        Arc::new(Node {
            info,
            address,
            store,
            state,
            logs,
            peers,
            gossip,
            rumours: Mutex::new(Dissemination::new(dissemination::Config::default())),
            replicas: Mutex::default(),
            waiting: Mutex::default(),
            expiries: Mutex::default(),
            reported: Mutex::default(),
            last_member_lists: Mutex::default(),
            wake,
            runtimes,
            learner_routes: Mutex::default(),
            services,
            instruments: Default::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// Whether a member-list swap is due (at most one per `every`); claims it if so.
    pub fn may_swap_member_lists(&self, every: Duration) -> bool {
        let mut last = self.last_member_lists.lock().expect("member lists lock");
        let due = last.is_none_or(|at| at.elapsed() >= every);
        if due {
            *last = Some(std::time::Instant::now());
        }
        due
    }

    /// Asks the reconcile loop to look now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn record(&self, left: bool) -> NodeRecord {
        NodeRecord {
            info: self.info.clone(),
            address: self.address,
            version: VERSION.to_string(),
            left,
            node_ip: Some(self.services.network.node_ip).filter(|ip| *ip != self.address.ip()),
        }
    }

    /// Tells the cluster who we are (at start) or that we are leaving (at shutdown).
    pub async fn publish_self(self: &Arc<Self>, left: bool) -> Result<(), StoreError> {
        let record = self.record(left);
        let updates = self
            .state
            .change(true, |r| r.put_node(record, now_ms()))
            .await?;
        if left {
            self.push_and_wait(updates).await;
        } else {
            self.spread(updates);
        }
        Ok(())
    }

    /// The addresses of the other members this agent believes alive.
    pub fn active_peers(&self) -> Vec<SocketAddr> {
        self.gossip
            .members
            .borrow()
            .values()
            .filter(|(_, liveness)| *liveness != Liveness::Down)
            .map(|(id, _)| id.addr)
            .collect()
    }

    /// Hands changes this agent learned (its own writes, or what a peer's push changed
    /// here) to the epidemic: [`crate::sync::spread`] sends them in batches to a few random
    /// members per round, and anti-entropy repairs any loss.
    pub fn spread(&self, updates: Updates) {
        if updates.is_empty() {
            return;
        }
        let members = self.active_peers().len();
        self.rumours
            .lock()
            .expect("rumours lock")
            .offer(updates, members);
    }

    async fn push_and_wait(self: &Arc<Self>, updates: Updates) {
        let request = crate::api::Request::Push { updates };
        let mut pushes = tokio::task::JoinSet::new();
        for addr in self.active_peers() {
            let peers = self.peers.clone();
            let request = request.clone();
            pushes.spawn(async move { peers.request(addr, &request).await });
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), pushes.join_all()).await;
    }

    pub async fn run_reconciler(self: Arc<Self>) {
        loop {
            let pass = tokio::time::Instant::now();
            let outcome = self.reconcile_once();
            self.instruments
                .reconcile_seconds
                .observe(pass.elapsed().as_secs_f64());
            match outcome {
                // Reported changes may unblock a `dependsOn`: look again at once.
                Ok(updates) if !updates.is_empty() => {
                    tracing::debug!(took = ?pass.elapsed(), reported = updates.workloads.len(), "reconciled");
                    self.spread(updates);
                    self.wake();
                }
                Ok(_) => tracing::trace!(took = ?pass.elapsed(), "reconciled, nothing to report"),
                Err(e) => tracing::error!("reconcile: {e}"),
            }
            let rest = (pass.elapsed() * RECONCILE_REST_PER_PASS)
                .clamp(RECONCILE_MIN_GAP, RECONCILE_MAX_GAP);
            tokio::time::sleep(rest).await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(RECONCILE_TICK) => {}
            }
        }
    }

    /// One pass: start and stop local replicas, then report their status. Returns the status
    /// changes to push to the cluster.
    fn reconcile_once(self: &Arc<Self>) -> Result<Updates, StoreError> {
        let view = self.view();
        // Services follow readiness first, so replicas started below already see them.
        self.services.update(crate::services::table::table(
            &view.apps,
            &view.nodes,
            view.records.values(),
            self.name(),
            self.services.network.service_net.size(),
        ));
        let component_of = |id: &WorkloadId| {
            view.definition(id)
                .expect("planned replicas have components")
        };

        let mut replicas = self.replicas.lock().expect("replicas lock");
        let stopping: BTreeSet<&WorkloadId> = replicas
            .iter()
            .filter(|(_, r)| r.stopping)
            .map(|(id, _)| id)
            .collect();
        let wanted: BTreeMap<WorkloadId, Wanted> = view
            .plan
            .for_node(self.name())
            .filter(|id| !stopping.contains(id))
            .map(|id| {
                let component = component_of(id);
                let want = Wanted {
                    fingerprint: component.fingerprint(),
                    depends_on: component.depends_on.clone(),
                };
                (id.clone(), want)
            })
            .collect();
        let running: BTreeMap<WorkloadId, u64> = replicas
            .iter()
            .filter(|(_, r)| !r.stopping)
            .map(|(id, r)| (id.clone(), r.fingerprint))
            .collect();
        let ready = ready_components(&view);

        let mut waiting = BTreeMap::new();
        let mut events = Vec::new();
        let draining_here = view.maintenance.get(self.name()) == Some(&Mode::Draining);
        for action in pace(reconcile(&wanted, &running, &ready), STARTS_PER_PASS) {
            if let Action::Replace(id) = &action {
                events.push(replacing(&view, id, &running, &wanted));
            }
            if let Action::Stop(id) = &action
                && draining_here
            {
                let there = view.plan.assignments.get(id);
                let ready_there = there.is_some_and(|node| ready_on(&view, id, node));
                if maintenance::hands_over(draining_here, ready_there) {
                    continue;
                }
                if let Some(there) = there {
                    events.push(Event {
                        at_ms: now_ms(),
                        reason: "Drained".into(),
                        object: id.to_string(),
                        message: format!(
                            "handed over to {there}, where it is ready: {} is draining",
                            self.name()
                        ),
                    });
                }
            }
            if let Action::Start(id) = &action {
                events.extend(rescheduled(&view, id, self.name()));
            }
            match action {
                Action::Start(id) => match self.start_replica(&id, component_of(&id)) {
                    Ok(replica) => {
                        replicas.insert(id, replica);
                    }
                    Err(message) => {
                        waiting.insert(id, message);
                    }
                },
                Action::Stop(id) | Action::Replace(id) => {
                    let wanted_still = wanted.contains_key(&id);
                    if let Some(replica) = replicas.get_mut(&id) {
                        replica.stopping = true;
                        // A serving replica is reported stopping first, and stopped a moment
                        // later, so that clients choosing replicas by readiness move away
                        // before it goes (Kubernetes' endpoint-propagation delay).
                        let serving = replica.supervisor.status().state.is_up();
                        let node = Arc::clone(self);
                        tokio::spawn(async move {
                            if serving {
                                tokio::time::sleep(DRAIN_DELAY).await;
                            }
                            let finished = node
                                .replicas
                                .lock()
                                .expect("replicas lock")
                                .get_mut(&id)
                                .map(|r| r.supervisor.stop());
                            if let Some(finished) = finished {
                                finished.await;
                            }
                            node.replicas.lock().expect("replicas lock").remove(&id);
                            if !wanted_still {
                                node.logs.forget(&id.to_string());
                            }
                            node.wake();
                        });
                    }
                }
                Action::Wait(id, message) => {
                    waiting.insert(id, message);
                }
            }
        }

        self.route_learners(&view, &replicas);

        // What this node runs (or is about to), as it will report it.
        let mut current: BTreeMap<String, WorkloadRecord> = BTreeMap::new();
        for (id, replica) in replicas.iter() {
            let status = replica.supervisor.status();
            let progress = replica.link.as_ref().and_then(|link| link.progress());
            // A learner that finished keeps serving its final model to slower peers; its
            // work is done, so it counts as succeeded.
            let state = match &progress {
                Some(p) if p.finished() && status.state == WorkloadState::Running => {
                    WorkloadState::Succeeded
                }
                _ => status.state,
            };
            // A replica being stopped is reported until it is gone, so `delete --wait` waits
            // for it, but as stopped: placement must not count it as running here.
            let (state, message) = if replica.stopping {
                (WorkloadState::Stopped, "stopping".to_string())
            } else {
                (state, status.message)
            };
            let record = WorkloadRecord {
                id: id.clone(),
                node: self.name().to_string(),
                state,
                restarts: status.restarts,
                message,
                pid: status.pid,
                fingerprint: replica.fingerprint,
                learner: progress,
                since_ms: status.since_ms,
                last_exit: status.last_exit,
                address: status.address,
            };
            current.insert(workload_key(id, self.name()), record);
        }
        for (id, message) in &waiting {
            let record = WorkloadRecord {
                id: id.clone(),
                node: self.name().to_string(),
                state: WorkloadState::Pending,
                restarts: 0,
                message: message.clone(),
                pid: None,
                fingerprint: wanted.get(id).map_or(0, |w| w.fingerprint),
                learner: None,
                since_ms: 0,
                last_exit: String::new(),
                address: None,
            };
            current.insert(workload_key(id, self.name()), record);
        }
        drop(replicas);
        *self.waiting.lock().expect("waiting lock") = waiting;
        self.report(view, current, events)
    }

    /// Starts supervising one of this node's replicas with the runtime its type needs; says
    /// why not when this node lacks that runtime.
    fn start_replica(
        self: &Arc<Self>,
        id: &WorkloadId,
        component: &Component,
    ) -> Result<Replica, String> {
        let network = self.services.env(&id.app);
        let process = |spec: ProcessSpec, learner: Option<Arc<LearnerLink>>| ProcessRunner {
            launch: Launch {
                id: id.clone(),
                spec,
                replicas: component.replicas,
                node: self.name().to_string(),
                network: network.clone(),
                learner,
            },
            store: self.store.clone(),
        };
        let fingerprint = component.fingerprint();
        let probes = component.workload.probes().cloned().unwrap_or_default();
        let runtimes = &self.runtimes;
        let (supervisor, link) = match (&component.workload, &runtimes.learner, &runtimes.container)
        {
            (Workload::Process(spec), _, _) => (
                self.supervise(id, process(spec.clone(), None), probes),
                None,
            ),
            (Workload::Learner(learner), Some(runtime), _) => {
                let router = Arc::new(NodeRouter(Arc::downgrade(self)));
                let link = LearnerLink::new(id.clone(), router);
                let runner = process(runtime.process_spec(id, learner), Some(link.clone()));
                (self.supervise(id, runner, probes), Some(link))
            }
            (Workload::Webservice(spec) | Workload::Worker(spec), _, Some(runtime)) => {
                let runner = runtime.runner(ContainerLaunch {
                    id: id.clone(),
                    spec: spec.clone(),
                    // Docker enforces what a container may use: its limit.
                    resources: component.limit(),
                    replicas: component.replicas,
                    node: self.name().to_string(),
                    fingerprint,
                    // A container's loopback is its own: of the node's services it reaches
                    // only node ports, at the node's address.
                    network: network
                        .iter()
                        .filter(|(name, _)| name == "GOSSIP_NODE_IP")
                        .cloned()
                        .collect(),
                });
                (self.supervise(id, runner, probes), None)
            }
            (other, _, _) => {
                let runtime = required_runtime(other);
                return Err(format!("no {runtime} runtime on this node"));
            }
        };
        Ok(Replica {
            supervisor,
            link,
            fingerprint,
            stopping: false,
        })
    }

    /// Probe checks each local replica ran, `[kind][passed, failed]`, for the metrics.
    pub(crate) fn probe_checks(&self) -> Vec<(WorkloadId, [[u64; 2]; 2])> {
        let replicas = self.replicas.lock().expect("replicas lock");
        replicas
            .iter()
            .map(|(id, replica)| (id.clone(), replica.supervisor.probe_checks()))
            .filter(|(_, checks)| checks.iter().flatten().any(|&n| n > 0))
            .collect()
    }

    fn supervise(&self, id: &WorkloadId, runner: impl Runner, probes: Probes) -> Supervisor {
        Supervisor::start(id, runner, probes, self.logs.clone(), self.wake.clone())
    }

    /// Removes, every [`CONTAINER_SWEEP`], containers labelled with this node that no replica
    /// here owns: left by a previous run of the agent for replicas now placed elsewhere.
    pub async fn sweep_containers(self: Arc<Self>) {
        let Some(runtime) = self.runtimes.container.clone() else {
            return;
        };
        loop {
            tokio::time::sleep(CONTAINER_SWEEP).await;
            // Asked after the engine listed its containers: a replica's supervisor exists
            // before its container does, so a container listed without one is an orphan.
            let owned = |id: &WorkloadId| {
                self.replicas
                    .lock()
                    .expect("replicas lock")
                    .contains_key(id)
            };
            match runtime.sweep(owned).await {
                Ok(0) => {}
                Ok(removed) => {
                    tracing::info!(removed, "removed containers this node no longer runs")
                }
                Err(e) => tracing::warn!("container sweep: {e}"),
            }
        }
    }

    /// Writes changed status records for this node's replicas and removes the ones it no
    /// longer runs (including any left from a previous run of this agent); records what
    /// happened as events (`decided`: what this pass did, beside what the status changes
    /// tell).
    fn report(
        &self,
        view: View,
        current: BTreeMap<String, WorkloadRecord>,
        decided: Vec<Event>,
    ) -> Result<Updates, StoreError> {
        let mut updates = self.record_activity(&view, &current, decided)?;
        updates.extend(self.report_status(&view, current)?);
        Ok(updates)
    }

    /// Writes changed status records for this node's replicas and removes stale ones.
    fn report_status(
        &self,
        view: &View,
        current: BTreeMap<String, WorkloadRecord>,
    ) -> Result<Updates, StoreError> {
        let mut reported = self.reported.lock().expect("reported lock");
        let stale: Vec<String> = view
            .records
            .iter()
            .filter(|(key, record)| record.node == self.info.name && !current.contains_key(*key))
            .map(|(key, _)| key.clone())
            .collect();
        let changed: Vec<WorkloadRecord> = current
            .iter()
            .filter(|(key, record)| {
                reported.get(*key) != Some(record) || view.records.get(*key) != Some(record)
            })
            .map(|(_, record)| record.clone())
            .collect();
        if stale.is_empty() && changed.is_empty() {
            // Replicas gone since the last pass and already absent from the state.
            *reported = current;
            return Ok(Updates::default());
        }
        let wall = now_ms();
        let written = self
            .state
            .change_now(|r| r.report_workloads(&stale, changed, wall))?;
        *reported = current;
        Ok(written)
    }

    /// Stops every replica and waits for them; used on agent shutdown.
    pub async fn stop_all(&self) {
        let stops: Vec<_> = {
            let mut replicas = self.replicas.lock().expect("replicas lock");
            replicas
                .values_mut()
                .map(|r| {
                    r.stopping = true;
                    r.supervisor.stop()
                })
                .collect()
        };
        for stop in stops {
            stop.await;
        }
    }
}

/// Whether `node` reports replica `id` ready (or finished, for run-to-completion policies).
fn ready_on(view: &View, id: &WorkloadId, node: &str) -> bool {
    let probed = view
        .definition(id)
        .is_some_and(|c| c.readiness_probe().is_some());
    view.records
        .get(&workload_key(id, node))
        .is_some_and(|r| r.state.counts_as_ready(probed))
}

/// `(app, component)` pairs whose every placed replica is up, as the cluster reports them,
/// for `dependsOn`.
fn ready_components(view: &View) -> BTreeSet<(String, String)> {
    let mut verdict: BTreeMap<(String, String), bool> = BTreeMap::new();
    for (id, node) in &view.plan.assignments {
        let component = view.component(id);
        let fingerprint = component.map(Component::fingerprint);
        let probed = component.is_some_and(|c| c.readiness_probe().is_some());
        let up = view
            .records
            .get(&workload_key(id, node))
            .is_some_and(|r| Some(r.fingerprint) == fingerprint && r.state.counts_as_ready(probed));
        *verdict
            .entry((id.app.clone(), id.component.clone()))
            .or_insert(true) &= up;
    }
    verdict
        .into_iter()
        .filter_map(|(key, up)| up.then_some(key))
        .collect()
}
