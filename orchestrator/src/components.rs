//! One entry of `spec.components`: its name, its workload, and its traits.

use serde_yaml::Value;

use crate::diagnostics::Report;
use crate::model::{Component, Resources};
use crate::names::check_dns_label;
use crate::path::FieldPath;
use crate::raw::RawComponent;
use crate::references::{Reference, unique_references};
use crate::traits::{TraitIntents, decode_traits};
use crate::workloads::{COMPONENT_TYPES, DecodedWorkload, decode_workload};

/// A component as far as it could be decoded. The references to other components are checked
/// once every component is known; `component` is `None` when this one had errors of its own.
#[derive(Debug)]
pub(crate) struct ComponentDraft {
    pub path: FieldPath,
    pub name: Option<String>,
    pub depends_on: Vec<Reference>,
    pub colocate_with: Vec<Reference>,
    pub avoid: Vec<Reference>,
    pub component: Option<Component>,
}

/// Decodes the component at `path`, reporting every problem with it.
pub(crate) fn decode_component(
    value: Value,
    path: FieldPath,
    report: &mut Report,
) -> ComponentDraft {
    // Kept even if the component is malformed, so that references to it are not reported too.
    let fallback_name = value.get("name").and_then(Value::as_str).map(str::to_owned);
    let Some(raw) = report.decode::<RawComponent>(value, &path) else {
        return ComponentDraft {
            path,
            name: fallback_name,
            depends_on: Vec::new(),
            colocate_with: Vec::new(),
            avoid: Vec::new(),
            component: None,
        };
    };
    let name = match raw.name {
        None => {
            report.error(&path, "missing name; every component needs a DNS-1123 name");
            None
        }
        Some(name) => {
            report.check(&path.key("name"), check_dns_label(&name));
            Some(name)
        }
    };
    let decoded = match raw.kind {
        None => {
            report.error(
                &path,
                format!(
                    "missing type; expected one of {}",
                    COMPONENT_TYPES.join(", ")
                ),
            );
            None
        }
        Some(kind) => Some(decode_workload(&kind, raw.properties, &path, report)),
    };
    let mut traits = decode_traits(raw.traits.unwrap_or_default(), &path.key("traits"), report);
    // A learner talks to its peers through the agent, never through a service.
    if decoded
        .as_ref()
        .and_then(|d| d.workload.as_ref())
        .is_some_and(|w| matches!(w, crate::model::Workload::Learner(_)))
        && (traits.service.is_some() || traits.gateway.is_some())
    {
        report.error(
            &path.key("traits"),
            "a learner cannot be exposed as a service or behind a gateway",
        );
        traits.service = None;
        traits.gateway = None;
    }
    for selected in &traits.spread_selects {
        if name.as_deref().is_some_and(|name| name != selected.name) {
            report.error(
                &selected.path,
                format!(
                    "the spread's labelSelector selects {:?}; gossipctl spreads a component's own \
                     replicas, so it may select only this component",
                    selected.name
                ),
            );
        }
    }
    let depends_on = unique_references(
        raw.depends_on.unwrap_or_default(),
        &path.key("dependsOn"),
        report,
    );

    let (resources, limits) = reserved_resources(decoded.as_ref(), &traits, &path, report);
    let workload = decoded.and_then(|decoded| decoded.workload);
    let is_container = matches!(
        workload,
        Some(crate::model::Workload::Webservice(_) | crate::model::Workload::Worker(_))
    );
    if !limits.is_zero() && workload.is_some() && !is_container {
        report.error(
            &path.key("traits"),
            "limits above the requests are enforced for containers (webservice, worker) only; \
             a process or learner reserves its requests",
        );
    }

    let component = match (&name, workload) {
        (Some(name), Some(workload)) => Some(Component {
            name: name.clone(),
            workload,
            replicas: traits.replicas.unwrap_or(1),
            placement: traits.placement,
            resources,
            limits,
            depends_on: depends_on
                .iter()
                .map(|reference| reference.name.clone())
                .collect(),
            rollout: traits.rollout,
            service: traits.service,
            gateway: traits.gateway,
        }),
        _ => None,
    };
    ComponentDraft {
        path,
        name,
        depends_on,
        colocate_with: traits.colocate_with,
        avoid: traits.avoid,
        component,
    }
}

/// What each replica reserves and may use: `cpu` and `memory` (or `requests` and `limits`)
/// may come from a container's properties or from the `resource` trait, but each amount from
/// only one of them.
fn reserved_resources(
    decoded: Option<&DecodedWorkload>,
    traits: &TraitIntents,
    component_path: &FieldPath,
    report: &mut Report,
) -> (Resources, Resources) {
    let in_properties = decoded.map(|d| d.resources).unwrap_or_default();
    let in_trait = traits.resources;
    let mut pick = |field: &str, in_properties: Option<u64>, in_trait: Option<u64>| {
        if in_properties.is_some() && in_trait.is_some() {
            report.error(
                &component_path.key("properties").key(field),
                format!("set {field} either in properties or in the resource trait, not both"),
            );
        }
        in_properties.or(in_trait).unwrap_or(0)
    };
    let reserved = Resources {
        cpu_millis: pick("cpu", in_properties.cpu_millis, in_trait.cpu_millis),
        memory_bytes: pick("memory", in_properties.memory_bytes, in_trait.memory_bytes),
    };
    let limits = if in_properties.limits.is_zero() {
        in_trait.limits
    } else {
        in_properties.limits
    };
    (reserved, limits)
}
