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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
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

impl Workload {
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

/// `type: learner`: a gossip-learning replica. Its properties are kept as written, with keys in
/// a canonical order, until the learner runtime gives them a schema of their own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnerSpec {
    #[serde(default)]
    pub properties: BTreeMap<String, serde_json::Value>,
}

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchExpression {
    pub key: String,
    pub operator: Operator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
        let canonical =
            serde_json::to_vec(&(&self.workload, &self.resources)).expect("component serialises");
        xxhash_rust::xxh3::xxh3_64(&canonical)
    }
}
