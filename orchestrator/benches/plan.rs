//! `plan` time at scale: 1,000 nodes and 1,000 replicas, fresh and after a node failure.
//! Run with `cargo bench -p orchestrator --bench plan`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use orchestrator::plan::{NodeInfo, Running, plan};
use orchestrator::{
    Application, Component, Placement, ProcessSpec, Resources, RestartPolicy, Spread, Workload,
};

const NODES: usize = 1000;
const APPS: usize = 100;
const REPLICAS: u32 = 10;
const RUNS: usize = 20;

fn nodes() -> Vec<NodeInfo> {
    (0..NODES)
        .map(|i| NodeInfo {
            name: format!("node-{i:04}"),
            labels: BTreeMap::from([("zone".to_string(), ["a", "b", "c"][i % 3].to_string())]),
            capacity: Resources {
                cpu_millis: 4000,
                memory_bytes: 8 << 30,
            },
            runtimes: BTreeSet::from(["process".to_string()]),
            cordoned: false,
        })
        .collect()
}

/// 100 applications of 10 replicas: a third spread over nodes, a third over zones, a third
/// pinned to a zone, all reserving resources.
fn apps() -> Vec<Application> {
    (0..APPS)
        .map(|i| {
            let placement = match i % 3 {
                0 => Placement {
                    spread: Some(Spread {
                        topology_key: None,
                        max_skew: 1,
                    }),
                    ..Placement::default()
                },
                1 => Placement {
                    spread: Some(Spread {
                        topology_key: Some("zone".into()),
                        max_skew: 1,
                    }),
                    ..Placement::default()
                },
                _ => Placement {
                    node_selector: BTreeMap::from([("zone".to_string(), "b".to_string())]),
                    ..Placement::default()
                },
            };
            Application {
                name: format!("app-{i:03}"),
                components: vec![Component {
                    name: "main".into(),
                    workload: Workload::Process(ProcessSpec {
                        command: vec!["true".into()],
                        env: vec![],
                        working_dir: None,
                        restart: RestartPolicy::Always,
                        probes: Default::default(),
                    }),
                    replicas: REPLICAS,
                    placement,
                    resources: Resources {
                        cpu_millis: 250,
                        memory_bytes: 128 << 20,
                    },
                    depends_on: vec![],
                    rollout: None,
                    service: None,
                    gateway: None,
                    limits: Default::default(),
                }],
                policies: vec![],
            }
        })
        .collect()
}

fn time(mut f: impl FnMut()) -> (Duration, Duration) {
    let mut samples: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    samples.sort();
    (samples[RUNS / 2], samples[RUNS - 1])
}

fn main() {
    let nodes = nodes();
    let apps = apps();
    let fresh = plan(&apps, &nodes, &Running::new());
    assert_eq!(fresh.assignments.len(), APPS * REPLICAS as usize);
    let running: Running = fresh
        .assignments
        .iter()
        .map(|(id, node)| (id.clone(), BTreeSet::from([node.clone()])))
        .collect();
    let survivors: Vec<NodeInfo> = nodes.iter().skip(1).cloned().collect();

    let (fresh_median, fresh_max) = time(|| {
        std::hint::black_box(plan(&apps, &nodes, &Running::new()));
    });
    let (steady_median, steady_max) = time(|| {
        std::hint::black_box(plan(&apps, &nodes, &running));
    });
    let (failover_median, failover_max) = time(|| {
        std::hint::black_box(plan(&apps, &survivors, &running));
    });
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "plan: {NODES} nodes x {} replicas ({APPS} apps), {RUNS} runs each",
        APPS * REPLICAS as usize
    );
    println!("| case | median | max | goal |");
    println!("|---|---|---|---|");
    for (case, median, max) in [
        ("fresh placement", fresh_median, fresh_max),
        ("every replica already running", steady_median, steady_max),
        ("one node failed", failover_median, failover_max),
    ] {
        println!(
            "| {case} | {:.2} ms | {:.2} ms | < 10 ms ({:.2}x of goal) |",
            ms(median),
            ms(max),
            ms(median) / 10.0
        );
    }
}
