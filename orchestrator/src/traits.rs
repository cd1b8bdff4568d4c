//! Component traits, turned into the intents the scheduler works with: how many replicas, where
//! they may go, and what each reserves.

use std::collections::HashMap;

use serde_yaml::Value;

use crate::affinity::decode_affinity;
use crate::diagnostics::Report;
use crate::kubevela;
use crate::model::Placement;
use crate::path::FieldPath;
use crate::raw::{Integer, RawResource, RawRollout, RawScaler, RawSpread, RawTrait};
use crate::references::Reference;
use crate::resources::{Amounts, Written, decode_resources};
use crate::rollout::{RolloutSpec, Share};
use crate::services::{Gateway, Service, decode_expose, decode_gateway};
use crate::spread::{decode_spread, decode_topology_spread};
use crate::workloads::check_range;

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
    /// From the `resource` trait.
    pub resources: Amounts,
    pub rollout: Option<RolloutSpec>,
    pub service: Option<Service>,
    pub gateway: Option<Gateway>,
    /// The components a `topologyspreadconstraints` label selector names: only the component
    /// itself may be, which is checked once its name is known.
    pub spread_selects: Vec<Reference>,
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
            let expected = format!("expected one of {}", TraitKind::known_names());
            let message = if kubevela::TRAIT_TYPES.contains(&name.as_str()) {
                kubevela::unsupported(&format!("trait type {name:?}"), &expected)
            } else {
                format!("unknown trait type {name:?}; {expected}")
            };
            report.error(&trait_path.key("type"), message);
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

fn decode_resource(
    properties: Value,
    path: &FieldPath,
    report: &mut Report,
    intents: &mut TraitIntents,
) {
    let Some(raw) = report.decode::<RawResource>(properties, path) else {
        return;
    };
    let written = Written {
        cpu: raw.cpu,
        memory: raw.memory,
        requests: raw.requests,
        limits: raw.limits,
    };
    if written.cpu.is_none()
        && written.memory.is_none()
        && written.requests.is_none()
        && written.limits.is_none()
    {
        report.error(
            path,
            "the resource trait sets neither cpu nor memory; expected one or both \
             (or requests and limits)",
        );
        return;
    }
    intents.resources = decode_resources(written, path, report);
}
