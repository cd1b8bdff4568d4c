//! The `spread` and `topologyspreadconstraints` traits: how evenly a component's own replicas
//! are kept over nodes, or over the values of a node label.

use serde_yaml::Value;

use crate::affinity::{HOSTNAME_KEY, selected_components};
use crate::diagnostics::Report;
use crate::kubevela;
use crate::model::Spread;
use crate::names::check_label_key;
use crate::path::FieldPath;
use crate::raw::{RawSpread, RawSpreadConstraint, RawTopologySpread};
use crate::traits::TraitIntents;

pub(crate) fn decode_spread(
    raw: RawSpread,
    path: &FieldPath,
    report: &mut Report,
) -> Option<Spread> {
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
    // Kubernetes' key for the node itself is what a spread without a key does.
    let topology_key = raw.topology_key.filter(|key| key != HOSTNAME_KEY);
    let key_ok = topology_key
        .as_ref()
        .is_none_or(|key| report.check(&path.key("topologyKey"), check_label_key(key)));
    Some(Spread {
        topology_key,
        max_skew: max_skew?,
    })
    .filter(|_| key_ok)
}

/// KubeVela's `topologyspreadconstraints`, narrowed to the single constraint `spread` expresses:
/// the component's own replicas, kept strictly within the skew.
pub(crate) fn decode_topology_spread(
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
            let path = constraints_path.index(0);
            if let Some(constraint) = report.decode::<RawSpreadConstraint>(constraint, &path) {
                decode_spread_constraint(constraint, &path, report, intents);
            }
        }
        None => report.error(
            &constraints_path,
            "constraints is empty; expected one constraint",
        ),
    }
}

fn decode_spread_constraint(
    raw: RawSpreadConstraint,
    path: &FieldPath,
    report: &mut Report,
    intents: &mut TraitIntents,
) {
    let beyond = [
        ("minDomains", raw.min_domains.is_some()),
        ("matchLabelKeys", raw.match_label_keys.is_some()),
        ("nodeAffinityPolicy", raw.node_affinity_policy.is_some()),
        ("nodeTaintsPolicy", raw.node_taints_policy.is_some()),
    ];
    for (field, _) in beyond.into_iter().filter(|(_, present)| *present) {
        report.error(&path.key(field), kubevela::unsupported(field, "remove it"));
    }
    match raw.when_unsatisfiable.as_deref() {
        None | Some("DoNotSchedule") => {}
        Some("ScheduleAnyway") => report.error(
            &path.key("whenUnsatisfiable"),
            kubevela::unsupported(
                "whenUnsatisfiable: ScheduleAnyway",
                "gossipctl keeps a spread strictly (DoNotSchedule)",
            ),
        ),
        Some(other) => report.error(
            &path.key("whenUnsatisfiable"),
            format!(
                "unknown whenUnsatisfiable {other:?}; expected DoNotSchedule or ScheduleAnyway"
            ),
        ),
    }
    if let Some(selector) = raw.label_selector {
        intents.spread_selects = selected_components(selector, &path.key("labelSelector"), report);
    }
    let spread = RawSpread {
        topology_key: raw.topology_key,
        max_skew: raw.max_skew,
    };
    intents.placement.spread = decode_spread(spread, path, report);
}
