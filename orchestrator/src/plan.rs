//! Shared-nothing placement: `plan(applications, nodes, running) -> assignments`.
//!
//! Every agent runs this same pure function on its own view of the cluster and starts only the
//! replicas assigned to itself, so there is no leader to elect and nothing to lock: agents with
//! the same view compute the same plan.
//!
//! Stability comes from two rules. First, a replica that already runs on a live node that still
//! satisfies its intents stays there (`running` is the replicated observed state, so every agent
//! sees the same one); placement only ever decides for replicas that run nowhere, which is why
//! a node leaving moves exactly the replicas it ran and a node joining moves none. Second, a
//! replica placed afresh picks, among the eligible nodes, the best preferred-affinity score and
//! then the highest rendezvous (highest-random-weight) hash of `(replica, node)`, so the same
//! view yields the same choice everywhere without coordination.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::{Application, Component, Resources, Workload, WorkloadId};
use crate::quantity::{approximate_memory, format_cpu, format_memory};

/// What the scheduler knows of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub capacity: Resources,
    /// Workload runtimes the node can run: `process`, `container`, `learner`.
    #[serde(default)]
    pub runtimes: BTreeSet<String>,
}

/// The outcome of placement for a whole cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Every replica that could be placed, with its node.
    pub assignments: BTreeMap<WorkloadId, String>,
    /// Components with replicas that no node could take, keyed by `(app, component)`, with the
    /// intent that could not be met and why.
    pub unschedulable: BTreeMap<(String, String), String>,
}

impl Plan {
    /// The replicas assigned to `node`.
    pub fn for_node<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a WorkloadId> + 'a {
        self.assignments
            .iter()
            .filter(move |(_, n)| n.as_str() == node)
            .map(|(id, _)| id)
    }
}

/// The runtime a workload needs on its node.
pub fn required_runtime(workload: &Workload) -> &'static str {
    match workload {
        Workload::Process(_) => "process",
        Workload::Webservice(_) | Workload::Worker(_) => "container",
        Workload::Learner(_) => "learner",
    }
}

/// Where replicas run now, from the replicated observed state: replica -> nodes reporting it.
/// More than one node appears only transiently, e.g. right after a partition heals.
pub type Running = BTreeMap<WorkloadId, BTreeSet<String>>;

/// Places every replica of every application. Deterministic: the result depends only on the
/// arguments, not on their order.
pub fn plan(applications: &[Application], nodes: &[NodeInfo], running: &Running) -> Plan {
    let mut nodes: Vec<&NodeInfo> = nodes.iter().collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes.dedup_by(|a, b| a.name == b.name);
    let mut apps: Vec<&Application> = applications.iter().collect();
    apps.sort_by(|a, b| a.name.cmp(&b.name));

    let mut state = Placement::new(&nodes, &apps);
    let index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut plan = Plan::default();
    // Replicas that run somewhere eligible keep their node; they claim capacity first.
    let mut unplaced = Vec::new();
    for slot in 0..state.slots.len() {
        for replica in 0..state.slots[slot].component.replicas {
            let id = state.slots[slot].id(replica);
            let hosts: Vec<usize> = running
                .get(&id)
                .map(|hosts| {
                    hosts
                        .iter()
                        .filter_map(|h| index.get(h.as_str()).copied())
                        .collect()
                })
                .unwrap_or_default();
            let sticky = if hosts.is_empty() {
                None
            } else {
                state.choose(slot, &id, Some(&hosts)).ok()
            };
            match sticky {
                Some(node) => {
                    state.place(slot, node);
                    plan.assignments.insert(id, nodes[node].name.clone());
                }
                None => unplaced.push((slot, id)),
            }
        }
    }
    for (slot, id) in unplaced {
        match state.choose(slot, &id, None) {
            Ok(node) => {
                state.place(slot, node);
                plan.assignments.insert(id, nodes[node].name.clone());
            }
            Err(reason) => {
                plan.unschedulable
                    .entry((id.app.clone(), id.component.clone()))
                    .or_insert(format!("replica {}: {reason}", id.replica));
            }
        }
    }
    plan
}

/// Components ordered so that each comes after the components it must be co-located with
/// (validation guarantees the names exist; a cycle falls back to declaration order).
fn colocation_order(app: &Application) -> Vec<&Component> {
    let mut ordered: Vec<&Component> = Vec::with_capacity(app.components.len());
    let mut remaining: Vec<&Component> = app.components.iter().collect();
    while !remaining.is_empty() {
        let ready = remaining.iter().position(|c| {
            c.placement
                .colocate_with
                .iter()
                .all(|target| ordered.iter().any(|o| &o.name == target))
        });
        let next = remaining.remove(ready.unwrap_or(0));
        ordered.push(next);
    }
    ordered
}

/// One component, with everything about it that does not change while placing precomputed:
/// placement is then a few integer comparisons per node and replica.
struct Slot<'a> {
    app: &'a str,
    component: &'a Component,
    /// Nodes with the runtime and the labels it requires, or which of those it lacks.
    eligible: Result<Vec<bool>, String>,
    /// The same nodes as a list, to sweep only them.
    eligible_list: Vec<usize>,
    /// Slots of the same application it must share nodes with, and must avoid.
    colocate: Vec<usize>,
    avoid: Vec<usize>,
    /// Summed preferred-affinity weight per node, when it has preferences.
    preference: Option<Vec<u32>>,
    /// For `spread` over a label: each node's domain (index into the label's values).
    domains: Option<(Vec<Option<usize>>, usize)>,
}

impl Slot<'_> {
    fn id(&self, replica: u32) -> WorkloadId {
        WorkloadId {
            app: self.app.to_string(),
            component: self.component.name.clone(),
            replica,
        }
    }
}

/// Running totals while placing: what each node has left and which components it hosts.
struct Placement<'a> {
    nodes: &'a [&'a NodeInfo],
    node_hash: Vec<u64>,
    slots: Vec<Slot<'a>>,
    free: Vec<Resources>,
    /// Replicas per slot per node.
    hosted: Vec<Vec<u32>>,
}

fn eligible_nodes(nodes: &[&NodeInfo], component: &Component) -> Result<Vec<bool>, String> {
    let runtime = required_runtime(&component.workload);
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
    let placement = &component.placement;
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

impl<'a> Placement<'a> {
    fn new(nodes: &'a [&'a NodeInfo], apps: &[&'a Application]) -> Self {
        let mut slots = Vec::new();
        for app in apps {
            let first = slots.len();
            let order = colocation_order(app);
            let slot_of = |name: &String| {
                order
                    .iter()
                    .position(|c| &c.name == name)
                    .map(|p| first + p)
            };
            for component in &order {
                let placement = &component.placement;
                let preference = (!placement.preferred.is_empty()).then(|| {
                    nodes
                        .iter()
                        .map(|n| {
                            placement
                                .preferred
                                .iter()
                                .filter(|t| t.expressions.iter().all(|e| e.matches(&n.labels)))
                                .map(|t| t.weight)
                                .sum()
                        })
                        .collect()
                });
                let domains = placement
                    .spread
                    .as_ref()
                    .and_then(|s| s.topology_key.as_ref())
                    .map(|key| {
                        let values: BTreeSet<&String> =
                            nodes.iter().filter_map(|n| n.labels.get(key)).collect();
                        let values: Vec<&String> = values.into_iter().collect();
                        let of_node = nodes
                            .iter()
                            .map(|n| {
                                n.labels
                                    .get(key)
                                    .and_then(|v| values.iter().position(|x| *x == v))
                            })
                            .collect();
                        (of_node, values.len())
                    });
                let eligible = eligible_nodes(nodes, component);
                let eligible_list = match &eligible {
                    Ok(eligible) => (0..nodes.len()).filter(|&n| eligible[n]).collect(),
                    Err(_) => Vec::new(),
                };
                slots.push(Slot {
                    app: &app.name,
                    component,
                    eligible,
                    eligible_list,
                    colocate: placement.colocate_with.iter().filter_map(slot_of).collect(),
                    avoid: placement.avoid.iter().filter_map(slot_of).collect(),
                    preference,
                    domains,
                });
            }
        }
        Placement {
            nodes,
            node_hash: nodes
                .iter()
                .map(|n| xxhash_rust::xxh3::xxh3_64(n.name.as_bytes()))
                .collect(),
            hosted: vec![vec![0; nodes.len()]; slots.len()],
            slots,
            free: nodes.iter().map(|n| n.capacity).collect(),
        }
    }

    fn place(&mut self, slot: usize, node: usize) {
        let needs = self.slots[slot].component.resources;
        let free = &mut self.free[node];
        free.cpu_millis -= needs.cpu_millis;
        free.memory_bytes -= needs.memory_bytes;
        self.hosted[slot][node] += 1;
    }

    /// Picks the node for one replica (among `only`, when given), or says which intent no node
    /// could meet. The fast path scores the nodes that pass every filter in two sweeps; only
    /// when none does are the filters applied one by one, to name the one that failed.
    fn choose(
        &self,
        slot: usize,
        id: &WorkloadId,
        only: Option<&[usize]>,
    ) -> Result<usize, String> {
        if let Some(best) = self.choose_fast(slot, id, only) {
            return Ok(best);
        }
        self.explain(slot, id, only)
    }

    fn choose_fast(&self, slot: usize, id: &WorkloadId, only: Option<&[usize]>) -> Option<usize> {
        let s = &self.slots[slot];
        let eligible = s.eligible.as_ref().ok()?;
        let needs = s.component.resources;
        let passes = |n: usize| {
            eligible[n]
                && self.free[n].cpu_millis >= needs.cpu_millis
                && self.free[n].memory_bytes >= needs.memory_bytes
                && s.colocate.iter().all(|&other| self.hosted[other][n] > 0)
                && s.avoid.iter().all(|&other| self.hosted[other][n] == 0)
        };
        let nodes: &[usize] = only.unwrap_or(&s.eligible_list);
        let counts = &self.hosted[slot];
        let spread = s.component.placement.spread.as_ref();
        let replica_hash = xxhash_rust::xxh3::xxh3_64(id.to_string().as_bytes());
        let score = |n: usize| {
            let preference = s.preference.as_ref().map_or(0, |p| p[n]);
            (preference, rendezvous(replica_hash, self.node_hash[n]))
        };
        // The default spread (over nodes, maxSkew 1) admits exactly the least-loaded nodes:
        // one sweep finds the best of them.
        if let (Some(spread), None) = (spread, &s.domains)
            && spread.max_skew == 1
        {
            let mut best: Option<(u32, (u32, u64), usize)> = None;
            for &n in nodes.iter().filter(|&&n| passes(n)) {
                let candidate = (counts[n], score(n), n);
                best = match best {
                    Some(current)
                        if current.0 < candidate.0
                            || (current.0 == candidate.0 && current.1 >= candidate.1) =>
                    {
                        Some(current)
                    }
                    _ => Some(candidate),
                };
            }
            return best.map(|(_, _, n)| n);
        }
        // Sweep 1 (only with spread): the least-loaded node or label value among candidates.
        let mut least_node = u32::MAX;
        let mut per_domain: Vec<Option<u32>> = match &s.domains {
            Some((_, domains)) => vec![None; *domains],
            None => Vec::new(),
        };
        if spread.is_some() {
            for &n in nodes.iter().filter(|&&n| passes(n)) {
                match &s.domains {
                    None => least_node = least_node.min(counts[n]),
                    Some((of_node, _)) => {
                        if let Some(d) = of_node[n] {
                            *per_domain[d].get_or_insert(0) += counts[n];
                        }
                    }
                }
            }
        }
        let least_domain = per_domain.iter().flatten().copied().min().unwrap_or(0);
        let within_skew = |n: usize| match (spread, &s.domains) {
            (None, _) => true,
            (Some(spread), None) => counts[n] + 1 - least_node <= spread.max_skew,
            (Some(spread), Some((of_node, _))) => of_node[n]
                .is_some_and(|d| per_domain[d].unwrap_or(0) + 1 - least_domain <= spread.max_skew),
        };
        // Sweep 2: the best-scoring node that passes everything.
        nodes
            .iter()
            .copied()
            .filter(|&n| passes(n) && within_skew(n))
            .max_by_key(|&n| score(n))
    }

    /// The filters one at a time, to say which intent left no node.
    fn explain(
        &self,
        slot: usize,
        id: &WorkloadId,
        only: Option<&[usize]>,
    ) -> Result<usize, String> {
        let s = &self.slots[slot];
        let component = s.component;
        let eligible = s.eligible.as_ref().map_err(Clone::clone)?;
        let mut candidates: Vec<usize> = match only {
            Some(only) => only.iter().copied().filter(|&n| eligible[n]).collect(),
            None => (0..self.nodes.len()).filter(|&n| eligible[n]).collect(),
        };
        if candidates.is_empty() {
            return Err("its node no longer meets its intents".to_string());
        }
        let needs = component.resources;
        let most_free = Resources {
            cpu_millis: candidates
                .iter()
                .map(|&n| self.free[n].cpu_millis)
                .max()
                .unwrap_or(0),
            memory_bytes: candidates
                .iter()
                .map(|&n| self.free[n].memory_bytes)
                .max()
                .unwrap_or(0),
        };
        narrow(&mut candidates, shortfall(needs, most_free), &|n| {
            self.free[n].cpu_millis >= needs.cpu_millis
                && self.free[n].memory_bytes >= needs.memory_bytes
        })?;
        narrow(
            &mut candidates,
            format!(
                "podAffinity: no node runs {:?}",
                component.placement.colocate_with
            ),
            &|n| s.colocate.iter().all(|&other| self.hosted[other][n] > 0),
        )?;
        narrow(
            &mut candidates,
            format!(
                "podAntiAffinity: every node runs one of {:?}",
                component.placement.avoid
            ),
            &|n| s.avoid.iter().all(|&other| self.hosted[other][n] == 0),
        )?;
        if let Some(spread) = &component.placement.spread {
            let counts = &self.hosted[slot];
            match &s.domains {
                // Over nodes: a replica goes to a node with the fewest replicas of its
                // component (within maxSkew), so replicas take distinct nodes while there are
                // enough, and stay balanced when there are not.
                None => {
                    let least = candidates.iter().map(|&n| counts[n]).min().unwrap_or(0);
                    narrow(
                        &mut candidates,
                        format!("spread: maxSkew {} cannot be kept", spread.max_skew),
                        &|n| counts[n] + 1 - least <= spread.max_skew,
                    )?
                }
                Some((of_node, domains)) => {
                    // Replicas per value of the label, across the nodes that could take this
                    // replica; a value with no candidate node does not hold the others back.
                    let mut per_domain = vec![None; *domains];
                    for &n in &candidates {
                        if let Some(d) = of_node[n] {
                            *per_domain[d].get_or_insert(0) += counts[n];
                        }
                    }
                    let least = per_domain.iter().flatten().copied().min().unwrap_or(0);
                    let key = spread.topology_key.as_deref().unwrap_or_default();
                    narrow(
                        &mut candidates,
                        format!(
                            "spread over {key}: no candidate node has the label, or maxSkew {} cannot be kept",
                            spread.max_skew
                        ),
                        &|n| {
                            of_node[n].is_some_and(|d| {
                                per_domain[d].unwrap_or(0) + 1 - least <= spread.max_skew
                            })
                        },
                    )?
                }
            }
        }

        let replica_hash = xxhash_rust::xxh3::xxh3_64(id.to_string().as_bytes());
        let best = candidates
            .into_iter()
            .max_by_key(|&n| {
                let preference = s.preference.as_ref().map_or(0, |p| p[n]);
                (preference, rendezvous(replica_hash, self.node_hash[n]))
            })
            .expect("candidates is not empty");
        Ok(best)
    }
}

/// Keeps the candidates that pass `keep`; when none does, says which intent failed.
/// Why no node can take a replica that reserves `needs`, given the most any node has free.
fn shortfall(needs: Resources, most_free: Resources) -> String {
    let mut wanted = Vec::new();
    let mut free = Vec::new();
    if needs.cpu_millis > 0 {
        wanted.push(format!("{} CPU", format_cpu(needs.cpu_millis)));
        free.push(format!("{} CPU", format_cpu(most_free.cpu_millis)));
    }
    if needs.memory_bytes > 0 {
        wanted.push(format!("{} memory", format_memory(needs.memory_bytes)));
        free.push(format!(
            "{} memory",
            approximate_memory(most_free.memory_bytes)
        ));
    }
    format!(
        "resource: needs {} per replica, the most free on a candidate node is {}",
        wanted.join(" and "),
        free.join(" and ")
    )
}

fn narrow(
    candidates: &mut Vec<usize>,
    what: String,
    keep: &dyn Fn(usize) -> bool,
) -> Result<(), String> {
    let before = candidates.len();
    candidates.retain(|&n| keep(n));
    if candidates.is_empty() {
        Err(format!("{what} ({before} candidate nodes, none qualify)"))
    } else {
        Ok(())
    }
}

/// Highest-random-weight score of a replica on a node: a strong 64-bit mix of both hashes
/// (splitmix64's finaliser), cheap enough to score every node for every replica.
fn rendezvous(replica: u64, node: u64) -> u64 {
    let mut z = replica ^ node.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Placement as Intents, ProcessSpec, RestartPolicy, Spread};

    fn node(name: &str, zone: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: [("zone".to_string(), zone.to_string())].into(),
            capacity: Resources {
                cpu_millis: 2000,
                memory_bytes: 1 << 30,
            },
            runtimes: ["process".to_string()].into(),
        }
    }

    fn app(replicas: u32, placement: Intents, resources: Resources) -> Application {
        Application {
            name: "app".into(),
            components: vec![Component {
                name: "web".into(),
                workload: Workload::Process(ProcessSpec {
                    command: vec!["true".into()],
                    env: vec![],
                    working_dir: None,
                    restart: RestartPolicy::Always,
                }),
                replicas,
                placement,
                resources,
                depends_on: vec![],
            }],
            policies: vec![],
        }
    }

    /// The observed state after every agent carried out `plan`.
    fn running(plan: &Plan) -> Running {
        plan.assignments
            .iter()
            .map(|(id, node)| (id.clone(), BTreeSet::from([node.clone()])))
            .collect()
    }

    #[test]
    fn spread_puts_replicas_on_distinct_nodes() {
        let nodes: Vec<_> = (1..=5).map(|i| node(&format!("n{i}"), "a")).collect();
        let spread = Intents {
            spread: Some(Spread {
                topology_key: None,
                max_skew: 1,
            }),
            ..Default::default()
        };
        let plan = plan(
            &[app(5, spread.clone(), Resources::default())],
            &nodes,
            &Running::new(),
        );
        let used: BTreeSet<_> = plan.assignments.values().collect();
        assert_eq!(used.len(), 5);

        // Fewer nodes than replicas: shared evenly, never two more on one node than another.
        let short = super::plan(
            &[app(7, spread, Resources::default())],
            &nodes,
            &Running::new(),
        );
        assert!(short.unschedulable.is_empty());
        let mut per_node: BTreeMap<&String, u32> = BTreeMap::new();
        for node in short.assignments.values() {
            *per_node.entry(node).or_default() += 1;
        }
        assert_eq!(per_node.len(), 5);
        assert!(per_node.values().all(|&c| c == 1 || c == 2));
    }

    #[test]
    fn capacity_is_never_exceeded() {
        let nodes = vec![node("n1", "a")];
        let half = Resources {
            cpu_millis: 1000,
            memory_bytes: 0,
        };
        let plan = plan(&[app(3, Intents::default(), half)], &nodes, &Running::new());
        assert_eq!(plan.assignments.len(), 2);
        assert!(plan.unschedulable.values().next().unwrap().contains(
            "resource: needs 1 CPU per replica, the most free on a candidate node is 0 CPU"
        ));
    }

    #[test]
    fn a_replica_too_big_for_any_node_says_what_it_needs_and_what_is_free() {
        let big = Resources {
            cpu_millis: 0,
            memory_bytes: 64 << 40,
        };
        let plan = plan(
            &[app(1, Intents::default(), big)],
            &[node("n1", "a")],
            &Running::new(),
        );
        let message = plan.unschedulable.values().next().unwrap();
        assert!(
            message.contains(
                "needs 64Ti memory per replica, the most free on a candidate node is 1.0Gi memory"
            ),
            "{message}"
        );
    }

    #[test]
    fn removing_a_node_moves_only_its_replicas() {
        let nodes: Vec<_> = (1..=6).map(|i| node(&format!("n{i}"), "a")).collect();
        let apps = [app(20, Intents::default(), Resources::default())];
        let before = plan(&apps, &nodes, &Running::new());
        let after = plan(&apps, &nodes[1..], &running(&before));
        for (id, node) in &before.assignments {
            if node != "n1" {
                assert_eq!(&after.assignments[id], node, "{id} moved");
            }
        }
    }

    #[test]
    fn the_plan_does_not_depend_on_input_order() {
        let nodes: Vec<_> = (1..=4).map(|i| node(&format!("n{i}"), "a")).collect();
        let mut reversed = nodes.clone();
        reversed.reverse();
        let apps = [app(7, Intents::default(), Resources::default())];
        let none = Running::new();
        assert_eq!(plan(&apps, &nodes, &none), plan(&apps, &reversed, &none));
    }
}
