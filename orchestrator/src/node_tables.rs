//! Per-node facts that placement asks of many components at once: which nodes have a runtime
//! and match a component's required labels, how much each prefers it, and which value of a
//! label each node carries.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::{Component, MatchExpression, Placement as Intents, PreferredTerm};
use crate::plan::{NodeInfo, required_runtime};

/// Which nodes have the runtime and the labels a component requires, or which of those none has.
fn eligible_nodes(
    nodes: &[&NodeInfo],
    runtime: &str,
    placement: &Intents,
) -> Result<Vec<bool>, String> {
    let with_runtime: Vec<bool> = nodes.iter().map(|n| n.runtimes.contains(runtime)).collect();
    if nodes.is_empty() {
        return Err("no nodes are alive".to_string());
    }
    if !with_runtime.contains(&true) {
        return Err(format!(
            "no node offers the {runtime} runtime ({} candidate nodes, none qualify)",
            nodes.len()
        ));
    }
    let eligible: Vec<bool> = nodes
        .iter()
        .zip(&with_runtime)
        .map(|(node, &ok)| {
            let labels = &node.labels;
            ok && placement
                .node_selector
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
                && (placement.required_terms.is_empty()
                    || placement
                        .required_terms
                        .iter()
                        .any(|term| term.iter().all(|e| e.matches(labels))))
        })
        .collect();
    if !eligible.contains(&true) {
        let before = with_runtime.iter().filter(|&&ok| ok).count();
        return Err(format!(
            "no node matches the required node affinity ({before} candidate nodes, none qualify)"
        ));
    }
    Ok(eligible)
}

/// What a node's labels mean for an intent, computed once per distinct intent rather than once
/// per component: a thousand components on a thousand nodes would otherwise spend most of
/// placement looking labels up.
pub(crate) struct NodeTables<'a> {
    nodes: &'a [&'a NodeInfo],
    eligible: EligibleCache<'a>,
    preference: HashMap<&'a [PreferredTerm], Vec<u32>>,
    /// Per label key: each node's domain (index into the label's sorted values), and how many.
    domains: HashMap<&'a str, (Vec<Option<usize>>, usize)>,
}

type EligibleKey<'a> = (
    &'static str,
    &'a BTreeMap<String, String>,
    &'a [Vec<MatchExpression>],
);
type EligibleCache<'a> = HashMap<EligibleKey<'a>, Result<Vec<bool>, String>>;

impl<'a> NodeTables<'a> {
    pub(crate) fn new(nodes: &'a [&'a NodeInfo]) -> Self {
        NodeTables {
            nodes,
            eligible: HashMap::new(),
            preference: HashMap::new(),
            domains: HashMap::new(),
        }
    }

    pub(crate) fn eligible(&mut self, component: &'a Component) -> Result<Vec<bool>, String> {
        let runtime = required_runtime(&component.workload);
        let placement = &component.placement;
        let key = (
            runtime,
            &placement.node_selector,
            placement.required_terms.as_slice(),
        );
        let nodes = self.nodes;
        self.eligible
            .entry(key)
            .or_insert_with(|| eligible_nodes(nodes, runtime, placement))
            .clone()
    }

    pub(crate) fn preference(&mut self, terms: &'a [PreferredTerm]) -> Vec<u32> {
        let nodes = self.nodes;
        self.preference
            .entry(terms)
            .or_insert_with(|| {
                nodes
                    .iter()
                    .map(|n| {
                        terms
                            .iter()
                            .filter(|t| t.expressions.iter().all(|e| e.matches(&n.labels)))
                            .map(|t| t.weight)
                            .sum()
                    })
                    .collect()
            })
            .clone()
    }

    pub(crate) fn domains(&mut self, key: &'a str) -> (Vec<Option<usize>>, usize) {
        let nodes = self.nodes;
        self.domains
            .entry(key)
            .or_insert_with(|| {
                let values: BTreeSet<&String> =
                    nodes.iter().filter_map(|n| n.labels.get(key)).collect();
                let index: BTreeMap<&String, usize> = values
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (v, i))
                    .collect();
                let of_node = nodes
                    .iter()
                    .map(|n| n.labels.get(key).map(|v| index[v]))
                    .collect();
                (of_node, index.len())
            })
            .clone()
    }
}
