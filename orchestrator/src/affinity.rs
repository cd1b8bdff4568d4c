//! The `affinity` trait: which nodes a component's replicas may or prefer to run on, and which
//! other components of the application they join or avoid. Both KubeVela's shapes are read:
//! node affinity and selectors as Kubernetes writes them, and pod (anti-)affinity either as
//! gossipctl's short `components: [...]` or as Kubernetes' `required` terms.

use std::collections::{BTreeMap, HashSet};

use serde_yaml::Value;

use crate::diagnostics::Report;
use crate::kubevela;
use crate::model::{MatchExpression, Operator, Placement, PreferredTerm};
use crate::names::{check_label_key, check_label_value};
use crate::path::FieldPath;
use crate::raw::{
    RawAffinity, RawComponentList, RawLabelSelector, RawMatchExpression, RawNodeAffinity,
    RawNodeSelector, RawPodAffinity, RawPodAffinityTerm, RawPreferredTerm, RawSelectorTerm,
};
use crate::references::{Reference, unique_references};
use crate::traits::TraitIntents;

pub(crate) fn decode_affinity(
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

/// The label Kubernetes (and KubeVela) put on a pod to name its component.
pub(crate) const COMPONENT_LABEL: &str = "app.oam.dev/component";

/// The topology key of a node itself.
pub(crate) const HOSTNAME_KEY: &str = "kubernetes.io/hostname";

/// The components a `podAffinity` or `podAntiAffinity` names: gossipctl's short form
/// (`components: [...]`, each listed once) or Kubernetes' `required` terms selecting pods by
/// `app.oam.dev/component` on `kubernetes.io/hostname`, which mean the same.
fn component_list(list: Value, path: &FieldPath, report: &mut Report) -> Vec<Reference> {
    let kubernetes = list.get("required").is_some() || list.get("preferred").is_some();
    if kubernetes {
        return pod_affinity_terms(list, path, report);
    }
    let Some(list) = report.decode::<RawComponentList>(list, path) else {
        return Vec::new();
    };
    unique_references(list.components, &path.key("components"), report)
}

fn pod_affinity_terms(value: Value, path: &FieldPath, report: &mut Report) -> Vec<Reference> {
    let Some(raw) = report.decode::<RawPodAffinity>(value, path) else {
        return Vec::new();
    };
    if raw.preferred.is_some() {
        report.error(
            &path.key("preferred"),
            kubevela::unsupported(
                "preferred pod (anti-)affinity",
                "gossipctl keeps pod (anti-)affinity strictly; use required terms",
            ),
        );
    }
    let mut names: Vec<Reference> = Vec::new();
    let required_path = path.key("required");
    for (index, term) in raw.required.unwrap_or_default().into_iter().enumerate() {
        let term_path = required_path.index(index);
        let Some(term) = report.decode::<RawPodAffinityTerm>(term, &term_path) else {
            continue;
        };
        let beyond = [
            ("namespaces", term.namespaces.is_some()),
            ("namespaceSelector", term.namespace_selector.is_some()),
            ("matchLabelKeys", term.match_label_keys.is_some()),
            ("mismatchLabelKeys", term.mismatch_label_keys.is_some()),
        ];
        for (field, _) in beyond.into_iter().filter(|(_, present)| *present) {
            report.error(
                &term_path.key(field),
                kubevela::unsupported(field, "pod affinity relates components of one application"),
            );
        }
        match term.topology_key.as_deref() {
            Some(HOSTNAME_KEY) => {}
            None => report.error(
                &term_path,
                format!("missing topologyKey; expected {HOSTNAME_KEY}"),
            ),
            Some(other) => report.error(
                &term_path.key("topologyKey"),
                kubevela::unsupported(
                    &format!("pod (anti-)affinity over topologyKey {other:?}"),
                    &format!("gossipctl relates replicas per node: {HOSTNAME_KEY}"),
                ),
            ),
        }
        let selector_path = term_path.key("labelSelector");
        match term.label_selector {
            Some(selector) => {
                for reference in selected_components(selector, &selector_path, report) {
                    if !names.iter().any(|known| known.name == reference.name) {
                        names.push(reference);
                    }
                }
            }
            None => report.error(
                &term_path,
                format!("missing labelSelector; expected matchLabels: {{{COMPONENT_LABEL}: NAME}}"),
            ),
        }
    }
    names
}

/// The components a Kubernetes label selector picks out, by `app.oam.dev/component`; any other
/// way of selecting pods is refused.
pub(crate) fn selected_components(
    selector: Value,
    path: &FieldPath,
    report: &mut Report,
) -> Vec<Reference> {
    let Some(raw) = report.decode::<RawLabelSelector>(selector, path) else {
        return Vec::new();
    };
    let other = |what: String| {
        kubevela::unsupported(
            &what,
            &format!("gossipctl selects components by {COMPONENT_LABEL}"),
        )
    };
    let mut names = Vec::new();
    let mut refused = false;
    let labels_path = path.key("matchLabels");
    for (key, value) in raw.match_labels.unwrap_or_default() {
        let key_path = labels_path.key(&key);
        if key == COMPONENT_LABEL {
            names.push(Reference {
                name: value,
                path: key_path,
            });
        } else {
            report.error(&key_path, other(format!("selecting pods by label {key:?}")));
            refused = true;
        }
    }
    let expressions_path = path.key("matchExpressions");
    for (index, value) in raw
        .match_expressions
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let expression_path = expressions_path.index(index);
        let Some(expression) = report.decode::<RawMatchExpression>(value, &expression_path) else {
            refused = true;
            continue;
        };
        if expression.key != COMPONENT_LABEL || expression.operator != "In" {
            report.error(
                &expression_path,
                other(format!(
                    "selecting pods with {} {}",
                    expression.key, expression.operator
                )),
            );
            refused = true;
            continue;
        }
        let values_path = expression_path.key("values");
        for (index, name) in expression
            .values
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            names.push(Reference {
                name,
                path: values_path.index(index),
            });
        }
    }
    if names.is_empty() && !refused {
        report.error(
            path,
            format!("the labelSelector selects no component; expected matchLabels: {{{COMPONENT_LABEL}: NAME}}"),
        );
    }
    names
}
