//! The OAM document as written: serde shapes for KubeVela's `core.oam.dev/v1beta1` vocabulary.
//!
//! These types only decide what is well typed; what is meaningful is decided by the validator.
//! Every struct denies unknown fields, so a typo is reported instead of silently ignored.
//! Fields are optional wherever the validator can say something more helpful about a missing
//! field than serde can, and every nested mapping (a component, a trait, an env entry) stays a
//! [`Value`] here and is decoded on its own, so one mistake does not hide the others.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeOwned, Error as _, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer};
use serde_yaml::Value;

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "an OAM Application: a mapping with apiVersion, kind, metadata and spec"
)]
pub(crate) struct RawApplication {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub metadata: Option<Value>,
    pub spec: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "metadata: a mapping with name (and optionally namespace, labels, annotations)"
)]
pub(crate) struct RawMetadata {
    pub name: Option<String>,
    /// Accepted so that manifests written for KubeVela load unchanged; gossipctl has no use for
    /// namespaces, labels or annotations.
    #[serde(rename = "namespace")]
    pub _namespace: Option<IgnoredAny>,
    #[serde(rename = "labels")]
    pub _labels: Option<IgnoredAny>,
    #[serde(rename = "annotations")]
    pub _annotations: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "spec: a mapping with components (and optionally policies)"
)]
pub(crate) struct RawSpec {
    pub components: Option<Vec<Value>>,
    pub policies: Option<Vec<Value>>,
    /// KubeVela's workflow: accepted when it only deploys (see [`crate::workflow`]).
    pub workflow: Option<Value>,
}

/// `spec.workflow`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "workflow: a mapping with steps (and optionally mode)"
)]
pub(crate) struct RawWorkflow {
    pub steps: Option<Vec<Value>>,
    #[serde(rename = "mode")]
    pub _mode: Option<IgnoredAny>,
    /// A reference to a stored `Workflow` object: refused with a message of its own.
    #[serde(rename = "ref")]
    pub reference: Option<IgnoredAny>,
}

/// One step of `spec.workflow.steps`. Only the type and the deploy properties matter; the rest
/// is KubeVela's scheduling of steps, which gossipctl replaces by `dependsOn` order.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a workflow step: a mapping with name, type and properties"
)]
pub(crate) struct RawStep {
    #[serde(rename = "name")]
    pub _name: Option<IgnoredAny>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub properties: Option<Value>,
    #[serde(rename = "dependsOn")]
    pub _depends_on: Option<IgnoredAny>,
    #[serde(rename = "if")]
    pub _condition: Option<IgnoredAny>,
    #[serde(rename = "timeout")]
    pub _timeout: Option<IgnoredAny>,
    #[serde(rename = "meta")]
    pub _meta: Option<IgnoredAny>,
    #[serde(rename = "inputs")]
    pub _inputs: Option<IgnoredAny>,
    #[serde(rename = "outputs")]
    pub _outputs: Option<IgnoredAny>,
    pub sub_steps: Option<IgnoredAny>,
}

/// A `deploy` step's properties.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "deploy properties: a mapping with policies, parallelism, auto and ignoreTerraformComponent"
)]
pub(crate) struct RawDeployStep {
    pub policies: Option<Vec<String>>,
    #[serde(rename = "parallelism")]
    pub _parallelism: Option<IgnoredAny>,
    pub auto: Option<bool>,
    #[serde(rename = "ignoreTerraformComponent")]
    pub _ignore_terraform_component: Option<IgnoredAny>,
}

/// `override` policy properties.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "override properties: a mapping with components and selector"
)]
pub(crate) struct RawOverride {
    pub components: Option<Vec<Value>>,
    pub selector: Option<Vec<String>>,
}

/// One entry of an `override` policy's `components`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a component patch: a mapping with name, type, properties and traits"
)]
pub(crate) struct RawComponentPatch {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub properties: Option<Value>,
    pub traits: Option<Vec<Value>>,
}

/// One trait of a component patch.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a trait patch: a mapping with type, properties and disable"
)]
pub(crate) struct RawTraitPatch {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub properties: Option<Value>,
    pub disable: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a component: a mapping with name, type, properties, traits and dependsOn"
)]
pub(crate) struct RawComponent {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub properties: Option<Value>,
    pub traits: Option<Vec<Value>>,
    pub depends_on: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a trait: a mapping with type and properties"
)]
pub(crate) struct RawTrait {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub properties: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a policy: a mapping with name, type and properties"
)]
pub(crate) struct RawPolicy {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub properties: Option<Value>,
}

/// `type: process` properties.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "process properties: a mapping with command, env, workingDir, restart, livenessProbe and readinessProbe"
)]
pub(crate) struct RawProcess {
    pub command: Option<Vec<String>>,
    pub env: Option<Vec<Value>>,
    pub working_dir: Option<String>,
    pub restart: Option<String>,
    pub liveness_probe: Option<Value>,
    pub readiness_probe: Option<Value>,
}

/// `type: webservice | worker` properties, as in KubeVela's webservice definition.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "container properties: a mapping with image, cmd, args, env, port, ports, cpu, memory, requests, limits, restart, livenessProbe and readinessProbe"
)]
pub(crate) struct RawContainer {
    pub image: Option<String>,
    pub cmd: Option<Vec<String>>,
    pub args: Option<Vec<String>>,
    pub env: Option<Vec<Value>>,
    pub port: Option<i64>,
    pub ports: Option<Vec<Value>>,
    /// Numbers or strings (`0.5`, `"500m"`), hence untyped.
    pub cpu: Option<Value>,
    pub memory: Option<Value>,
    /// Kubernetes' form, as newer KubeVela webservice definitions take it.
    pub requests: Option<Value>,
    pub limits: Option<Value>,
    pub restart: Option<String>,
    pub liveness_probe: Option<Value>,
    pub readiness_probe: Option<Value>,
}

/// `type: learner` properties. Every field is optional: a missing one takes the value of
/// [`LearnerSpec::default`](crate::model::LearnerSpec). Numbers are read as any [`Integer`] or
/// [`Number`] so that an out-of-range value gets the validator's message, not serde's.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "learner properties: a mapping with dataset, model, aggregation, epochs, window, batchSize, learningRate, partition, seed, peers, intake and backend"
)]
pub(crate) struct RawLearner {
    pub dataset: Option<String>,
    pub model: Option<String>,
    pub aggregation: Option<String>,
    pub epochs: Option<Integer>,
    pub window: Option<Integer>,
    pub batch_size: Option<Integer>,
    pub learning_rate: Option<Number>,
    pub partition: Option<String>,
    pub seed: Option<Integer>,
    pub peers: Option<Integer>,
    pub intake: Option<RawIntake>,
    pub backend: Option<String>,
}

/// Any YAML integer, negative or beyond `i64`; type errors say "expected an integer" rather
/// than naming a Rust type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Integer(pub i128);

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntegerVisitor;

        impl Visitor<'_> for IntegerVisitor {
            type Value = Integer;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer")
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Integer, E> {
                Ok(Integer(value.into()))
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Integer, E> {
                Ok(Integer(value.into()))
            }

            fn visit_i128<E: serde::de::Error>(self, value: i128) -> Result<Integer, E> {
                Ok(Integer(value))
            }
        }

        deserializer.deserialize_any(IntegerVisitor)
    }
}

/// A learner's `intake`: a count of messages per epoch, or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RawIntake {
    All,
    Count(Integer),
}

impl<'de> Deserialize<'de> for RawIntake {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntakeVisitor;

        impl Visitor<'_> for IntakeVisitor {
            type Value = RawIntake;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a positive integer or `all`")
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<RawIntake, E> {
                Ok(RawIntake::Count(Integer(value.into())))
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<RawIntake, E> {
                Ok(RawIntake::Count(Integer(value.into())))
            }

            fn visit_i128<E: serde::de::Error>(self, value: i128) -> Result<RawIntake, E> {
                Ok(RawIntake::Count(Integer(value)))
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<RawIntake, E> {
                match value {
                    "all" => Ok(RawIntake::All),
                    other => Err(E::invalid_value(serde::de::Unexpected::Str(other), &self)),
                }
            }
        }

        deserializer.deserialize_any(IntakeVisitor)
    }
}

/// Any YAML number, integers included (`1` is `1.0`); type errors say "expected a number".
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Number(pub f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;

        impl Visitor<'_> for NumberVisitor {
            type Value = Number;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }

            fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Number, E> {
                Ok(Number(value))
            }

            // Integers as large as `u64` become the nearest float, as YAML readers do.
            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Number, E> {
                Ok(Number(value as f64))
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Number, E> {
                Ok(Number(value as f64))
            }
        }

        deserializer.deserialize_any(NumberVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an environment variable: a mapping with name and value"
)]
pub(crate) struct RawEnvVar {
    pub name: String,
    /// Untyped so that `value: 8080` can be refused with advice instead of serde's type error.
    pub value: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a port: a mapping with port, expose and hostPort"
)]
pub(crate) struct RawPort {
    pub port: i64,
    pub expose: Option<bool>,
    pub host_port: Option<i64>,
}

/// `scaler` trait properties.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "scaler properties: a mapping with replicas"
)]
pub(crate) struct RawScaler {
    pub replicas: Option<i64>,
}

/// `rollout` trait properties. The two limits are counts or percentages, hence untyped.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "rollout properties: a mapping with maxUnavailable, maxSurge, minReadySeconds and progressDeadlineSeconds"
)]
pub(crate) struct RawRollout {
    pub max_unavailable: Option<Value>,
    pub max_surge: Option<Value>,
    pub min_ready_seconds: Option<Integer>,
    pub progress_deadline_seconds: Option<Integer>,
}

/// `affinity` trait properties.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "affinity properties: a mapping with nodeAffinity, nodeSelector, podAffinity and podAntiAffinity"
)]
pub(crate) struct RawAffinity {
    pub node_affinity: Option<Value>,
    pub node_selector: Option<BTreeMap<String, String>>,
    pub pod_affinity: Option<Value>,
    pub pod_anti_affinity: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "nodeAffinity: a mapping with required and preferred"
)]
pub(crate) struct RawNodeAffinity {
    pub required: Option<Value>,
    pub preferred: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a node selector: a mapping with nodeSelectorTerms"
)]
pub(crate) struct RawNodeSelector {
    pub node_selector_terms: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a node selector term: a mapping with matchExpressions"
)]
pub(crate) struct RawSelectorTerm {
    pub match_expressions: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a match expression: a mapping with key, operator and values"
)]
pub(crate) struct RawMatchExpression {
    pub key: String,
    pub operator: String,
    pub values: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a preferred term: a mapping with weight and preference"
)]
pub(crate) struct RawPreferredTerm {
    pub weight: i64,
    pub preference: Value,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with components (a list of component names)"
)]
pub(crate) struct RawComponentList {
    pub components: Vec<String>,
}

/// `podAffinity` / `podAntiAffinity` in Kubernetes' shape, as KubeVela's affinity trait has it.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with components, or Kubernetes' required and preferred"
)]
pub(crate) struct RawPodAffinity {
    pub required: Option<Vec<Value>>,
    pub preferred: Option<IgnoredAny>,
}

/// One Kubernetes `PodAffinityTerm`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a pod affinity term: a mapping with labelSelector and topologyKey"
)]
pub(crate) struct RawPodAffinityTerm {
    pub label_selector: Option<Value>,
    pub topology_key: Option<String>,
    pub namespaces: Option<IgnoredAny>,
    pub namespace_selector: Option<IgnoredAny>,
    pub match_label_keys: Option<IgnoredAny>,
    pub mismatch_label_keys: Option<IgnoredAny>,
}

/// A Kubernetes `LabelSelector`.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a label selector: a mapping with matchLabels and matchExpressions"
)]
pub(crate) struct RawLabelSelector {
    pub match_labels: Option<BTreeMap<String, String>>,
    pub match_expressions: Option<Vec<Value>>,
}

/// `spread` trait properties.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "spread properties: a mapping with topologyKey and maxSkew"
)]
pub(crate) struct RawSpread {
    pub topology_key: Option<String>,
    pub max_skew: Option<i64>,
}

/// One constraint of `topologyspreadconstraints`, in Kubernetes' shape.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a topology spread constraint: a mapping with maxSkew, topologyKey, whenUnsatisfiable and labelSelector"
)]
pub(crate) struct RawSpreadConstraint {
    pub topology_key: Option<String>,
    pub max_skew: Option<i64>,
    pub when_unsatisfiable: Option<String>,
    pub label_selector: Option<Value>,
    pub min_domains: Option<IgnoredAny>,
    pub match_label_keys: Option<IgnoredAny>,
    pub node_affinity_policy: Option<IgnoredAny>,
    pub node_taints_policy: Option<IgnoredAny>,
}

/// `topologyspreadconstraints` trait properties.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "topologyspreadconstraints properties: a mapping with constraints"
)]
pub(crate) struct RawTopologySpread {
    pub constraints: Vec<Value>,
}

/// `resource` trait properties: KubeVela's short form (`cpu`, `memory`) or its Kubernetes form
/// (`requests`, `limits`).
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "resource properties: a mapping with cpu and memory, or requests and limits"
)]
pub(crate) struct RawResource {
    pub cpu: Option<Value>,
    pub memory: Option<Value>,
    pub requests: Option<Value>,
    pub limits: Option<Value>,
}

/// `requests` or `limits` of the `resource` trait.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with cpu and memory")]
pub(crate) struct RawAmounts {
    pub cpu: Option<Value>,
    pub memory: Option<Value>,
}

/// The field names serde's derive gave `T`, learnt by letting `T` start deserializing from a
/// deserializer that only records what it is asked for. This lets the validator report every
/// unknown field of a mapping, not just the first one serde stops at, from the single source of
/// truth that is the struct definition.
pub(crate) fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // The recorder always fails once it has what it needs; the error carries nothing.
    let _ = T::deserialize(FieldRecorder(&mut fields));
    fields
}

struct FieldRecorder<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldRecorder<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(Self::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(Self::Error::custom("fields recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
