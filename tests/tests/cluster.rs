//! A real cluster: five `gossipd` processes forming one cluster over QUIC with mutual TLS.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use e2e::{Cluster, replica_groups, unique_marker, wait_for};

/// Five replicas spread over the nodes; `marker` identifies this test's processes.
fn spread_app(marker: &str) -> String {
    let (name, value) = marker.split_once('=').unwrap();
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: web
spec:
  components:
    - name: server
      type: process
      properties:
        command: ["sh", "-c", "while true; do echo serving $GOSSIP_REPLICA on $GOSSIP_NODE; sleep 0.3; done"]
        env:
          - name: {name}
            value: "{value}"
      traits:
        - type: scaler
          properties:
            replicas: 5
        - type: spread
          properties: {{}}
"#
    )
}

/// Replica -> (node, state) as agent `index` reports it.
fn placement(cluster: &Cluster, index: usize) -> BTreeMap<String, (String, String)> {
    let run = cluster.ctl_at(index, &["get", "workloads", "-o", "json"]);
    if run.code != 0 {
        return BTreeMap::new();
    }
    let mut placement = BTreeMap::new();
    for w in run.json().as_array().unwrap() {
        let id = w["id"].as_str().unwrap().to_string();
        let entry = (
            w["node"].as_str().unwrap().to_string(),
            w["state"].as_str().unwrap().to_string(),
        );
        // A replica listed twice is a duplicate being stopped: never "converged".
        if placement.insert(id.clone(), entry).is_some() {
            placement.insert(id, ("duplicate".into(), "duplicate".into()));
        }
    }
    placement
}

fn all_running_once(placement: &BTreeMap<String, (String, String)>) -> bool {
    placement.len() == 5 && placement.values().all(|(_, state)| state == "running")
}

#[test]
fn five_agents_spread_fail_over_and_converge_after_a_restart() {
    let cluster = Cluster::up_joined(5);

    let marker = unique_marker();
    let file = cluster.write("web.yaml", &spread_app(&marker));
    cluster.ctl_at(1, &["deploy", &file, "--wait"]).ok();
    let before = placement(&cluster, 1);
    assert!(all_running_once(&before), "{before:?}");
    let nodes: BTreeSet<&String> = before.values().map(|(node, _)| node).collect();
    assert_eq!(
        nodes.len(),
        5,
        "spread puts 5 replicas on 5 distinct nodes: {before:?}"
    );
    // Every agent sees the same placement.
    wait_for(
        "every agent to see the placement",
        Duration::from_secs(10),
        || (2..=5).all(|i| placement(&cluster, i) == before),
    );
    assert_eq!(replica_groups(&marker).len(), 5);
    let node_2 = cluster
        .ctl_at(1, &["describe", "node", "node-2", "-o", "json"])
        .ok()
        .json();
    assert_eq!(node_2["summary"]["state"], "alive");
    assert_eq!(node_2["summary"]["labels"]["zone"], "b");
    assert_eq!(node_2["workloads"].as_array().unwrap().len(), 1);

    // Logs of a replica that runs on another node, through node-1.
    let (remote, _) = before
        .iter()
        .find(|(_, (node, _))| node != "node-1")
        .map(|(id, v)| (id.clone(), v.clone()))
        .unwrap();
    wait_for("logs from another node", Duration::from_secs(10), || {
        let run = cluster.ctl_at(1, &["logs", &remote, "--tail", "2"]);
        run.code == 0 && run.stdout.contains("serving")
    });

    // kill -9 node-3: declared dead, its replica runs elsewhere.
    let victim = before
        .iter()
        .find(|(_, (node, _))| node == "node-3")
        .map(|(id, _)| id.clone())
        .unwrap();
    cluster.kill_agent(3);
    let killed = Instant::now();
    wait_for("node-3 declared dead", Duration::from_secs(15), || {
        cluster.node_states(1).get("node-3").map(String::as_str) == Some("dead")
    });
    let detected = killed.elapsed();
    wait_for(
        "the lost replica to run elsewhere",
        Duration::from_secs(15),
        || {
            let now = placement(&cluster, 1);
            all_running_once(&now) && now[&victim].0 != "node-3"
        },
    );
    eprintln!(
        "node-3 declared dead after {detected:?}, replaced after {:?}",
        killed.elapsed()
    );
    // The agent that took it over says why, as an event.
    let events = cluster
        .ctl_at(1, &["get", "events", "--app", "web", "-o", "json"])
        .ok()
        .json();
    let told = events.as_array().unwrap().iter().any(|e| {
        e["reason"] == "Rescheduled"
            && e["object"] == victim.as_str()
            && e["message"].as_str().unwrap().starts_with("node-3 is dead")
    });
    assert!(told, "a Rescheduled event for {victim}: {events:#}");
    let moved = placement(&cluster, 1);
    for (id, (node, _)) in &before {
        if node != "node-3" {
            assert_eq!(&moved[id].0, node, "{id} moved although its node is alive");
        }
    }

    // The CLI falls over to the next agent when the first is down.
    let dead_first = cluster.dir.path().join("dead-first.yaml");
    let text = std::fs::read_to_string(cluster.config()).unwrap();
    let mut yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    yaml["agents"] =
        serde_yaml::Value::Sequence(vec![cluster.address(3).into(), cluster.address(2).into()]);
    std::fs::write(&dead_first, serde_yaml::to_string(&yaml).unwrap()).unwrap();
    e2e::gossipctl(&["get", "nodes"], &dead_first).ok();

    // Restart node-3: it rejoins and the cluster converges on one copy of each replica.
    cluster.up_again();
    wait_for("node-3 alive again", Duration::from_secs(20), || {
        cluster.all_see_all_alive()
    });
    wait_for("one copy of each replica", Duration::from_secs(20), || {
        let now = placement(&cluster, 1);
        all_running_once(&now) && replica_groups(&marker).len() == 5
    });
    let settled = placement(&cluster, 1);
    wait_for("every agent to agree", Duration::from_secs(10), || {
        (2..=5).all(|i| placement(&cluster, i) == settled)
    });

    // A clean shutdown is a departure, not a death.
    nix::sys::signal::kill(cluster.agent_pid(5), nix::sys::signal::Signal::SIGTERM).unwrap();
    wait_for("node-5 to have left", Duration::from_secs(15), || {
        cluster.node_states(1).get("node-5").map(String::as_str) == Some("left")
    });
}
