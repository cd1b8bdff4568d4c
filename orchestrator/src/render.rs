//! Writing an [`Application`] back out as the OAM document a user would have written, so that
//! what the cluster runs can be shown, diffed and re-applied.

use serde_yaml::{Mapping, Value};

use crate::emit::to_yaml;
use crate::model::{
    Application, Component, ContainerSpec, EnvVar, INTAKE_ALL, LearnerSpec, MatchExpression,
    Operator, Placement, ProcessSpec, Resources, RestartPolicy, Workload,
};
use crate::probes::{Probe, ProbeAction, Probes};
use crate::quantity::{format_cpu, format_memory};
use crate::rollout::Share;
use crate::services::ServiceType;

impl Application {
    /// Renders this application as a `core.oam.dev/v1beta1` document that
    /// [`parse_application`](crate::parse_application) accepts and turns back into an equal
    /// `Application`. Defaults (one replica, `restart: Always`) are left out, except a learner's
    /// properties, which are written in full.
    pub fn to_oam_yaml(&self) -> String {
        let mut spec = Fields::new().field(
            "components",
            sequence(self.components.iter().map(render_component)),
        );
        if !self.policies.is_empty() {
            let policies = self.policies.iter().map(|policy| {
                Fields::new()
                    .field("name", policy.name.as_str())
                    .field("type", policy.kind.as_str())
                    .field("properties", json_object(&policy.properties))
                    .into()
            });
            spec = spec.field("policies", sequence(policies));
        }
        let document: Value = Fields::new()
            .field("apiVersion", "core.oam.dev/v1beta1")
            .field("kind", "Application")
            .field("metadata", Fields::new().field("name", self.name.as_str()))
            .field("spec", spec)
            .into();
        to_yaml(&document)
    }
}

fn render_component(component: &Component) -> Value {
    let properties = match &component.workload {
        Workload::Process(process) => render_process(process),
        Workload::Webservice(container) | Workload::Worker(container) => {
            render_container(container)
        }
        Workload::Learner(learner) => render_learner(learner),
    };
    let mut fields = Fields::new()
        .field("name", component.name.as_str())
        .field("type", component.workload.type_name())
        .field("properties", properties);
    if !component.depends_on.is_empty() {
        fields = fields.field("dependsOn", strings(&component.depends_on));
    }
    let traits = render_traits(component);
    if !traits.is_empty() {
        fields = fields.field("traits", Value::Sequence(traits));
    }
    fields.into()
}

fn render_process(process: &ProcessSpec) -> Value {
    let mut fields = Fields::new().field("command", strings(&process.command));
    if !process.env.is_empty() {
        fields = fields.field("env", render_env(&process.env));
    }
    if let Some(working_dir) = &process.working_dir {
        fields = fields.field("workingDir", working_dir.as_str());
    }
    let fields = render_restart(fields, process.restart);
    render_probes(fields, &process.probes).into()
}

/// Every field, defaults included: what a learner trains is worth seeing in full.
fn render_learner(learner: &LearnerSpec) -> Value {
    Fields::new()
        .field("dataset", learner.dataset.as_str())
        .field("model", learner.model.as_str())
        .field("aggregation", learner.aggregation.as_str())
        .field("epochs", learner.epochs)
        .field("window", learner.window)
        .field("batchSize", learner.batch_size)
        .field("learningRate", learner.learning_rate.0)
        .field("partition", learner.partition.as_str())
        .field("seed", learner.seed)
        .field("peers", learner.peers)
        .field(
            "intake",
            if learner.intake == INTAKE_ALL {
                Value::from("all")
            } else {
                Value::from(learner.intake)
            },
        )
        .field("backend", learner.backend.as_str())
        .into()
}

fn render_container(container: &ContainerSpec) -> Value {
    let mut fields = Fields::new().field("image", container.image.as_str());
    if !container.cmd.is_empty() {
        fields = fields.field("cmd", strings(&container.cmd));
    }
    if !container.args.is_empty() {
        fields = fields.field("args", strings(&container.args));
    }
    if !container.env.is_empty() {
        fields = fields.field("env", render_env(&container.env));
    }
    if !container.ports.is_empty() {
        let ports = container.ports.iter().map(|port| {
            let mut fields = Fields::new()
                .field("port", port.port)
                .field("expose", port.expose);
            if let Some(host_port) = port.host_port {
                fields = fields.field("hostPort", host_port);
            }
            fields.into()
        });
        fields = fields.field("ports", sequence(ports));
    }
    let fields = render_restart(fields, container.restart);
    render_probes(fields, &container.probes).into()
}

fn render_probes(mut fields: Fields, probes: &Probes) -> Fields {
    if let Some(probe) = &probes.liveness_probe {
        fields = fields.field("livenessProbe", render_probe(probe));
    }
    if let Some(probe) = &probes.readiness_probe {
        fields = fields.field("readinessProbe", render_probe(probe));
    }
    fields
}

/// Every field, defaults included.
fn render_probe(probe: &Probe) -> Value {
    let action = match &probe.action {
        ProbeAction::Exec { command } => ("exec", Fields::new().field("command", strings(command))),
        ProbeAction::HttpGet {
            path,
            port,
            host,
            headers,
        } => {
            let mut fields = Fields::new()
                .field("path", path.as_str())
                .field("port", *port);
            if let Some(host) = host {
                fields = fields.field("host", host.as_str());
            }
            if !headers.is_empty() {
                let headers = headers.iter().map(|h| {
                    Fields::new()
                        .field("name", h.name.as_str())
                        .field("value", h.value.as_str())
                        .into()
                });
                fields = fields.field("httpHeaders", sequence(headers));
            }
            ("httpGet", fields)
        }
        ProbeAction::TcpSocket { port, host } => {
            let mut fields = Fields::new().field("port", *port);
            if let Some(host) = host {
                fields = fields.field("host", host.as_str());
            }
            ("tcpSocket", fields)
        }
    };
    Fields::new()
        .field(action.0, action.1)
        .field("initialDelaySeconds", probe.initial_delay_seconds)
        .field("periodSeconds", probe.period_seconds)
        .field("timeoutSeconds", probe.timeout_seconds)
        .field("successThreshold", probe.success_threshold)
        .field("failureThreshold", probe.failure_threshold)
        .into()
}

fn render_env(env: &[EnvVar]) -> Value {
    sequence(env.iter().map(|var| {
        Fields::new()
            .field("name", var.name.as_str())
            .field("value", var.value.as_str())
            .into()
    }))
}

fn render_restart(fields: Fields, restart: RestartPolicy) -> Fields {
    match restart {
        RestartPolicy::Always => fields,
        RestartPolicy::OnFailure => fields.field("restart", "OnFailure"),
        RestartPolicy::Never => fields.field("restart", "Never"),
    }
}

fn render_traits(component: &Component) -> Vec<Value> {
    let mut traits = Vec::new();
    let mut add = |kind: &str, properties: Fields| {
        traits.push(
            Fields::new()
                .field("type", kind)
                .field("properties", properties)
                .into(),
        );
    };
    if component.replicas != 1 {
        add(
            "scaler",
            Fields::new().field("replicas", component.replicas),
        );
    }
    let amounts = |resources: Resources| {
        let mut fields = Fields::new();
        if resources.cpu_millis > 0 {
            fields = fields.field("cpu", format_cpu(resources.cpu_millis));
        }
        if resources.memory_bytes > 0 {
            fields = fields.field("memory", format_memory(resources.memory_bytes));
        }
        fields
    };
    if !component.limits.is_zero() {
        add(
            "resource",
            Fields::new()
                .field("requests", amounts(component.resources))
                .field("limits", amounts(component.limit())),
        );
    } else if !component.resources.is_zero() {
        add("resource", amounts(component.resources));
    }
    if let Some(affinity) = render_affinity(&component.placement) {
        add("affinity", affinity);
    }
    if let Some(spread) = &component.placement.spread {
        let mut fields = Fields::new();
        if let Some(key) = &spread.topology_key {
            fields = fields.field("topologyKey", key.as_str());
        }
        add("spread", fields.field("maxSkew", spread.max_skew));
    }
    if let Some(rollout) = &component.rollout {
        let share = |share: Share| match share {
            Share::Count(count) => Value::from(count),
            Share::Percent(percent) => Value::from(format!("{percent}%")),
        };
        let mut fields = Fields::new();
        if let Some(max_unavailable) = rollout.max_unavailable {
            fields = fields.field("maxUnavailable", share(max_unavailable));
        }
        if let Some(max_surge) = rollout.max_surge {
            fields = fields.field("maxSurge", share(max_surge));
        }
        let fields = fields
            .field("minReadySeconds", rollout.min_ready_seconds)
            .field("progressDeadlineSeconds", rollout.progress_deadline_seconds);
        add("rollout", fields);
    }
    if let Some(service) = &component.service {
        let ports = service.ports.iter().map(|p| {
            let mut fields = Fields::new()
                .field("port", p.port)
                .field("protocol", p.protocol.name());
            if let Some(name) = &p.name {
                fields = fields.field("name", name.as_str());
            }
            if let Some(node_port) = p.node_port {
                fields = fields.field("nodePort", node_port);
            }
            fields.into()
        });
        let kind = match service.kind {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
        };
        add(
            "expose",
            Fields::new()
                .field("ports", sequence(ports))
                .field("type", kind),
        );
    }
    if let Some(gateway) = &component.gateway {
        let mut fields = Fields::new();
        if let Some(domain) = &gateway.domain {
            fields = fields.field("domain", domain.as_str());
        }
        let routes = gateway
            .http
            .iter()
            .fold(Fields::new(), |routes, (path, port)| {
                routes.field(path, *port)
            });
        fields = fields.field("http", routes);
        if let Some(class) = &gateway.class {
            fields = fields.field("class", class.as_str());
        }
        add("gateway", fields);
    }
    traits
}

/// The `affinity` trait's properties, or `None` when the placement asks for nothing it covers.
fn render_affinity(placement: &Placement) -> Option<Fields> {
    let mut fields = Fields::new();
    if !placement.node_selector.is_empty() {
        let selector = placement
            .node_selector
            .iter()
            .fold(Fields::new(), |selector, (key, value)| {
                selector.field(key, value.as_str())
            });
        fields = fields.field("nodeSelector", selector);
    }
    let mut node_affinity = Fields::new();
    if !placement.required_terms.is_empty() {
        let terms = placement
            .required_terms
            .iter()
            .map(|term| render_term(term).into());
        node_affinity = node_affinity.field(
            "required",
            Fields::new().field("nodeSelectorTerms", sequence(terms)),
        );
    }
    if !placement.preferred.is_empty() {
        let preferred = placement.preferred.iter().map(|term| {
            Fields::new()
                .field("weight", term.weight)
                .field("preference", render_term(&term.expressions))
                .into()
        });
        node_affinity = node_affinity.field("preferred", sequence(preferred));
    }
    if !node_affinity.0.is_empty() {
        fields = fields.field("nodeAffinity", node_affinity);
    }
    for (field, names) in [
        ("podAffinity", &placement.colocate_with),
        ("podAntiAffinity", &placement.avoid),
    ] {
        if !names.is_empty() {
            fields = fields.field(field, Fields::new().field("components", strings(names)));
        }
    }
    (!fields.0.is_empty()).then_some(fields)
}

fn render_term(expressions: &[MatchExpression]) -> Fields {
    let expressions = expressions.iter().map(|expression| {
        let operator = match expression.operator {
            Operator::In => "In",
            Operator::NotIn => "NotIn",
            Operator::Exists => "Exists",
            Operator::DoesNotExist => "DoesNotExist",
        };
        let mut fields = Fields::new()
            .field("key", expression.key.as_str())
            .field("operator", operator);
        if !expression.values.is_empty() {
            fields = fields.field("values", strings(&expression.values));
        }
        fields.into()
    });
    Fields::new().field("matchExpressions", sequence(expressions))
}

fn json_object(object: &std::collections::BTreeMap<String, serde_json::Value>) -> Value {
    let mapping = object
        .iter()
        .map(|(key, value)| (Value::from(key.as_str()), json_to_yaml(value)))
        .collect();
    Value::Mapping(mapping)
}

fn json_to_yaml(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(flag) => Value::Bool(*flag),
        serde_json::Value::Number(number) => {
            if let Some(unsigned) = number.as_u64() {
                Value::from(unsigned)
            } else if let Some(signed) = number.as_i64() {
                Value::from(signed)
            } else {
                Value::from(number.as_f64().unwrap_or_default())
            }
        }
        serde_json::Value::String(text) => Value::from(text.as_str()),
        serde_json::Value::Array(items) => {
            Value::Sequence(items.iter().map(json_to_yaml).collect())
        }
        serde_json::Value::Object(object) => Value::Mapping(
            object
                .iter()
                .map(|(key, value)| (Value::from(key.as_str()), json_to_yaml(value)))
                .collect(),
        ),
    }
}

fn strings(items: &[String]) -> Value {
    Value::Sequence(
        items
            .iter()
            .map(|item| Value::from(item.as_str()))
            .collect(),
    )
}

fn sequence(items: impl Iterator<Item = Value>) -> Value {
    Value::Sequence(items.collect())
}

/// A YAML mapping built field by field, keeping the order a person would write them in.
struct Fields(Mapping);

impl Fields {
    fn new() -> Self {
        Fields(Mapping::new())
    }

    fn field(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(Value::from(key), value.into());
        self
    }
}

impl From<Fields> for Value {
    fn from(fields: Fields) -> Self {
        Value::Mapping(fields.0)
    }
}
