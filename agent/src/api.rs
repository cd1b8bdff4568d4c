//! The agent API: what `gossipctl` asks an agent and what it answers.
//!
//! Every request travels on its own QUIC bidirectional stream: one request frame, then one
//! response frame (or, for `Logs` with `follow`, a sequence of them until either side closes).
//! Field names here are part of the `-o json` contract and stay stable.

use std::collections::BTreeMap;

use orchestrator::Resources;
use orchestrator::learner_link::LearnerProgress;

use crate::cluster::membership::MemberState;
use crate::cluster::replication::{StateDigest, Updates, Wanted};
use crate::maintenance::{Maintenance, Mode};
use crate::store::StoredApp;
use crate::trust::authority::encode;
use crate::trust::revocation::Revocation;
use crate::trust::seal::Seal;
use crate::trust::statement::{Map, Refusal, statement};
use orchestrator::state::{Entry, Timestamp};

fn yes() -> bool {
    true
}
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Liveness and identity of the agent that answers.
    Ping,
    /// Create or update an application from an OAM document. The agent validates it again:
    /// it never trusts a client's validation.
    Deploy {
        file: String,
        source: String,
    },
    DeleteApp {
        name: String,
    },
    /// The second step of `Deploy` and `DeleteApp`: the write the agent prepared (answered with
    /// `Response::Seal`), sealed by the admin. The agent checks the seal, then commits it.
    /// [`crate::client::Client`] does this step by itself.
    Commit {
        write: Box<PendingWrite>,
        seal: Seal,
    },
    /// Admin: revoke the certificate with this serial. `entry` is the admin-sealed
    /// revocation (see [`crate::trust::revocation`]); it is versioned by the admin's clock, as
    /// a revocation is never overwritten.
    Revoke {
        serial: String,
        entry: Entry<Revocation>,
    },
    /// The application writes this agent holds that were sealed with the certificate
    /// `serial` (what a revocation of it would keep).
    SealedBy {
        serial: String,
    },
    GetApps,
    GetWorkloads,
    GetNodes,
    DescribeApp {
        name: String,
    },
    DescribeNode {
        name: String,
    },
    /// Every service, as the answering agent serves it.
    GetServices,
    /// Events recorded by every agent, oldest first; of one application, or all.
    GetEvents {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        app: Option<String>,
    },
    /// A fresh version from this agent's clock, for a write the admin seals itself
    /// (`Maintain`): it sorts after everything this agent has seen.
    Version,
    /// Admin: cordon, drain or uncordon a node. `entry` is the admin-sealed
    /// [`crate::maintenance::Maintenance`], versioned by `Version`.
    Maintain {
        node: String,
        entry: Entry<Maintenance>,
    },
    /// An application's generations: the current one and those kept for `RolloutUndo`.
    RolloutHistory {
        app: String,
    },
    /// Deploy an earlier generation again, as a new generation (answered like `Deploy`).
    RolloutUndo {
        app: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to_generation: Option<u64>,
    },
    /// `workload` is `APP/COMPONENT/REPLICA`, or `APP/COMPONENT` for every replica.
    /// An agent asks the nodes that run them; `local` (set on those inner requests) answers from
    /// this node's own logs only.
    Logs {
        workload: String,
        follow: bool,
        tail: Option<usize>,
        #[serde(default)]
        local: bool,
    },
    /// Agent to agent: entries that changed (eager push). Node certificates only.
    Push {
        updates: Updates,
    },
    /// Agent to agent, anti-entropy step 1: are our replicated state and our membership views
    /// already the same?
    SyncFingerprint {
        fingerprint: u64,
        #[serde(default)]
        members: u64,
    },
    /// Membership anti-entropy: my member list; answer with yours.
    SyncMembers {
        states: Vec<MemberState>,
    },
    /// Agent to agent: members the sender just declared down (see
    /// [`crate::cluster::membership::DeathNotice`]); applied like a member list, answered `Ack`.
    Verdict {
        states: Vec<MemberState>,
    },
    /// Anti-entropy step 2: the versions I hold; answer with what I lack and what you want.
    SyncDigest {
        digest: StateDigest,
    },
    /// Agent to agent: a learner replica's call to a peer replica `workload` that this agent
    /// runs. The call's body follows the frame as raw bytes (see [`crate::wire::write_body`]);
    /// the answer is `LearnerAnswer`, followed by its body. Node certificates only.
    LearnerCall {
        workload: String,
        from: u32,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    Pong {
        node: String,
        version: String,
    },
    Deployed(DeployOutcome),
    Version {
        version: Timestamp,
    },
    Maintained {
        node: String,
        mode: Mode,
    },
    Events {
        events: Vec<EventView>,
    },
    Services {
        services: Vec<ServiceView>,
    },
    History {
        app: String,
        /// Newest first; the first is the current generation.
        generations: Vec<GenerationView>,
    },
    Deleted {
        name: String,
    },
    Apps {
        apps: Vec<AppView>,
    },
    Workloads {
        workloads: Vec<WorkloadView>,
    },
    Nodes {
        nodes: Vec<NodeView>,
    },
    App {
        app: AppDetail,
    },
    Node {
        node: NodeDetail,
    },
    Log {
        line: LogLine,
    },
    /// End of a finite log answer.
    LogEnd,
    Ack,
    /// The answer to a push: for each entry, in the push's order, whether this agent already
    /// had it (see [`crate::cluster::dissemination`]'s feedback).
    Pushed {
        known: Vec<bool>,
    },
    InSync {
        in_sync: bool,
        #[serde(default = "yes")]
        members_in_sync: bool,
    },
    Members {
        states: Vec<MemberState>,
    },
    SyncReply {
        updates: Updates,
        wanted: Wanted,
    },
    /// The answer to `LearnerCall`; its body follows.
    LearnerAnswer,
    Error {
        kind: ErrorKind,
        message: String,
    },
    /// An application write the agent prepared (validated, versioned, not yet applied): the
    /// admin seals its [`PendingWrite::statement`] and sends it back as `Request::Commit`.
    Seal {
        write: PendingWrite,
    },
    /// The revocation is in the replicated state: every agent refuses the certificate as
    /// soon as it hears of it.
    Revoked {
        name: String,
        serial: String,
    },
    SealedBy {
        apps: Vec<(String, Timestamp)>,
    },
}

/// An application write prepared by an agent for an admin to seal: a deploy (`value`) or a
/// deletion (`value: None`) of application `app` at `version`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingWrite {
    pub app: String,
    pub version: Timestamp,
    pub value: Option<StoredApp>,
    /// What the deploy changes, to report once it is committed (not sealed: display only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<DeployOutcome>,
}

impl PendingWrite {
    /// The bytes the admin's seal covers.
    pub fn statement(&self) -> Result<Vec<u8>, Refusal> {
        statement(Map::Apps, &self.app, &self.version, self.value.as_ref())
    }

    /// The replicated entry this write becomes, sealed.
    pub fn entry(&self, seal: &Seal) -> Entry<StoredApp> {
        self.unsealed().sealed(encode(seal))
    }

    /// The replicated entry this write becomes, without a seal (only agents that check none
    /// accept it).
    pub fn unsealed(&self) -> Entry<StoredApp> {
        match &self.value {
            Some(app) => Entry::live(app.clone(), self.version.clone()),
            None => Entry::tombstone(self.version.clone()),
        }
    }
}

/// Why a request failed. The CLI maps `Invalid` to exit code 2 and the rest to 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Invalid,
    NotFound,
    Forbidden,
    /// The state changed under the request; running it again usually succeeds.
    Conflict,
    Internal,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployOutcome {
    pub app: String,
    pub generation: u64,
    /// Components whose replicas are (re)started by this deploy.
    pub changed: Vec<String>,
    /// Components left running as they were.
    pub unchanged: Vec<String>,
    /// Components removed from the application.
    pub removed: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadState {
    Pending,
    Starting,
    /// Runs; for a replica with a readiness probe, not (yet, or no longer) ready.
    Running,
    Succeeded,
    Failed,
    Stopped,
    /// Runs and its readiness probe passes. Only replicas with a readiness probe report it;
    /// one without counts as ready once it runs (see [`WorkloadState::is_ready`]). An agent
    /// older than this state cannot read a status that carries it.
    Ready,
}

impl WorkloadState {
    /// Runs, ready or not.
    pub fn is_up(self) -> bool {
        matches!(self, WorkloadState::Running | WorkloadState::Ready)
    }

    /// Ready to serve: its readiness probe passes, or it runs and has none.
    pub fn is_ready(self, has_readiness_probe: bool) -> bool {
        self == WorkloadState::Ready || (self == WorkloadState::Running && !has_readiness_probe)
    }

    /// What rollouts, drains and `dependsOn` wait for: ready, or finished successfully (a
    /// run-to-completion policy's replica has nothing more to become).
    pub fn counts_as_ready(self, has_readiness_probe: bool) -> bool {
        self.is_ready(has_readiness_probe) || self == WorkloadState::Succeeded
    }
}

impl std::fmt::Display for WorkloadState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self).expect("state serialises");
        f.write_str(s.as_str().unwrap_or("?"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadView {
    /// `APP/COMPONENT/REPLICA`.
    pub id: String,
    pub app: String,
    pub component: String,
    pub replica: u32,
    #[serde(rename = "type")]
    pub kind: String,
    pub node: String,
    pub state: WorkloadState,
    pub restarts: u32,
    pub message: String,
    /// OS process id while running (process workloads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// How far a learner replica got, as it last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learner: Option<LearnerProgress>,
    /// When it entered `state` (wall-clock milliseconds since the Unix epoch, its node's
    /// clock), where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// Its own address, where it has one (a container on a bridge network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppStatus {
    Running,
    Progressing,
    Degraded,
    Unschedulable,
    Deleting,
    /// A rollout missed its progress deadline and returned to the last available definition.
    #[serde(rename = "rolled-back")]
    RolledBack,
}

impl std::fmt::Display for AppStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self).expect("status serialises");
        f.write_str(s.as_str().unwrap_or("?"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppView {
    pub name: String,
    pub components: usize,
    pub status: AppStatus,
    pub message: String,
    pub generation: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppDetail {
    pub summary: AppView,
    pub components: Vec<ComponentDetail>,
    pub workloads: Vec<WorkloadView>,
    /// The application's latest events, oldest first.
    #[serde(default)]
    pub events: Vec<EventView>,
}

/// One event, as `get events` shows it (see [`crate::rollout::activity`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EventView {
    /// Milliseconds since the Unix epoch, on the recording node's clock.
    pub at_ms: u64,
    /// The node that recorded it.
    pub node: String,
    pub reason: String,
    /// `APP/COMPONENT/REPLICA` or `APP/COMPONENT`.
    pub object: String,
    pub message: String,
}

/// Where a component's rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutState {
    /// Replicas are being replaced, or are not available yet.
    Progressing,
    /// Every replica runs the current definition and is available.
    Complete,
    /// The progress deadline passed: replicas return (or have returned) to the last
    /// definition that was fully available.
    RolledBack,
}

impl std::fmt::Display for RolloutState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self).expect("state serialises");
        f.write_str(s.as_str().unwrap_or("?"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutView {
    pub state: RolloutState,
    /// Replicas placed on the definition the rollout heads for (surge replicas included),
    /// available or not yet, as `kubectl rollout status` counts "updated".
    pub updated: u32,
    /// Replicas still on another definition.
    pub outdated: u32,
    /// Replicas available (ready for `minReadySeconds`) on the definition each should run.
    pub available: u32,
    /// When a progressing rollout is rolled back unless complete (milliseconds since the
    /// Unix epoch), where it has a definition to return to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

/// One generation of an application, as `rollout history` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationView {
    pub generation: u64,
    pub deployed_ms: u64,
    /// Components whose definition differs from the generation before it.
    pub changed: Vec<String>,
    pub current: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentDetail {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub replicas: u32,
    pub running: u32,
    /// Replicas ready to serve: their readiness probe passes, or they run and have none.
    #[serde(default)]
    pub ready: u32,
    /// Why replicas could not be placed, when they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unschedulable: Option<String>,
    /// Its rollout (every component has one: a first deploy is a rollout too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutView>,
    /// For learners: progress and accuracy across the replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning: Option<LearningSummary>,
    pub depends_on: Vec<String>,
}

/// A learner component across its replicas, from what each last reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearningSummary {
    /// Replicas that reported at least once.
    pub reporting: u32,
    /// The slowest and the fastest replica's epoch, of `epochs`.
    pub epoch_min: u64,
    pub epoch_max: u64,
    pub epochs: u64,
    /// Test accuracy across the replicas.
    pub accuracy_min: f64,
    pub accuracy_median: f64,
    pub accuracy_max: f64,
    pub finished: u32,
    /// `NODE:PATH` of each finished replica's final model.
    pub final_models: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Alive,
    Suspect,
    Dead,
    Left,
    /// An admin revoked the certificate it last used; it is no member until it comes back
    /// with a new one.
    Revoked,
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self).expect("state serialises");
        f.write_str(s.as_str().unwrap_or("?"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeView {
    pub name: String,
    pub address: String,
    pub state: NodeState,
    pub labels: BTreeMap<String, String>,
    pub capacity: Resources,
    pub runtimes: Vec<String>,
    pub workloads: usize,
    pub version: String,
    /// When the certificate its record is sealed with expires (seconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expires: Option<i64>,
    /// `cordoned` or `draining`, when an admin said so (see [`crate::maintenance`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<Mode>,
    /// Where its replicas and node ports are reached (`gossipd --node-ip`).
    #[serde(default, skip_serializing_if = "String::is_empty", rename = "nodeIp")]
    pub node_ip: String,
}

/// A service (`get services`): where the answering agent serves it, and the ready replicas
/// it forwards to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    /// `COMPONENT.APP.svc.gossip`.
    pub name: String,
    pub app: String,
    pub component: String,
    /// `ClusterIP` or `NodePort`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The service's address on the answering node.
    pub address: String,
    pub ports: Vec<ServicePortView>,
    /// The replicas its first port forwards to, the answering node's first.
    pub endpoints: Vec<EndpointView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePortView {
    pub port: u16,
    /// `TCP` or `UDP`.
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where every node serves it, for a `NodePort` service.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "nodePort")]
    pub node_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointView {
    /// `APP/COMPONENT/REPLICA`.
    pub replica: String,
    pub node: String,
    pub address: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeDetail {
    pub summary: NodeView,
    /// Replicas the plan places on this node.
    pub workloads: Vec<WorkloadView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// `APP/COMPONENT/REPLICA` the line came from.
    pub workload: String,
    /// Milliseconds since the Unix epoch, when the agent read the line.
    pub time_ms: u64,
    pub stream: LogStream,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
    /// Lines the agent itself writes about the workload (started, exited, restarting).
    Agent,
}
