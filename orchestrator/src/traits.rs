//! Component traits, turned into the intents the scheduler works with: how many replicas, where
//! they may go, and what each reserves.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_yaml::Value;

use crate::diagnostics::Report;
use crate::model::{MatchExpression, Operator, Placement, PreferredTerm, Spread};
use crate::names::{check_label_key, check_label_value};
use crate::path::FieldPath;
use crate::raw::Integer;
use crate::raw::{
    RawAffinity, RawComponentList, RawMatchExpression, RawNodeAffinity, RawNodeSelector,
    RawPreferredTerm, RawResource, RawRollout, RawScaler, RawSelectorTerm, RawSpread,
    RawTopologySpread, RawTrait,
};
use crate::references::{Reference, unique_references};
use crate::rollout::{RolloutSpec, Share};
use crate::services::{Gateway, Service, decode_expose, decode_gateway};
use crate::workloads::{Amount, check_range, decode_quantity};

/// The trait types this orchestrator understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TraitKind {
    Scaler,
    Affinity,
    Spread,
    TopologySpreadConstraints,
    Resource,
    Rollout,
    Expose,
    Gateway,
    Ingress,
}

impl TraitKind {
    /// In the order error messages list them.
    const ALL: [TraitKind; 9] = [
        TraitKind::Scaler,
        TraitKind::Affinity,
        TraitKind::Spread,
        TraitKind::TopologySpreadConstraints,
        TraitKind::Resource,
        TraitKind::Rollout,
        TraitKind::Expose,
        TraitKind::Gateway,
        TraitKind::Ingress,
    ];

    fn name(self) -> &'static str {
        match self {
            TraitKind::Scaler => "scaler",
            TraitKind::Affinity => "affinity",
            TraitKind::Spread => "spread",
            TraitKind::TopologySpreadConstraints => "topologyspreadconstraints",
            TraitKind::Resource => "resource",
            TraitKind::Rollout => "rollout",
            TraitKind::Expose => "expose",
            TraitKind::Gateway => "gateway",
            TraitKind::Ingress => "ingress",
        }
    }

    /// The intent the trait sets. Both spread traits set the same one, so only one of them
    /// may appear on a component.
    fn intent(self) -> TraitKind {
        match self {
            TraitKind::TopologySpreadConstraints => TraitKind::Spread,
            TraitKind::Ingress => TraitKind::Gateway,
            other => other,
        }
    }

    fn known_names() -> String {
        let names: Vec<&str> = TraitKind::ALL.iter().map(|kind| kind.name()).collect();
        names.join(", ")
    }
}

const MAX_REPLICAS: i64 = 10_000;

/// What a component's traits ask for. Names of other components are kept with their paths so
/// that they can be checked once every component is known.
#[derive(Debug, Default)]
pub(crate) struct TraitIntents {
    pub replicas: Option<u32>,
    pub placement: Placement,
    pub colocate_with: Vec<Reference>,
    pub avoid: Vec<Reference>,
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub rollout: Option<RolloutSpec>,
    pub service: Option<Service>,
    pub gateway: Option<Gateway>,
}

/// Decodes the `traits` list at `path`, reporting every problem; what could not be decoded is
/// left at its default.
pub(crate) fn decode_traits(
    traits: Vec<Value>,
    path: &FieldPath,
    report: &mut Report,
) -> TraitIntents {
    let mut intents = TraitIntents::default();
    let mut first_use: HashMap<TraitKind, usize> = HashMap::new();
    for (index, value) in traits.into_iter().enumerate() {
        let trait_path = path.index(index);
        let Some(raw) = report.decode::<RawTrait>(value, &trait_path) else {
            continue;
        };
        let Some(name) = raw.kind else {
            let expected = TraitKind::known_names();
            report.error(
                &trait_path,
                format!("missing type; expected one of {expected}"),
            );
            continue;
        };
        let Some(kind) = TraitKind::ALL.into_iter().find(|kind| kind.name() == name) else {
            let expected = TraitKind::known_names();
            report.error(
                &trait_path.key("type"),
                format!("unknown trait type {name:?}; expected one of {expected}"),
            );
            continue;
        };
        if let Some(&first) = first_use.get(&kind.intent()) {
            let first = report.first_defined_at(&path.index(first));
            let message = if kind.intent() == TraitKind::Spread {
                format!(
                    "spread is already set{first}; use one of spread or \
                     topologyspreadconstraints, once"
                )
            } else if kind.intent() == TraitKind::Gateway {
                format!("the gateway is already set{first}; use one of gateway or ingress, once")
            } else {
                format!("duplicate trait {name:?}{first}; each trait may appear once")
            };
            report.error(&trait_path.key("type"), message);
            continue;
        }
        first_use.insert(kind.intent(), index);
        let properties = match raw.properties {
            None | Some(Value::Null) => Value::Mapping(Default::default()),
            Some(properties) => properties,
        };
        let properties_path = trait_path.key("properties");
        match kind {
            TraitKind::Scaler => decode_scaler(properties, &properties_path, report, &mut intents),
            TraitKind::Affinity => {
                decode_affinity(properties, &properties_path, report, &mut intents);
            }
            TraitKind::Spread => {
                if let Some(raw) = report.decode::<RawSpread>(properties, &properties_path) {
                    intents.placement.spread = decode_spread(raw, &properties_path, report);
                }
            }
            TraitKind::TopologySpreadConstraints => {
                decode_topology_spread(properties, &properties_path, report, &mut intents);
            }
            TraitKind::Resource => {
                decode_resource(properties, &properties_path, report, &mut intents);
            }
            TraitKind::Rollout => {
                intents.rollout = decode_rollout(properties, &properties_path, report);
            }
            TraitKind::Expose => {
                intents.service = decode_expose(properties, &properties_path, report);
            }
            TraitKind::Gateway | TraitKind::Ingress => {
                intents.gateway = decode_gateway(properties, &properties_path, report);
            }
        }
    }
    intents
}

fn decode_scaler(
    properties: Value,
    path: &FieldPath,
    report: &mut Report,
    intents: &mut TraitIntents,
) {
    let Some(raw) = report.decode::<RawScaler>(properties, path) else {
        return;
    };
    // KubeVela's scaler defaults to one replica too.
    let replicas = raw.replicas.unwrap_or(1);
    match u32::try_from(replicas) {
        Ok(replicas) if i64::from(replicas) <= MAX_REPLICAS => intents.replicas = Some(replicas),
        _ => report.error(
            &path.key("replicas"),
            format!("replicas must be between 0 and {MAX_REPLICAS}; got {replicas}"),
        ),
    }
}

/// The longest `progressDeadlineSeconds` and `minReadySeconds` accepted: a day.
const MAX_ROLLOUT_SECONDS: u32 = 24 * 3600;

fn decode_rollout(properties: Value, path: &FieldPath, report: &mut Report) -> Option<RolloutSpec> {
    let raw = report.decode::<RawRollout>(properties, path)?;
    let max_unavailable = decode_share(raw.max_unavailable, &path.key("maxUnavailable"), report);
    let max_surge = decode_share(raw.max_surge, &path.key("maxSurge"), report);
    let mut seconds = |value: Option<Integer>, field: &str, default: u32, min: u32| {
        check_range(
            value,
            default,
            min..=MAX_ROLLOUT_SECONDS,
            field,
            path,
            report,
        )
    };
    let min_ready_seconds = seconds(raw.min_ready_seconds, "minReadySeconds", 0, 0);
    let progress_deadline_seconds = seconds(
        raw.progress_deadline_seconds,
        "progressDeadlineSeconds",
        120,
        1,
    );
    let (max_unavailable, max_surge) = (max_unavailable?, max_surge?);
    let zero = |share: Option<Share>| matches!(share, Some(Share::Count(0) | Share::Percent(0)));
    if zero(max_unavailable) && zero(max_surge) {
        report.error(
            &path.key("maxSurge"),
            "maxUnavailable and maxSurge cannot both be 0: no replica could be replaced",
        );
        return None;
    }
    if let (Some(min_ready), Some(deadline)) = (min_ready_seconds, progress_deadline_seconds)
        && deadline <= min_ready
    {
        report.error(
            &path.key("progressDeadlineSeconds"),
            format!(
                "progressDeadlineSeconds ({deadline}) must be greater than minReadySeconds ({min_ready})"
            ),
        );
        return None;
    }
    Some(RolloutSpec {
        max_unavailable,
        max_surge,
        min_ready_seconds: min_ready_seconds?,
        progress_deadline_seconds: progress_deadline_seconds?,
    })
}

/// A count (`1`) or a percentage (`"25%"`); `Some(None)` when left out, `None` when invalid.
fn decode_share(
    value: Option<Value>,
    path: &FieldPath,
    report: &mut Report,
) -> Option<Option<Share>> {
    let share = match &value {
        None => return Some(None),
        Some(Value::Number(number)) => number
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| i64::from(*n) <= MAX_REPLICAS)
            .map(Share::Count),
        Some(Value::String(text)) => text
            .strip_suffix('%')
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n <= 100)
            .map(Share::Percent),
        Some(_) => None,
    };
    if share.is_none() {
        let written = serde_yaml::to_string(&value).unwrap_or_default();
        report.error(
            path,
            format!(
                "invalid value {}; expected a number of replicas (0 to {MAX_REPLICAS}) or a percentage such as \"25%\"",
                written.trim_end()
            ),
        );
        return None;
    }
    Some(share)
}

fn decode_affinity(
    properties: Value,
    path: &FieldPath,
    report: &mut Report,
    intents: &mut TraitIntents,
) {
    let Some(raw) = report.decode::<RawAffinity>(properties, path) else {
        return;
    };
    let placement = &mut intents.placement;
    if let Some(node_selector) = raw.node_selector {
        placement.node_selector =
            decode_node_selector(node_selector, &path.key("nodeSelector"), report);
    }
    if let Some(node_affinity) = raw.node_affinity {
        decode_node_affinity(node_affinity, &path.key("nodeAffinity"), report, placement);
    }
    if let Some(list) = raw.pod_affinity {
        intents.colocate_with = component_list(list, &path.key("podAffinity"), report);
    }
    if let Some(list) = raw.pod_anti_affinity {
        intents.avoid = component_list(list, &path.key("podAntiAffinity"), report);
        let colocated: HashSet<&str> = intents
            .colocate_with
            .iter()
            .map(|wanted| wanted.name.as_str())
            .collect();
        for avoided in &intents.avoid {
            if colocated.contains(avoided.name.as_str()) {
                report.error(
                    &avoided.path,
                    format!(
                        "{:?} is listed in both podAffinity and podAntiAffinity; a component \
                         cannot both share nodes with and avoid another",
                        avoided.name
                    ),
                );
            }
        }
    }
    placement.colocate_with = intents
        .colocate_with
        .iter()
        .map(|r| r.name.clone())
        .collect();
    placement.avoid = intents.avoid.iter().map(|r| r.name.clone()).collect();
}

fn decode_node_selector(
    selector: BTreeMap<String, String>,
    path: &FieldPath,
    report: &mut Report,
) -> BTreeMap<String, String> {
    for (key, value) in &selector {
        let entry_path = path.key(key);
        report.check(&entry_path, check_label_key(key));
        report.check(&entry_path, check_label_value(value));
    }
    selector
}

fn decode_node_affinity(
    node_affinity: Value,
    path: &FieldPath,
    report: &mut Report,
    placement: &mut Placement,
) {
    let Some(raw) = report.decode::<RawNodeAffinity>(node_affinity, path) else {
        return;
    };
    let required_path = path.key("required");
    let required = raw
        .required
        .and_then(|required| report.decode::<RawNodeSelector>(required, &required_path));
    if let Some(required) = required {
        let terms_path = required_path.key("nodeSelectorTerms");
        if required.node_selector_terms.is_empty() {
            report.error(
                &terms_path,
                "nodeSelectorTerms is empty; expected at least one term (a node qualifies if \
                 any term matches)",
            );
        }
        placement.required_terms = required
            .node_selector_terms
            .into_iter()
            .enumerate()
            .map(|(index, term)| decode_term(term, &terms_path.index(index), report))
            .collect();
    }
    let preferred_path = path.key("preferred");
    for (index, value) in raw.preferred.unwrap_or_default().into_iter().enumerate() {
        let term_path = preferred_path.index(index);
        let Some(raw) = report.decode::<RawPreferredTerm>(value, &term_path) else {
            continue;
        };
        let weight = match u32::try_from(raw.weight) {
            Ok(weight) if (1..=100).contains(&weight) => weight,
            _ => {
                report.error(
                    &term_path.key("weight"),
                    format!("weight must be between 1 and 100; got {}", raw.weight),
                );
                continue;
            }
        };
        let expressions = decode_term(raw.preference, &term_path.key("preference"), report);
        placement.preferred.push(PreferredTerm {
            weight,
            expressions,
        });
    }
}

/// A node selector term: all of its expressions must match.
fn decode_term(term: Value, path: &FieldPath, report: &mut Report) -> Vec<MatchExpression> {
    let Some(term) = report.decode::<RawSelectorTerm>(term, path) else {
        return Vec::new();
    };
    let expressions_path = path.key("matchExpressions");
    if term.match_expressions.is_empty() {
        report.error(
            &expressions_path,
            "matchExpressions is empty; expected at least one expression",
        );
    }
    term.match_expressions
        .into_iter()
        .enumerate()
        .filter_map(|(index, raw)| decode_expression(raw, &expressions_path.index(index), report))
        .collect()
}

fn decode_expression(
    expression: Value,
    path: &FieldPath,
    report: &mut Report,
) -> Option<MatchExpression> {
    let raw: RawMatchExpression = report.decode(expression, path)?;
    let key_ok = report.check(&path.key("key"), check_label_key(&raw.key));
    let operator = match raw.operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => {
            report.error(
                &path.key("operator"),
                format!(
                    "unknown operator {other:?}; expected one of In, NotIn, Exists, DoesNotExist"
                ),
            );
            return None;
        }
    };
    let values = raw.values.unwrap_or_default();
    let values_path = path.key("values");
    let values_ok = match operator {
        Operator::In | Operator::NotIn if values.is_empty() => {
            report.error(
                &values_path,
                format!("operator {} needs at least one value", raw.operator),
            );
            false
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            report.error(
                &values_path,
                format!("operator {} takes no values; remove them", raw.operator),
            );
            false
        }
        _ => values.iter().enumerate().all(|(index, value)| {
            report.check(&values_path.index(index), check_label_value(value))
        }),
    };
    (key_ok && values_ok).then_some(MatchExpression {
        key: raw.key,
        operator,
        values,
    })
}

/// The names in a `podAffinity` or `podAntiAffinity` list; each may be listed once.
fn component_list(list: Value, path: &FieldPath, report: &mut Report) -> Vec<Reference> {
    let Some(list) = report.decode::<RawComponentList>(list, path) else {
        return Vec::new();
    };
    unique_references(list.components, &path.key("components"), report)
}

fn decode_spread(raw: RawSpread, path: &FieldPath, report: &mut Report) -> Option<Spread> {
    let max_skew = raw.max_skew.unwrap_or(1);
    let max_skew = match u32::try_from(max_skew) {
        Ok(max_skew) if max_skew >= 1 => Some(max_skew),
        _ => {
            report.error(
                &path.key("maxSkew"),
                format!("maxSkew must be at least 1; got {max_skew}"),
            );
            None
        }
    };
    let key_ok = raw
        .topology_key
        .as_ref()
        .is_none_or(|key| report.check(&path.key("topologyKey"), check_label_key(key)));
    Some(Spread {
        topology_key: raw.topology_key,
        max_skew: max_skew?,
    })
    .filter(|_| key_ok)
}

/// KubeVela's `topologyspreadconstraints`, narrowed to the single constraint `spread` expresses.
fn decode_topology_spread(
    properties: Value,
    path: &FieldPath,
    report: &mut Report,
    intents: &mut TraitIntents,
) {
    let Some(raw) = report.decode::<RawTopologySpread>(properties, path) else {
        return;
    };
    let constraints_path = path.key("constraints");
    if raw.constraints.len() > 1 {
        report.error(
            &constraints_path.index(1),
            format!(
                "only one constraint is supported; found {}",
                raw.constraints.len()
            ),
        );
    }
    match raw.constraints.into_iter().next() {
        Some(constraint) => {
            let constraint_path = constraints_path.index(0);
            if let Some(constraint) = report.decode::<RawSpread>(constraint, &constraint_path) {
                intents.placement.spread = decode_spread(constraint, &constraint_path, report);
            }
        }
        None => report.error(
            &constraints_path,
            "constraints is empty; expected one constraint",
        ),
    }
}

fn decode_resource(
    properties: Value,
    path: &FieldPath,
    report: &mut Report,
    intents: &mut TraitIntents,
) {
    let Some(raw) = report.decode::<RawResource>(properties, path) else {
        return;
    };
    if raw.cpu.is_none() && raw.memory.is_none() {
        report.error(
            path,
            "the resource trait sets neither cpu nor memory; expected one or both",
        );
    }
    intents.cpu_millis = raw
        .cpu
        .and_then(|cpu| decode_quantity(cpu, &path.key("cpu"), report, Amount::Cpu));
    intents.memory_bytes = raw
        .memory
        .and_then(|memory| decode_quantity(memory, &path.key("memory"), report, Amount::Memory));
}
