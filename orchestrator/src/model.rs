//! The validated application model: what the scheduler and the runtimes consume.
//!
//! An OAM document is parsed and checked once (see [`crate::parse`]); everything after that works on
//! these types, which cannot express an invalid application. They are serialisable so agents can
//! store and replicate them, and every field has a stable, documented meaning.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A deployable application: `core.oam.dev/v1beta1` `Application`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Application {
    /// `metadata.name`, a DNS-1123 label.
    pub name: String,
    pub components: Vec<Component>,
    /// `spec.policies[]`, kept as written: `topology` and `override` are part of the vocabulary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Policy>,
}

/// One component of an application, with its traits already turned into intents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// A DNS-1123 label, unique within the application.
    pub name: String,
    pub workload: Workload,
    /// From the `scaler` trait; 1 without it.
    pub replicas: u32,
    #[serde(default)]
    pub placement: Placement,
    /// From the `resource` trait (or a container's `cpu`/`memory`): what each replica reserves.
    #[serde(default)]
    pub resources: Resources,
    /// From the `resource` trait's `limits`: what a container replica may use beyond its
    /// reservation. A zero field means the reservation is the limit, as it always is for
    /// `cpu` and `memory` written without `requests`/`limits`.
    #[serde(default, skip_serializing_if = "Resources::is_zero")]
    pub limits: Resources,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// From the `rollout` trait: how a changed definition replaces the replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::rollout::RolloutSpec>,
    /// From the `expose` trait: the component as a service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<crate::services::Service>,
    /// From the `gateway` (or `ingress`) trait: HTTP routes to the component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<crate::services::Gateway>,
}

/// What a replica runs. The tag is the OAM component `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Workload {
    Process(ProcessSpec),
    Webservice(ContainerSpec),
    Worker(ContainerSpec),
    Learner(LearnerSpec),
}

#[cfg(test)]
impl Workload {
    /// `true`, always restarted: for tests that only place a workload.
    pub(crate) fn placeholder_process() -> Self {
        Workload::Process(ProcessSpec {
            command: vec!["true".into()],
            env: vec![],
            working_dir: None,
            restart: RestartPolicy::Always,
            probes: crate::Probes::default(),
        })
    }
}

impl Workload {
    /// Its health probes; a learner has none.
    pub fn probes(&self) -> Option<&crate::Probes> {
        match self {
            Workload::Process(spec) => Some(&spec.probes),
            Workload::Webservice(spec) | Workload::Worker(spec) => Some(&spec.probes),
            Workload::Learner(_) => None,
        }
    }

    /// The OAM component type name, as written in the YAML.
    pub fn type_name(&self) -> &'static str {
        match self {
            Workload::Process(_) => "process",
            Workload::Webservice(_) => "webservice",
            Workload::Worker(_) => "worker",
            Workload::Learner(_) => "learner",
        }
    }
}

/// `type: process`: a child process of the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessSpec {
    /// Program, then its arguments. Never empty.
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// `livenessProbe` and `readinessProbe`, at the same level in the JSON.
    #[serde(flatten)]
    pub probes: crate::Probes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// When a replica whose process exited is started again (Kubernetes' `restartPolicy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

/// `type: webservice | worker`: a container run through the node's container engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSpec {
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub restart: RestartPolicy,
    /// `livenessProbe` and `readinessProbe`, at the same level in the JSON.
    #[serde(flatten)]
    pub probes: crate::Probes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortSpec {
    pub port: u16,
    #[serde(default)]
    pub expose: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
}

/// `type: learner`: one replica of a gossip-learning job. Replica `i` of `N` trains on shard `i`
/// of `N` and merges with its peers every `window` epochs. Defaults follow the Delta Sum paper's
/// protocol (CNN, Adam 1e-3, batch 64, 200 epochs, window 10, about 4 neighbours).
///
/// The names are checked against the lists below; the learner crate parses the same names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LearnerSpec {
    /// `fashion-mnist` (the Debian package's files, or the directory `$GOSSIP_DATA` names instead), or a directory of IDX files.
    pub dataset: String,
    /// One of [`LEARNER_MODELS`].
    pub model: String,
    /// One of [`LEARNER_AGGREGATIONS`].
    pub aggregation: String,
    pub epochs: u32,
    /// Epochs between aggregations.
    pub window: u32,
    pub batch_size: u32,
    pub learning_rate: LearningRate,
    /// `iid` or `dirichlet:ALPHA` with ALPHA > 0.
    pub partition: String,
    /// Drives the shared initial weights and the data split; every replica must agree on it.
    pub seed: u64,
    /// How many neighbours each replica exchanges with (nearest by round-trip time).
    pub peers: u32,
    /// Peer messages taken into the window per epoch, or [`INTAKE_ALL`] (the default, as the
    /// paper's learner: every neighbour's message that is new since the last drain).
    pub intake: u32,
    /// One of [`LEARNER_BACKENDS`].
    pub backend: String,
}

pub const LEARNER_MODELS: [&str; 2] = ["cnn", "mlp"];
pub const LEARNER_AGGREGATIONS: [&str; 4] = [
    "delta-sum",
    "average",
    "variance-corrected",
    "delta-sum-in-place",
];
pub const LEARNER_BACKENDS: [&str; 2] = ["flex", "ndarray"];
/// `intake: all`: every new peer message each epoch.
pub const INTAKE_ALL: u32 = 0;

impl Default for LearnerSpec {
    fn default() -> Self {
        LearnerSpec {
            dataset: "fashion-mnist".into(),
            model: "cnn".into(),
            aggregation: "delta-sum".into(),
            epochs: 200,
            window: 10,
            batch_size: 64,
            learning_rate: LearningRate(1e-3),
            partition: "iid".into(),
            seed: 1,
            peers: 4,
            intake: INTAKE_ALL,
            backend: "flex".into(),
        }
    }
}

/// A positive, finite learning rate. Compared bit for bit, so a component's fingerprint (and
/// with it, whether a redeploy restarts it) is exact.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LearningRate(pub f64);

impl PartialEq for LearningRate {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for LearningRate {}

/// Where replicas may and should go: the `affinity` and `spread` traits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// `nodeSelector` short form: every pair must match a node label exactly.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// `nodeAffinity.required.nodeSelectorTerms`: a node qualifies if ANY term matches, and a term
    /// matches if ALL its expressions do (Kubernetes semantics). Empty means no constraint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_terms: Vec<Vec<MatchExpression>>,
    /// `nodeAffinity.preferred`: soft preferences, summed by weight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred: Vec<PreferredTerm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<Spread>,
    /// `podAffinity`: run on nodes that run these components of the same application.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub colocate_with: Vec<String>,
    /// `podAntiAffinity`: never share a node with these components of the same application.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub avoid: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MatchExpression {
    pub key: String,
    pub operator: Operator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl MatchExpression {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PreferredTerm {
    /// 1..=100, as in Kubernetes.
    pub weight: u32,
    pub expressions: Vec<MatchExpression>,
}

/// `spread`: replica counts differ by at most `max_skew` across nodes (without a topology key)
/// or across the values of a node label (with one). Over nodes with the default skew of 1,
/// replicas take distinct nodes while there are as many nodes as replicas, and share nodes
/// evenly when a failure leaves fewer, as Kubernetes' topology spread over hostnames does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spread {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_key: Option<String>,
    pub max_skew: u32,
}

/// What one replica reserves on its node. Zero means "reserves nothing".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// Thousandths of a CPU core (`"0.5"` and `"500m"` are both 500).
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

impl Resources {
    pub fn is_zero(&self) -> bool {
        self.cpu_millis == 0 && self.memory_bytes == 0
    }
}

/// `spec.policies[]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub properties: BTreeMap<String, serde_json::Value>,
}

/// A replica's identity: `APP/COMPONENT/REPLICA`, e.g. `mnist/learner/3`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkloadId {
    pub app: String,
    pub component: String,
    pub replica: u32,
}

impl std::fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.app, self.component, self.replica)
    }
}

impl std::str::FromStr for WorkloadId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(app), Some(component), Some(replica), None)
                if !app.is_empty() && !component.is_empty() =>
            {
                let replica = replica
                    .parse()
                    .map_err(|_| format!("{s:?}: replica must be a number"))?;
                Ok(WorkloadId {
                    app: app.to_string(),
                    component: component.to_string(),
                    replica,
                })
            }
            _ => Err(format!("{s:?}: expected APP/COMPONENT/REPLICA")),
        }
    }
}

impl Component {
    /// A stable digest of what defines how one replica runs (its workload and reservation).
    /// Agents compare it to decide whether a redeploy changed a component (replace its replicas)
    /// or not (leave them running). Scaling and placement changes are not in it: they add, remove
    /// or move replicas without restarting the others. xxh3 is specified and stable across
    /// builds and versions, unlike std's hasher.
    pub fn fingerprint(&self) -> u64 {
        // Limits joined the definition later; leaving them out when unset keeps the
        // fingerprints of components that have none as they were.
        let canonical = if self.limits.is_zero() {
            serde_json::to_vec(&(&self.workload, &self.resources))
        } else {
            serde_json::to_vec(&(&self.workload, &self.resources, &self.limits))
        }
        .expect("component serialises");
        xxhash_rust::xxh3::xxh3_64(&canonical)
    }

    /// How this component's replicas are replaced when its definition changes: the
    /// `rollout` trait's values, or the defaults (one replica unavailable at a time; one
    /// surge replica for containers, none for processes and learners, which may hold a
    /// node-local resource such as a port; two minutes to become ready).
    pub fn rollout_policy(&self) -> crate::rollout::RolloutPolicy {
        let default_surge = match self.workload {
            Workload::Webservice(_) | Workload::Worker(_) => 1,
            Workload::Process(_) | Workload::Learner(_) => 0,
        };
        match &self.rollout {
            Some(spec) => spec.policy(self.replicas, default_surge),
            None => crate::rollout::RolloutPolicy::with_surge(default_surge),
        }
    }

    /// The most a container replica may use: the limit where one is set, else the reservation.
    pub fn limit(&self) -> Resources {
        let pick = |limit: u64, reserved: u64| if limit > 0 { limit } else { reserved };
        Resources {
            cpu_millis: pick(self.limits.cpu_millis, self.resources.cpu_millis),
            memory_bytes: pick(self.limits.memory_bytes, self.resources.memory_bytes),
        }
    }

    /// The readiness probe of a process or container component.
    pub fn readiness_probe(&self) -> Option<&crate::Probe> {
        self.workload.probes()?.readiness_probe.as_ref()
    }
}
