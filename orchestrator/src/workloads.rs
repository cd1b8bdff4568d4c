//! Component `properties`, by component type: what each replica runs.

use std::collections::HashMap;

use serde_yaml::Value;

use crate::diagnostics::Report;
use crate::kubevela;
use crate::model::{
    ContainerSpec, EnvVar, INTAKE_ALL, LEARNER_AGGREGATIONS, LEARNER_BACKENDS, LEARNER_MODELS,
    LearnerSpec, LearningRate, PortSpec, ProcessSpec, RestartPolicy, Workload,
};
use crate::names::{check_env_var_name, check_no_nul};
use crate::path::FieldPath;
use crate::probes::{ProbeKind, decode_probe};
use crate::quantity::{parse_cpu, parse_memory};
use crate::raw::{Integer, RawContainer, RawEnvVar, RawIntake, RawLearner, RawPort, RawProcess};
use crate::resources::{Amounts, Written, decode_resources};

/// The component types this orchestrator can run, in the order error messages list them.
pub(crate) const COMPONENT_TYPES: [&str; 4] = ["process", "webservice", "worker", "learner"];

/// A component's properties, decoded, plus the resources a container asked for in its own
/// properties (which the component merges with the `resource` trait).
pub(crate) struct DecodedWorkload {
    /// `None` when the properties do not describe a runnable workload; the reasons are reported.
    pub workload: Option<Workload>,
    pub resources: Amounts,
}

impl DecodedWorkload {
    fn without_resources(workload: Option<Workload>) -> Self {
        DecodedWorkload {
            workload,
            resources: Amounts::default(),
        }
    }
}

/// Decodes the `properties` of the component at `component_path`, whose type is `kind`.
pub(crate) fn decode_workload(
    kind: &str,
    properties: Option<Value>,
    component_path: &FieldPath,
    report: &mut Report,
) -> DecodedWorkload {
    let path = &component_path.key("properties");
    // `properties:` with nothing after it is the same as no properties at all.
    let properties = match properties {
        None | Some(Value::Null) => Value::Mapping(Default::default()),
        Some(properties) => properties,
    };
    match kind {
        "process" => DecodedWorkload::without_resources(
            decode_process(properties, path, report).map(Workload::Process),
        ),
        "webservice" => decode_container(properties, path, report, true, Workload::Webservice),
        "worker" => decode_container(properties, path, report, false, Workload::Worker),
        "learner" => DecodedWorkload::without_resources(
            decode_learner(properties, path, report).map(Workload::Learner),
        ),
        other => {
            let expected = format!("expected one of {}", COMPONENT_TYPES.join(", "));
            let message = if kubevela::COMPONENT_TYPES.contains(&other) {
                kubevela::unsupported(&format!("component type {other:?}"), &expected)
            } else {
                format!("unknown component type {other:?}; {expected}")
            };
            report.error(&component_path.key("type"), message);
            DecodedWorkload::without_resources(None)
        }
    }
}

fn decode_process(properties: Value, path: &FieldPath, report: &mut Report) -> Option<ProcessSpec> {
    let raw: RawProcess = report.decode(properties, path)?;
    let command = match raw.command {
        None => {
            report.error(
                &path.key("command"),
                "missing command; a process needs the program to run and its arguments, \
                 e.g. command: [\"sleep\", \"60\"]",
            );
            None
        }
        Some(command) => check_command(command, &path.key("command"), report),
    };
    let env = decode_env(raw.env, &path.key("env"), report);
    if let Some(working_dir) = &raw.working_dir {
        let dir_path = path.key("workingDir");
        if working_dir.is_empty() {
            report.error(
                &dir_path,
                "workingDir is empty; leave it out to use the agent's",
            );
        } else {
            report.check(&dir_path, check_no_nul("workingDir", working_dir));
        }
    }
    let restart = decode_restart(raw.restart, &path.key("restart"), report);
    let probes = decode_probes(raw.liveness_probe, raw.readiness_probe, path, report)?;
    Some(ProcessSpec {
        command: command?,
        env,
        working_dir: raw.working_dir,
        restart: restart?,
        probes,
    })
}

/// A component's `livenessProbe` and `readinessProbe`; `None` if either was invalid.
fn decode_probes(
    liveness: Option<Value>,
    readiness: Option<Value>,
    path: &FieldPath,
    report: &mut Report,
) -> Option<crate::Probes> {
    let mut decode = |value: Option<Value>, kind: ProbeKind| match value {
        None | Some(Value::Null) => Some(None),
        Some(value) => decode_probe(value, kind, &path.key(kind.field()), report).map(Some),
    };
    let liveness = decode(liveness, ProbeKind::Liveness);
    let readiness = decode(readiness, ProbeKind::Readiness);
    Some(crate::Probes {
        liveness_probe: liveness?,
        readiness_probe: readiness?,
    })
}

/// The most epochs a learner may be asked to train for.
const MAX_EPOCHS: u32 = 100_000;
/// The largest minibatch: far beyond what fits a replica's memory for the supported models.
const MAX_BATCH_SIZE: u32 = 65_536;
/// The most neighbours or foreign models per epoch: a learner cannot usefully exceed the
/// largest number of replicas a component may have.
const MAX_PEERS: u32 = 10_000;

/// `type: learner`: every property is optional and takes [`LearnerSpec::default`]'s value
/// when left out; every one given is checked, and all problems are reported together.
fn decode_learner(properties: Value, path: &FieldPath, report: &mut Report) -> Option<LearnerSpec> {
    let raw: RawLearner = report.decode(properties, path)?;
    let default = LearnerSpec::default();
    let dataset = match raw.dataset {
        None => Some(default.dataset),
        Some(dataset) if dataset.is_empty() => {
            report.error(
                &path.key("dataset"),
                "dataset is empty; expected fashion-mnist or a directory of IDX files",
            );
            None
        }
        Some(dataset) => report
            .check(&path.key("dataset"), check_no_nul("dataset", &dataset))
            .then_some(dataset),
    };
    let model = check_name(
        raw.model,
        default.model,
        "model",
        &LEARNER_MODELS,
        path,
        report,
    );
    let aggregation = check_name(
        raw.aggregation,
        default.aggregation,
        "aggregation",
        &LEARNER_AGGREGATIONS,
        path,
        report,
    );
    let backend = check_name(
        raw.backend,
        default.backend,
        "backend",
        &LEARNER_BACKENDS,
        path,
        report,
    );
    let epochs = check_count(
        raw.epochs,
        default.epochs,
        "epochs",
        MAX_EPOCHS,
        path,
        report,
    );
    let window = check_count(
        raw.window,
        default.window,
        "window",
        MAX_EPOCHS,
        path,
        report,
    );
    let batch_size = check_count(
        raw.batch_size,
        default.batch_size,
        "batchSize",
        MAX_BATCH_SIZE,
        path,
        report,
    );
    let peers = check_count(raw.peers, default.peers, "peers", MAX_PEERS, path, report);
    let intake = match raw.intake {
        None => Some(default.intake),
        Some(RawIntake::All) => Some(INTAKE_ALL),
        Some(RawIntake::Count(Integer(count))) => {
            match u32::try_from(count) {
                Ok(count) if (1..=MAX_PEERS).contains(&count) => Some(count),
                _ => {
                    report.error(
                    &path.key("intake"),
                    format!("invalid intake {count}; expected `all` or an integer from 1 to {MAX_PEERS}"),
                );
                    None
                }
            }
        }
    };
    let window = match (epochs, window) {
        (Some(epochs), Some(window)) if window > epochs => {
            let which = if raw.window.is_none() {
                " (the default)"
            } else {
                ""
            };
            report.error(
                &path.key("window"),
                format!(
                    "window {window}{which} exceeds epochs {epochs}; expected an integer from 1 \
                     to {epochs}, the number of epochs between aggregations"
                ),
            );
            None
        }
        (_, window) => window,
    };
    let learning_rate = match raw.learning_rate.map(|rate| rate.0) {
        None => Some(default.learning_rate),
        Some(rate) if rate.is_finite() && rate > 0.0 => Some(LearningRate(rate)),
        Some(rate) => {
            report.error(
                &path.key("learningRate"),
                format!(
                    "invalid learningRate {rate}; expected a finite number greater than 0, \
                     e.g. 0.001"
                ),
            );
            None
        }
    };
    let partition = match raw.partition {
        None => Some(default.partition),
        Some(partition) if is_partition(&partition) => Some(partition),
        Some(partition) => {
            report.error(
                &path.key("partition"),
                format!(
                    "invalid partition {partition:?}; expected iid or dirichlet:ALPHA with ALPHA \
                     a finite number greater than 0, e.g. dirichlet:0.5"
                ),
            );
            None
        }
    };
    let seed = match raw.seed.map(|seed| seed.0) {
        None => Some(default.seed),
        Some(seed) => match u64::try_from(seed) {
            Ok(seed) => Some(seed),
            Err(_) => {
                report.error(
                    &path.key("seed"),
                    format!(
                        "invalid seed {seed}; expected a non-negative integer, at most {}",
                        u64::MAX
                    ),
                );
                None
            }
        },
    };
    Some(LearnerSpec {
        dataset: dataset?,
        model: model?,
        aggregation: aggregation?,
        epochs: epochs?,
        window: window?,
        batch_size: batch_size?,
        learning_rate: learning_rate?,
        partition: partition?,
        seed: seed?,
        peers: peers?,
        intake: intake?,
        backend: backend?,
    })
}

/// A learner property that names one of `allowed`; `default` when it is left out.
fn check_name(
    value: Option<String>,
    default: String,
    field: &str,
    allowed: &[&str],
    path: &FieldPath,
    report: &mut Report,
) -> Option<String> {
    match value {
        None => Some(default),
        Some(value) if allowed.contains(&value.as_str()) => Some(value),
        Some(value) => {
            report.error(
                &path.key(field),
                format!(
                    "unknown {field} {value:?}; expected one of {}",
                    allowed.join(", ")
                ),
            );
            None
        }
    }
}

/// A learner property that counts something: an integer from 1 to `max`; `default` when it
/// is left out.
fn check_count(
    value: Option<Integer>,
    default: u32,
    field: &str,
    max: u32,
    path: &FieldPath,
    report: &mut Report,
) -> Option<u32> {
    check_range(value, default, 1..=max, field, path, report)
}

/// The integer property `field` of the mapping at `path`, within `range`; `default` when it
/// is left out.
pub(crate) fn check_range(
    value: Option<Integer>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
    field: &str,
    path: &FieldPath,
    report: &mut Report,
) -> Option<u32> {
    let Some(Integer(value)) = value else {
        return Some(default);
    };
    match u32::try_from(value) {
        Ok(number) if range.contains(&number) => Some(number),
        _ => {
            report.error(
                &path.key(field),
                format!(
                    "invalid {field} {value}; expected an integer from {} to {}",
                    range.start(),
                    range.end()
                ),
            );
            None
        }
    }
}

/// `iid` or `dirichlet:ALPHA` with ALPHA finite and positive, read as the learner reads it.
fn is_partition(partition: &str) -> bool {
    match partition.split_once(':') {
        None => partition == "iid",
        Some(("dirichlet", alpha)) => alpha
            .parse::<f64>()
            .is_ok_and(|alpha| alpha.is_finite() && alpha > 0.0),
        Some(_) => false,
    }
}

fn check_command(
    command: Vec<String>,
    path: &FieldPath,
    report: &mut Report,
) -> Option<Vec<String>> {
    match command.first() {
        None => {
            report.error(
                path,
                "command is empty; expected the program to run, then its arguments",
            );
            return None;
        }
        Some(program) if program.is_empty() => {
            report.error(&path.index(0), "the program name is empty");
        }
        Some(_) => {}
    }
    check_strings(&command, path, "argument", report);
    Some(command)
}

/// Decodes container properties into the workload `wrap` makes of them. `single_port_exposed`
/// says whether the `port` shorthand publishes the port (it does for a webservice).
fn decode_container(
    properties: Value,
    path: &FieldPath,
    report: &mut Report,
    single_port_exposed: bool,
    wrap: fn(ContainerSpec) -> Workload,
) -> DecodedWorkload {
    let mut properties = properties;
    if let Value::Mapping(mapping) = &mut properties {
        for field in kubevela::CONTAINER_FIELDS {
            if mapping.remove(*field).is_some() {
                report.error(&path.key(field), kubevela::unsupported(field, "remove it"));
            }
        }
    }
    let Some(raw) = report.decode::<RawContainer>(properties, path) else {
        return DecodedWorkload::without_resources(None);
    };
    let image = match raw.image {
        None => {
            report.error(
                &path.key("image"),
                "missing image; a container needs an image such as \"nginx:1.27\"",
            );
            None
        }
        Some(image) if image.is_empty() || image.chars().any(char::is_whitespace) => {
            report.error(
                &path.key("image"),
                format!(
                    "invalid image {image:?}; expected an image reference such as \"nginx:1.27\""
                ),
            );
            None
        }
        Some(image) => Some(image),
    };
    let cmd = raw.cmd.unwrap_or_default();
    check_strings(&cmd, &path.key("cmd"), "cmd entry", report);
    let args = raw.args.unwrap_or_default();
    check_strings(&args, &path.key("args"), "argument", report);
    let env = decode_env(raw.env, &path.key("env"), report);
    let ports = match (raw.port, raw.ports) {
        (Some(_), Some(_)) => {
            report.error(&path.key("port"), "set either port or ports, not both");
            Vec::new()
        }
        (Some(port), None) => check_port_number(port, &path.key("port"), report)
            .map(|port| PortSpec {
                port,
                expose: single_port_exposed,
                host_port: None,
            })
            .into_iter()
            .collect(),
        (None, Some(ports)) => decode_ports(ports, &path.key("ports"), report),
        (None, None) => Vec::new(),
    };
    let written = Written {
        cpu: raw.cpu,
        memory: raw.memory,
        requests: raw.requests,
        limits: raw.limits,
    };
    let resources = decode_resources(written, path, report);
    let restart = decode_restart(raw.restart, &path.key("restart"), report);
    let probes = decode_probes(raw.liveness_probe, raw.readiness_probe, path, report);
    let spec = match (image, restart, probes) {
        (Some(image), Some(restart), Some(probes)) => Some(ContainerSpec {
            image,
            cmd,
            args,
            env,
            ports,
            restart,
            probes,
        }),
        _ => None,
    };
    DecodedWorkload {
        workload: spec.map(wrap),
        resources,
    }
}

fn decode_ports(ports: Vec<Value>, path: &FieldPath, report: &mut Report) -> Vec<PortSpec> {
    let mut first_use: HashMap<u16, usize> = HashMap::new();
    let mut decoded = Vec::with_capacity(ports.len());
    for (index, value) in ports.into_iter().enumerate() {
        let port_path = path.index(index);
        let Some(raw) = report.decode::<RawPort>(value, &port_path) else {
            continue;
        };
        let Some(port) = check_port_number(raw.port, &port_path.key("port"), report) else {
            continue;
        };
        if let Some(&first) = first_use.get(&port) {
            let first = report.first_defined_at(&path.index(first));
            report.error(
                &port_path.key("port"),
                format!("duplicate port {port}{first}"),
            );
            continue;
        }
        first_use.insert(port, index);
        let host_port = raw
            .host_port
            .and_then(|host_port| check_port_number(host_port, &port_path.key("hostPort"), report));
        decoded.push(PortSpec {
            port,
            expose: raw.expose.unwrap_or(false),
            host_port,
        });
    }
    decoded
}

fn check_port_number(port: i64, path: &FieldPath, report: &mut Report) -> Option<u16> {
    match u16::try_from(port) {
        Ok(port) if port > 0 => Some(port),
        _ => {
            report.error(path, format!("invalid port {port}; expected 1 to 65535"));
            None
        }
    }
}

/// Kubernetes-style `env`: names must be valid and unique, values must be strings.
fn decode_env(env: Option<Vec<Value>>, path: &FieldPath, report: &mut Report) -> Vec<EnvVar> {
    let mut first_use: HashMap<String, usize> = HashMap::new();
    let mut decoded = Vec::new();
    for (index, value) in env.unwrap_or_default().into_iter().enumerate() {
        let var_path = path.index(index);
        let Some(raw) = report.decode::<RawEnvVar>(value, &var_path) else {
            continue;
        };
        let name_path = var_path.key("name");
        if !report.check(&name_path, check_env_var_name(&raw.name)) {
            continue;
        }
        if let Some(&first) = first_use.get(&raw.name) {
            let first = report.first_defined_at(&path.index(first));
            report.error(
                &name_path,
                format!("duplicate environment variable {:?}{first}", raw.name),
            );
            continue;
        }
        first_use.insert(raw.name.clone(), index);
        let value = match raw.value {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(value)) => value,
            Some(other) => {
                let written = serde_yaml::to_string(&other).unwrap_or_default();
                let written = written.trim_end();
                let advice = match other {
                    Value::Bool(_) | Value::Number(_) => {
                        format!("; quote it: value: \"{written}\"")
                    }
                    _ => String::new(),
                };
                report.error(
                    &var_path.key("value"),
                    format!("environment variable values must be strings{advice}"),
                );
                continue;
            }
        };
        report.check(&var_path.key("value"), check_no_nul("the value", &value));
        decoded.push(EnvVar {
            name: raw.name,
            value,
        });
    }
    decoded
}

fn decode_restart(
    restart: Option<String>,
    path: &FieldPath,
    report: &mut Report,
) -> Option<RestartPolicy> {
    match restart.as_deref() {
        None | Some("Always") => Some(RestartPolicy::Always),
        Some("OnFailure") => Some(RestartPolicy::OnFailure),
        Some("Never") => Some(RestartPolicy::Never),
        Some(other) => {
            report.error(
                path,
                format!(
                    "unknown restart policy {other:?}; expected one of Always, OnFailure, Never"
                ),
            );
            None
        }
    }
}

fn check_strings(strings: &[String], path: &FieldPath, what: &str, report: &mut Report) {
    for (index, text) in strings.iter().enumerate() {
        report.check(&path.index(index), check_no_nul(what, text));
    }
}

/// Which resource a quantity is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Amount {
    Cpu,
    Memory,
}

/// Decodes a CPU or memory quantity written as a string (`"500m"`) or a number (`0.5`). Zero
/// is refused: leaving the field out already means "reserve nothing".
pub(crate) fn decode_quantity(
    value: Value,
    path: &FieldPath,
    report: &mut Report,
    amount: Amount,
) -> Option<u64> {
    let (what, example) = match amount {
        Amount::Cpu => ("cpu", "\"500m\" or 0.5"),
        Amount::Memory => ("memory", "\"256Mi\""),
    };
    let text = match &value {
        Value::String(text) => text.clone(),
        // Display for f64 never uses an exponent, so `0.5` reads back as "0.5".
        Value::Number(number) if number.is_f64() => {
            number.as_f64().map(|f| f.to_string()).unwrap_or_default()
        }
        Value::Number(number) => number.to_string(),
        _ => {
            report.error(
                path,
                format!("expected a {what} quantity such as {example}"),
            );
            return None;
        }
    };
    let parsed = match amount {
        Amount::Cpu => parse_cpu(&text),
        Amount::Memory => parse_memory(&text),
    };
    match parsed {
        Ok(0) => {
            report.error(
                path,
                format!("{what} must be greater than zero; leave it out to reserve nothing"),
            );
            None
        }
        Ok(amount) => Some(amount),
        Err(error) => {
            report.error(path, error.to_string());
            None
        }
    }
}
