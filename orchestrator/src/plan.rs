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
use crate::node_tables::NodeTables;
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
    /// Cordoned by an admin: keeps the replicas it runs, takes no new ones. Set by whoever
    /// builds the view from the admin's word, never by the node itself.
    #[serde(default, skip_serializing_if = "is_false")]
    pub cordoned: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
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
    // Cordoned nodes keep what they run (above) but take nothing new.
    let open: Option<Vec<usize>> = nodes
        .iter()
        .any(|n| n.cordoned)
        .then(|| (0..nodes.len()).filter(|&n| !nodes[n].cordoned).collect());
    for (slot, id) in unplaced {
        let choice = state.choose(slot, &id, open.as_deref()).map_err(|reason| {
            if open.is_some() && state.choose(slot, &id, None).is_ok() {
                "every node that could take it is cordoned".to_string()
            } else {
                reason
            }
        });
        match choice {
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
    /// Slots of the same application it must share nodes with.
    colocate: Vec<usize>,
    /// Slots of the same application it must not share a node with: those it avoids and those
    /// that avoid it, as Kubernetes keeps a running pod's anti-affinity when placing others.
    avoid: Vec<usize>,
    /// Summed preferred-affinity weight per node, when it has preferences.
    preference: Option<Vec<u32>>,
    /// For `spread` over a label: each node's domain (index into the label's values).
    domains: Option<(Vec<Option<usize>>, usize)>,
    /// Ports it binds on its node (`hostPort`): two replicas that bind one port never share a
    /// node, whichever components they belong to (Kubernetes' NodePorts filter).
    host_ports: Vec<u16>,
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
    /// Host ports bound per node.
    bound: Vec<BTreeSet<u16>>,
}

impl<'a> Placement<'a> {
    fn new(nodes: &'a [&'a NodeInfo], apps: &[&'a Application]) -> Self {
        let mut tables = NodeTables::new(nodes);
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
                let preference = (!placement.preferred.is_empty())
                    .then(|| tables.preference(&placement.preferred));
                let domains = placement
                    .spread
                    .as_ref()
                    .and_then(|s| s.topology_key.as_deref())
                    .map(|key| tables.domains(key));
                let eligible = tables.eligible(component);
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
                    host_ports: host_ports(component),
                });
            }
            for this in first..slots.len() {
                for other in slots[this].avoid.clone() {
                    if !slots[other].avoid.contains(&this) {
                        slots[other].avoid.push(this);
                    }
                }
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
            bound: vec![BTreeSet::new(); nodes.len()],
        }
    }

    fn place(&mut self, slot: usize, node: usize) {
        let needs = self.slots[slot].component.resources;
        let free = &mut self.free[node];
        free.cpu_millis -= needs.cpu_millis;
        free.memory_bytes -= needs.memory_bytes;
        self.hosted[slot][node] += 1;
        self.bound[node].extend(self.slots[slot].host_ports.iter().copied());
    }

    /// Whether `node` has every port `slot` binds free.
    fn ports_free(&self, slot: usize, node: usize) -> bool {
        self.slots[slot]
            .host_ports
            .iter()
            .all(|port| !self.bound[node].contains(port))
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
        let fast = self.choose_fast(slot, id, only);
        // The filters one at a time are the reference the fast path must agree with; the
        // crate's tests (property tests included) check every choice against them.
        #[cfg(test)]
        {
            let reference = self.explain(slot, id, only);
            match fast {
                Some(best) => assert_eq!(reference, Ok(best), "fast path disagrees on {id}"),
                None => assert!(reference.is_err(), "fast path found no node for {id}"),
            }
        }
        match fast {
            Some(best) => Ok(best),
            None => self.explain(slot, id, only),
        }
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
                && self.ports_free(slot, n)
        };
        let nodes: &[usize] = only.unwrap_or(&s.eligible_list);
        let counts = &self.hosted[slot];
        let replica_hash = xxhash_rust::xxh3::xxh3_64(id.to_string().as_bytes());
        // Preference, then rendezvous hash, then node index (ties go to the later node, as in
        // `explain`), packed into one integer: the sweeps below run a million times per plan
        // at scale, and one comparison is cheaper than a tuple's.
        let score = |n: usize| -> u128 {
            let preference = s.preference.as_ref().map_or(0, |p| p[n]);
            (u128::from(preference) << 96)
                | (u128::from(rendezvous(replica_hash, self.node_hash[n])) << 32)
                | n as u128
        };
        let node_of = |score: u128| score as u32 as usize;
        let candidates = nodes.iter().copied().filter(|&n| passes(n));
        let Some(spread) = s.component.placement.spread.as_ref() else {
            return candidates.map(score).max().map(node_of);
        };
        match &s.domains {
            // The default spread over nodes (maxSkew 1) admits exactly the least-loaded nodes:
            // one sweep finds the best of them.
            None if spread.max_skew == 1 => {
                let mut best: Option<(u32, u128)> = None;
                for n in candidates {
                    let count = counts[n];
                    match best {
                        Some((least, _)) if count > least => {}
                        Some((least, top)) if count == least && score(n) < top => {}
                        _ => best = Some((count, score(n))),
                    }
                }
                best.map(|(_, top)| node_of(top))
            }
            None => {
                let least = candidates.clone().map(|n| counts[n]).min()?;
                candidates
                    .filter(|&n| counts[n] + 1 - least <= spread.max_skew)
                    .map(score)
                    .max()
                    .map(node_of)
            }
            // Over a label: one sweep totals each value's replicas on candidate nodes and keeps
            // its best candidate; the best among values within the skew wins.
            Some((of_node, domains)) => {
                let mut per_domain: Vec<Option<(u32, u128)>> = vec![None; *domains];
                for n in candidates {
                    let Some(d) = of_node[n] else { continue };
                    let here = score(n);
                    let entry = per_domain[d].get_or_insert((0, here));
                    entry.0 += counts[n];
                    entry.1 = entry.1.max(here);
                }
                let least = per_domain.iter().flatten().map(|(count, _)| *count).min()?;
                per_domain
                    .into_iter()
                    .flatten()
                    .filter(|(count, _)| count + 1 - least <= spread.max_skew)
                    .map(|(_, top)| top)
                    .max()
                    .map(node_of)
            }
        }
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
                s.avoid
                    .iter()
                    .map(|&other| &self.slots[other].component.name)
                    .collect::<Vec<_>>()
            ),
            &|n| s.avoid.iter().all(|&other| self.hosted[other][n] == 0),
        )?;
        narrow(
            &mut candidates,
            format!(
                "hostPort: every node already binds one of {:?}",
                s.host_ports
            ),
            &|n| self.ports_free(slot, n),
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

/// The ports a component's replicas bind on their node.
fn host_ports(component: &Component) -> Vec<u16> {
    match &component.workload {
        Workload::Webservice(spec) | Workload::Worker(spec) => {
            // An exposed port is published at its hostPort, by default the same number.
            spec.ports
                .iter()
                .filter(|p| p.expose)
                .map(|p| p.host_port.unwrap_or(p.port))
                .collect()
        }
        Workload::Process(_) | Workload::Learner(_) => Vec::new(),
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
    use crate::model::{Placement as Intents, Spread};

    fn node(name: &str, zone: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: [("zone".to_string(), zone.to_string())].into(),
            capacity: Resources {
                cpu_millis: 2000,
                memory_bytes: 1 << 30,
            },
            runtimes: ["process".to_string()].into(),
            cordoned: false,
        }
    }

    fn app(replicas: u32, placement: Intents, resources: Resources) -> Application {
        Application {
            name: "app".into(),
            components: vec![Component {
                name: "web".into(),
                workload: Workload::placeholder_process(),
                replicas,
                placement,
                resources,
                depends_on: vec![],
                rollout: None,
                service: None,
                gateway: None,
                limits: Default::default(),
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
    fn a_cordoned_node_keeps_what_it_runs_and_takes_nothing_new() {
        let mut nodes = vec![node("a", "z"), node("b", "z")];
        let first = plan(
            &[app(4, Intents::default(), Resources::default())],
            &nodes,
            &Running::new(),
        );
        let on_b: BTreeSet<WorkloadId> = first
            .assignments
            .iter()
            .filter(|(_, n)| n.as_str() == "b")
            .map(|(id, _)| id.clone())
            .collect();
        assert!(
            !on_b.is_empty(),
            "both nodes take replicas before the cordon"
        );
        nodes[1].cordoned = true;
        let grown = plan(
            &[app(8, Intents::default(), Resources::default())],
            &nodes,
            &running(&first),
        );
        for (id, node) in &grown.assignments {
            let stays = on_b.contains(id);
            assert_eq!(
                node == "b",
                stays,
                "{id} on {node}: only what b ran stays there"
            );
        }
        nodes[0].cordoned = true;
        let none = plan(
            &[app(8, Intents::default(), Resources::default())],
            &nodes,
            &Running::new(),
        );
        assert!(none.assignments.is_empty());
        let why = &none.unschedulable[&("app".to_string(), "web".to_string())];
        assert!(why.contains("cordoned"), "{why}");
    }

    #[test]
    fn replicas_binding_one_host_port_never_share_a_node() {
        let web = |ports: Vec<u16>| {
            Workload::Webservice(crate::model::ContainerSpec {
                image: "web".into(),
                cmd: vec![],
                args: vec![],
                env: vec![],
                ports: ports
                    .into_iter()
                    .map(|port| crate::model::PortSpec {
                        port: 80,
                        expose: true,
                        host_port: Some(port),
                    })
                    .collect(),
                restart: Default::default(),
                probes: Default::default(),
            })
        };
        let mut nodes: Vec<_> = (1..=3).map(|i| node(&format!("n{i}"), "a")).collect();
        for n in &mut nodes {
            n.runtimes.insert("container".into());
        }
        let mut two = app(2, Intents::default(), Resources::default());
        two.components[0].workload = web(vec![8080]);
        let mut other = two.clone();
        other.name = "other".into();
        other.components[0].workload = web(vec![9090, 8080]);
        other.components[0].replicas = 1;
        let placed = plan(&[two.clone(), other.clone()], &nodes, &Running::new());
        assert!(
            placed.unschedulable.is_empty(),
            "{:?}",
            placed.unschedulable
        );
        let used: BTreeSet<_> = placed.assignments.values().collect();
        assert_eq!(used.len(), 3, "8080 is bound once per node: {placed:?}");

        let crowded = plan(&[two], &nodes[..1], &Running::new());
        assert_eq!(crowded.assignments.len(), 1);
        let why = &crowded.unschedulable[&("app".to_string(), "web".to_string())];
        assert!(
            why.contains("hostPort: every node already binds one of [8080]"),
            "{why}"
        );
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
