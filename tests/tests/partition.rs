//! A network partition between real agents (nftables drops their UDP traffic on loopback):
//! both sides keep serving, and after healing the views and the placement converge.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e::{Cluster, replica_groups, unique_marker, wait_for};

/// Drops UDP between two groups of agent ports for as long as it lives.
struct Partition {
    table: String,
}

impl Partition {
    fn new(side_a: &[u16], side_b: &[u16]) -> Self {
        let table = format!("gossipctl_partition_{}", std::process::id());
        let set = |ports: &[u16]| {
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (a, b) = (set(side_a), set(side_b));
        let script = format!(
            "table inet {table} {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n    udp sport {{ {a} }} udp dport {{ {b} }} drop\n    udp sport {{ {b} }} udp dport {{ {a} }} drop\n  }}\n}}\n"
        );
        let mut nft = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("nft (Debian package nftables) is needed, as root, for the partition test");
        nft.stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(
            nft.wait().unwrap().success(),
            "nft refused the partition rules"
        );
        Partition { table }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .status();
    }
}

fn app(name: &str, marker: &str, replicas: u32) -> String {
    versioned_app(name, marker, replicas, "1")
}

/// The same application with a `VERSION` variable: each value is a different definition.
fn versioned_app(name: &str, marker: &str, replicas: u32, version: &str) -> String {
    let (key, value) = marker.split_once('=').unwrap();
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {name}
spec:
  components:
    - name: server
      type: process
      properties:
        command: ["sleep", "3600"]
        env:
          - name: {key}
            value: "{value}"
          - name: VERSION
            value: "{version}"
      traits:
        - type: scaler
          properties:
            replicas: {replicas}
        - type: spread
          properties: {{}}
"#
    )
}

fn port(cluster: &Cluster, index: usize) -> u16 {
    cluster
        .address(index)
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn both_sides_of_a_partition_serve_and_converge_after_healing() {
    let cluster = Cluster::up_joined(5);
    let marker = unique_marker();
    cluster
        .ctl_at(
            1,
            &[
                "deploy",
                &cluster.write("web.yaml", &app("web", &marker, 5)),
                "--wait",
            ],
        )
        .ok();

    let side_a: Vec<u16> = [1, 2].map(|i| port(&cluster, i)).to_vec();
    let side_b: Vec<u16> = [3, 4, 5].map(|i| port(&cluster, i)).to_vec();
    let partition = Partition::new(&side_a, &side_b);

    wait_for(
        "each side to declare the other dead",
        Duration::from_secs(30),
        || {
            cluster.sees(
                1,
                &[("node-3", "dead"), ("node-4", "dead"), ("node-5", "dead")],
            ) && cluster.sees(3, &[("node-1", "dead"), ("node-2", "dead")])
        },
    );
    // Availability first: each side runs every replica on its own nodes.
    wait_for(
        "side A to run all replicas",
        Duration::from_secs(20),
        || {
            cluster
                .running(1, "web")
                .is_some_and(|p| p.len() == 5 && p.values().all(|n| n == "node-1" || n == "node-2"))
        },
    );
    wait_for(
        "side B to run all replicas",
        Duration::from_secs(20),
        || {
            cluster.running(3, "web").is_some_and(|p| {
                p.len() == 5 && p.values().all(|n| !(n == "node-1" || n == "node-2"))
            })
        },
    );
    // And each side accepts deploys.
    let other = unique_marker();
    cluster
        .ctl_at(
            4,
            &[
                "deploy",
                &cluster.write("side-b.yaml", &app("side-b", &other, 2)),
                "--wait",
            ],
        )
        .ok();

    // Both sides accept a different new version of the same application.
    cluster
        .ctl_at(
            1,
            &[
                "deploy",
                &cluster.write("web-a.yaml", &versioned_app("web", &marker, 5, "a")),
            ],
        )
        .ok();
    cluster
        .ctl_at(
            3,
            &[
                "deploy",
                &cluster.write("web-b.yaml", &versioned_app("web", &marker, 5, "b")),
            ],
        )
        .ok();

    drop(partition);
    wait_for(
        "views to converge after healing",
        Duration::from_secs(40),
        || cluster.all_see_all_alive(),
    );
    wait_for("one copy of each replica", Duration::from_secs(30), || {
        cluster.running(1, "web").is_some_and(|p| p.len() == 5)
            && replica_groups(&marker).len() == 5
            && cluster.running(1, "side-b").is_some_and(|p| p.len() == 2)
            && replica_groups(&other).len() == 2
    });
    // Compare against agent 1's current view on every poll: a status update still in flight
    // can change agent 1's view after the wait above, and the others then follow it.
    wait_for(
        "every agent to agree on the placement",
        Duration::from_secs(15),
        || {
            let reference = cluster.running(1, "web");
            reference.is_some() && (2..=5).all(|i| cluster.running(i, "web") == reference)
        },
    );
    // One of the two concurrent versions won everywhere, and only it runs.
    let generation = |i: usize| {
        let apps = cluster
            .ctl_at(i, &["get", "apps", "-o", "json"])
            .ok()
            .json();
        apps.as_array()
            .and_then(|apps| apps.iter().find(|a| a["name"] == "web").cloned())
            .map(|web| web["generation"].clone())
    };
    let first = generation(1);
    assert!((2..=5).all(|i| generation(i) == first));
    wait_for(
        "every replica to run the winning version",
        Duration::from_secs(20),
        || {
            let versions: std::collections::BTreeSet<String> = e2e::processes_with_env(&marker)
                .iter()
                .filter_map(|(pid, _)| version_of(*pid))
                .collect();
            versions.len() == 1 && replica_groups(&marker).len() == 5
        },
    );
}

fn version_of(pid: u32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ
        .split(|&b| b == 0)
        .find_map(|e| e.strip_prefix(b"VERSION="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
