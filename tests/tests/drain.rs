//! Cordon, drain and uncordon end to end: real agents move a draining node's replicas one at a
//! time, each only once its replacement elsewhere is ready, while a watcher in the test checks
//! that the ready count never drops below `desired - maxUnavailable`; the admin's word
//! survives a restart of every agent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{Cluster, wait_for};

const REPLICAS: usize = 6;

fn app(name: &str, replicas: usize) -> String {
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {name}
spec:
  components:
    - name: worker
      type: process
      properties:
        command: ["sleep", "3600"]
        readinessProbe:
          exec:
            command: ["true"]
          periodSeconds: 1
      traits:
        - type: scaler
          properties: {{replicas: {replicas}}}
        - type: spread
          properties: {{}}
"#
    )
}

/// Nodes of `app`'s replicas as `get workloads` shows them: `(node, state)`.
fn placed(cluster: &Cluster, app: &str) -> Vec<(String, String)> {
    cluster
        .workloads()
        .iter()
        .filter(|w| w["app"] == app)
        .map(|w| {
            (
                w["node"].as_str().unwrap().to_string(),
                w["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn node_view(cluster: &Cluster, name: &str) -> serde_json::Value {
    let nodes = cluster.ctl(&["get", "nodes", "-o", "json"]).ok().json();
    nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap()
        .clone()
}

#[test]
fn drain_moves_replicas_without_losing_readiness_and_cordon_survives_restarts() {
    let cluster = Cluster::up_joined(3);
    let file = cluster.write("kept.yaml", &app("kept", REPLICAS));
    cluster.ctl(&["deploy", &file, "--wait"]).ok();
    wait_for("every replica ready", Duration::from_secs(20), || {
        let placed = placed(&cluster, "kept");
        placed.len() == REPLICAS && placed.iter().all(|(_, s)| s == "ready")
    });
    let on_node_2 = placed(&cluster, "kept")
        .iter()
        .filter(|(n, _)| n == "node-2")
        .count();
    assert_eq!(
        on_node_2, 2,
        "spread puts two of six on each of three nodes"
    );

    // A watcher counts ready replicas while the drain runs.
    let stop = Arc::new(AtomicBool::new(false));
    let fewest = Arc::new(Mutex::new(usize::MAX));
    let watcher = {
        let (stop, fewest, config) = (stop.clone(), fewest.clone(), cluster.config());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let run = e2e::gossipctl(&["get", "workloads", "-o", "json"], &config);
                if run.code == 0 {
                    let ready = run
                        .json()
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|w| w["app"] == "kept" && w["state"] == "ready")
                        .count();
                    let mut fewest = fewest.lock().unwrap();
                    *fewest = (*fewest).min(ready);
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    let drained = cluster.ctl(&["drain", "node-2", "--wait", "--timeout", "60s"]);
    stop.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    assert_eq!(drained.code, 0, "{drained:?}");
    assert!(
        drained.stdout.contains("node node-2 drained"),
        "{drained:?}"
    );
    let fewest = *fewest.lock().unwrap();
    assert!(
        fewest >= REPLICAS - 1,
        "never below desired - maxUnavailable ready replicas during the drain: {fewest}"
    );
    wait_for(
        "every replica ready elsewhere",
        Duration::from_secs(20),
        || {
            let placed = placed(&cluster, "kept");
            placed.len() == REPLICAS && placed.iter().all(|(n, s)| n != "node-2" && s == "ready")
        },
    );
    let events = cluster
        .ctl(&["get", "events", "--app", "kept", "-o", "json"])
        .ok()
        .json();
    let handed: Vec<&serde_json::Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "Drained" && e["node"] == "node-2")
        .collect();
    assert_eq!(handed.len(), 2, "one event per replica moved: {events:#}");

    // Draining is a cordon: nothing new lands there.
    assert_eq!(node_view(&cluster, "node-2")["maintenance"], "draining");
    let table = cluster.ctl(&["get", "nodes"]).ok().stdout;
    assert!(table.contains("alive,draining"), "{table}");
    let late = cluster.write("late.yaml", &app("late", 3));
    cluster.ctl(&["deploy", &late, "--wait"]).ok();
    assert!(
        placed(&cluster, "late").iter().all(|(n, _)| n != "node-2"),
        "a cordoned node takes no new replica"
    );

    // The admin's word is in the replicated state: every agent restarted still has it.
    cluster.ctl(&["down", "--dir", cluster.path()]).ok();
    cluster.up_again();
    wait_for(
        "the agents to see each other again",
        Duration::from_secs(30),
        || cluster.all_see_all_alive(),
    );
    assert_eq!(node_view(&cluster, "node-2")["maintenance"], "draining");

    // Uncordon: schedulable again; new replicas may land there.
    cluster.ctl(&["uncordon", "node-2"]).ok();
    wait_for("node-2 schedulable", Duration::from_secs(10), || {
        node_view(&cluster, "node-2").get("maintenance").is_none()
    });
    let again = cluster.write("again.yaml", &app("again", 3));
    cluster.ctl(&["deploy", &again, "--wait"]).ok();
    assert!(
        placed(&cluster, "again").iter().any(|(n, _)| n == "node-2"),
        "spread uses the uncordoned node"
    );
    let unknown = cluster.ctl(&["cordon", "node-9"]);
    assert_eq!(unknown.code, 1, "{unknown:?}");
    assert!(unknown.stderr.contains("not found"), "{unknown:?}");
}
