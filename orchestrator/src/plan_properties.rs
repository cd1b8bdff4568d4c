//! Property tests for placement: determinism, intents and capacity always kept, and stability
//! when a node leaves.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use crate::model::{
    Application, Component, MatchExpression, Operator, Placement, PreferredTerm, Resources, Spread,
    Workload,
};
use crate::plan::{NodeInfo, Plan, Running, plan};

const ZONES: [&str; 3] = ["a", "b", "c"];

fn node_strategy() -> impl Strategy<Value = (usize, u64, u64)> {
    (0..ZONES.len(), 1u64..=4, 1u64..=4)
}

fn nodes_strategy() -> impl Strategy<Value = Vec<NodeInfo>> {
    prop::collection::vec(node_strategy(), 1..10).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (zone, cores, gib))| NodeInfo {
                name: format!("node-{i}"),
                labels: BTreeMap::from([("zone".to_string(), ZONES[zone].to_string())]),
                capacity: Resources {
                    cpu_millis: cores * 1000,
                    memory_bytes: gib << 30,
                },
                runtimes: BTreeSet::from(["process".to_string()]),
                cordoned: false,
            })
            .collect()
    })
}

#[derive(Debug, Clone)]
enum SpreadKind {
    None,
    Distinct,
    Zones,
}

fn component_strategy(index: usize) -> impl Strategy<Value = Component> {
    (
        0u32..6,
        prop_oneof![
            Just(SpreadKind::None),
            Just(SpreadKind::Distinct),
            Just(SpreadKind::Zones)
        ],
        prop::option::of(0..ZONES.len()),
        prop_oneof![Just(0u64), 250u64..1500],
        prop_oneof![Just(0u64), 1u64..512],
        (
            1u32..=3,
            prop::option::of((0..ZONES.len(), 1u32..=100)),
            any::<bool>(),
        ),
    )
        .prop_map(
            move |(replicas, spread, zone, cpu, mib, (max_skew, preferred, avoid))| Component {
                name: format!("c{index}"),
                workload: Workload::placeholder_process(),
                replicas,
                placement: Placement {
                    node_selector: zone
                        .map(|z| BTreeMap::from([("zone".to_string(), ZONES[z].to_string())]))
                        .unwrap_or_default(),
                    spread: match spread {
                        SpreadKind::None => None,
                        SpreadKind::Distinct => Some(Spread {
                            topology_key: None,
                            max_skew,
                        }),
                        SpreadKind::Zones => Some(Spread {
                            topology_key: Some("zone".into()),
                            max_skew,
                        }),
                    },
                    preferred: preferred
                        .map(|(zone, weight)| PreferredTerm {
                            weight,
                            expressions: vec![MatchExpression {
                                key: "zone".into(),
                                operator: Operator::In,
                                values: vec![ZONES[zone].to_string()],
                            }],
                        })
                        .into_iter()
                        .collect(),
                    // The first component of an application is what the others may avoid.
                    avoid: if avoid && index > 0 {
                        vec!["c0".to_string()]
                    } else {
                        vec![]
                    },
                    ..Placement::default()
                },
                resources: Resources {
                    cpu_millis: cpu,
                    memory_bytes: mib << 20,
                },
                depends_on: vec![],
                rollout: None,
                service: None,
                gateway: None,
                limits: Default::default(),
            },
        )
}

fn apps_strategy() -> impl Strategy<Value = Vec<Application>> {
    prop::collection::vec(
        (
            component_strategy(0),
            component_strategy(1),
            component_strategy(2),
        ),
        1..4,
    )
    .prop_map(|apps| {
        apps.into_iter()
            .enumerate()
            .map(|(i, (a, b, c))| Application {
                name: format!("app-{i}"),
                components: vec![a, b, c],
                policies: vec![],
            })
            .collect()
    })
}

fn observed(plan: &Plan) -> Running {
    plan.assignments
        .iter()
        .map(|(id, node)| (id.clone(), BTreeSet::from([node.clone()])))
        .collect()
}

fn component<'a>(apps: &'a [Application], app: &str, name: &str) -> &'a Component {
    apps.iter()
        .find(|a| a.name == app)
        .and_then(|a| a.components.iter().find(|c| c.name == name))
        .expect("assigned replica belongs to an application")
}

/// Every assignment keeps its component's hard intents and every node's capacity.
fn assert_respects_intents(apps: &[Application], nodes: &[NodeInfo], plan: &Plan) {
    let node = |name: &str| nodes.iter().find(|n| n.name == name).expect("known node");
    let mut used: BTreeMap<&str, Resources> = BTreeMap::new();
    let mut per_node: BTreeMap<(&str, &str, &str), u32> = BTreeMap::new();
    for (id, name) in &plan.assignments {
        let c = component(apps, &id.app, &id.component);
        let n = node(name);
        for (key, value) in &c.placement.node_selector {
            assert_eq!(
                n.labels.get(key),
                Some(value),
                "{id} on {name} breaks nodeSelector"
            );
        }
        let u = used.entry(name).or_default();
        u.cpu_millis += c.resources.cpu_millis;
        u.memory_bytes += c.resources.memory_bytes;
        assert!(u.cpu_millis <= n.capacity.cpu_millis, "{name} over CPU");
        assert!(
            u.memory_bytes <= n.capacity.memory_bytes,
            "{name} over memory"
        );
        *per_node.entry((&id.app, &id.component, name)).or_default() += 1;
    }
    for (id, name) in &plan.assignments {
        let c = component(apps, &id.app, &id.component);
        for other in &c.placement.avoid {
            assert!(
                !per_node.contains_key(&(id.app.as_str(), other.as_str(), name.as_str())),
                "{id} on {name} shares the node with {other}, which it avoids"
            );
        }
    }
}

/// Fresh placements keep `spread` over nodes: per-node counts of a component differ by at most
/// maxSkew across the nodes that meet its other intents (here: its node selector; without
/// resource requests, capacity never excludes a node, and without anti-affinity on either side,
/// neither do the other components).
fn assert_spread_over_nodes(apps: &[Application], nodes: &[NodeInfo], plan: &Plan) {
    for app in apps {
        for c in &app.components {
            let Some(Spread {
                topology_key: None,
                max_skew,
            }) = c.placement.spread
            else {
                continue;
            };
            let avoided = app
                .components
                .iter()
                .any(|other| other.placement.avoid.contains(&c.name));
            if c.resources != Resources::default() || avoided || !c.placement.avoid.is_empty() {
                continue;
            }
            let selected = |n: &&NodeInfo| {
                c.placement
                    .node_selector
                    .iter()
                    .all(|(k, v)| n.labels.get(k) == Some(v))
            };
            let count = |node: &str| {
                plan.assignments
                    .iter()
                    .filter(|(id, n)| {
                        id.app == app.name && id.component == c.name && n.as_str() == node
                    })
                    .count() as u32
            };
            let counts: Vec<u32> = nodes
                .iter()
                .filter(selected)
                .map(|n| count(&n.name))
                .collect();
            if let (Some(max), Some(min)) = (counts.iter().max(), counts.iter().min()) {
                assert!(
                    max - min <= max_skew,
                    "{}/{}: counts {counts:?}",
                    app.name,
                    c.name
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_plan_is_deterministic(apps in apps_strategy(), nodes in nodes_strategy(), seed in any::<u64>()) {
        let mut shuffled_nodes = nodes.clone();
        let mut shuffled_apps = apps.clone();
        let rotate = (seed as usize) % nodes.len();
        shuffled_nodes.rotate_left(rotate);
        shuffled_apps.reverse();
        let first = plan(&apps, &nodes, &Running::new());
        prop_assert_eq!(&first, &plan(&shuffled_apps, &shuffled_nodes, &Running::new()));
        // Carrying out a plan and planning again places nothing differently. (The reason given
        // for an unplaceable replica may name another intent: capacity is claimed in another order.)
        let again = plan(&apps, &nodes, &observed(&first));
        prop_assert_eq!(&first.assignments, &again.assignments);
        prop_assert_eq!(first.unschedulable.keys().collect::<Vec<_>>(), again.unschedulable.keys().collect::<Vec<_>>());
    }

    #[test]
    fn the_plan_never_breaks_an_intent_or_a_capacity(apps in apps_strategy(), nodes in nodes_strategy()) {
        let first = plan(&apps, &nodes, &Running::new());
        assert_respects_intents(&apps, &nodes, &first);
        assert_spread_over_nodes(&apps, &nodes, &first);
        // Also after a node leaves and the survivors take its replicas.
        let survivors = &nodes[1..];
        if !survivors.is_empty() {
            let after = plan(&apps, survivors, &observed(&first));
            assert_respects_intents(&apps, survivors, &after);
        }
    }

    #[test]
    fn a_node_leaving_moves_only_its_own_replicas(apps in apps_strategy(), nodes in nodes_strategy(), gone in any::<prop::sample::Index>()) {
        let before = plan(&apps, &nodes, &Running::new());
        let gone = &nodes[gone.index(nodes.len())].name;
        let survivors: Vec<NodeInfo> = nodes.iter().filter(|n| &n.name != gone).cloned().collect();
        let after = plan(&apps, &survivors, &observed(&before));
        for (id, node) in &before.assignments {
            if node != gone {
                prop_assert_eq!(after.assignments.get(id), Some(node), "{} moved", id);
            }
        }
        // A node joining moves nothing either.
        let back = plan(&apps, &nodes, &observed(&after));
        for (id, node) in &after.assignments {
            prop_assert_eq!(back.assignments.get(id), Some(node), "{} moved on join", id);
        }
    }
}
