//! gossipd as a container: the repository's `compose.yaml` runs three agents from the image
//! built `FROM scratch` on a private network; they form one cluster, place a spread
//! application, and ride out one node cut off the network and put back.

use std::process::Command;
use std::time::Duration;

use e2e::docker::{build_images, docker, repo_root, stdout_of};
use e2e::{Cluster, replica_groups, temp_dir, unique_marker, wait_for};

const NODES: usize = 3;

/// A compose project from the repository's `compose.yaml`, torn down (volumes too) on drop.
struct Compose {
    project: String,
    /// The first three octets of the project's private /24.
    net: String,
    /// The credentials, the CLI config, and per-node `address` files, laid out as
    /// `gossipctl up` lays out a local cluster so the harness can talk to each agent.
    cluster: Cluster,
}

impl Compose {
    fn up() -> Self {
        build_images();
        let pid = std::process::id();
        let project = format!("gossipe2e{pid}");
        let net = format!("10.231.{}", pid % 250);
        let cluster = Cluster {
            dir: temp_dir(),
            nodes: NODES,
            env: Vec::new(),
        };
        let addresses: Vec<String> = (1..=NODES).map(|i| format!("{net}.1{i}:7946")).collect();
        let mut init = vec!["cluster", "init", "--dir", cluster.path()];
        for address in &addresses {
            init.extend(["--agent", address]);
        }
        cluster.ctl(&init).ok();
        for (i, address) in addresses.iter().enumerate() {
            let node = format!("node-{}", i + 1);
            cluster
                .ctl(&["cluster", "add-node", &node, "--dir", cluster.path()])
                .ok();
            std::fs::write(cluster.dir.path().join(&node).join("address"), address)
                .expect("write address file");
        }
        let compose = Compose {
            project,
            net,
            cluster,
        };
        compose.run(&["up", "-d"]);
        compose
    }

    /// `docker-compose` for this project, with its credentials and network.
    fn compose(&self) -> Command {
        let mut command = Command::new("docker-compose");
        command
            .args(["--project-name", &self.project, "--file"])
            .arg(repo_root().join("compose.yaml"))
            .env("GOSSIP_CLUSTER_DIR", self.cluster.path())
            .env("GOSSIP_NET", &self.net);
        command
    }

    fn run(&self, args: &[&str]) -> String {
        stdout_of(self.compose().args(args))
    }

    fn container(&self, service: &str) -> String {
        self.run(&["ps", "-q", service]).trim().to_string()
    }

    fn network(&self) -> String {
        format!("{}_edge", self.project)
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let down = ["down", "--volumes", "--timeout", "5"];
        let _ = self.compose().args(down).output();
    }
}

fn sleepers(marker: &str) -> String {
    let (key, value) = marker.split_once('=').unwrap();
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: sleepers
spec:
  components:
    - name: sleeper
      type: process
      properties:
        command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
        env:
          - name: {key}
            value: "{value}"
      traits:
        - type: scaler
          properties:
            replicas: 3
        - type: spread
          properties: {{}}
"#
    )
}

#[test]
fn the_compose_cluster_forms_and_survives_a_node_cut_off_the_network() {
    let compose = Compose::up();
    let cluster = &compose.cluster;
    wait_for(
        "three agents in one cluster",
        Duration::from_secs(60),
        || cluster.all_see_all_alive(),
    );

    let marker = unique_marker();
    let file = cluster.write("sleepers.yaml", &sleepers(&marker));
    cluster.ctl(&["deploy", &file, "--wait"]).ok();
    wait_for("one replica on each node", Duration::from_secs(30), || {
        cluster.running(1, "sleepers").is_some_and(|p| {
            let nodes: std::collections::BTreeSet<&String> = p.values().collect();
            p.len() == 3 && nodes.len() == 3
        })
    });
    // The replicas are real processes inside the agents' containers (the host sees them).
    wait_for("three replica processes", Duration::from_secs(10), || {
        replica_groups(&marker).len() == 3
    });

    let node_3 = compose.container("node-3");
    docker(&["network", "disconnect", &compose.network(), &node_3]);
    wait_for(
        "node-3 to be declared dead",
        Duration::from_secs(30),
        || cluster.sees(1, &[("node-3", "dead")]) && cluster.sees(2, &[("node-3", "dead")]),
    );
    wait_for(
        "its replica to move to the others",
        Duration::from_secs(30),
        || {
            cluster
                .running(1, "sleepers")
                .is_some_and(|p| p.len() == 3 && p.values().all(|n| n != "node-3"))
        },
    );

    let ip = format!("{}.13", compose.net);
    docker(&[
        "network",
        "connect",
        "--ip",
        &ip,
        &compose.network(),
        &node_3,
    ]);
    wait_for("the cluster to heal", Duration::from_secs(60), || {
        cluster.all_see_all_alive()
    });
    wait_for("one copy of each replica", Duration::from_secs(40), || {
        cluster.running(1, "sleepers").is_some_and(|p| p.len() == 3)
            && replica_groups(&marker).len() == 3
    });
    wait_for(
        "every agent to agree on the placement",
        Duration::from_secs(20),
        || {
            let reference = cluster.running(1, "sleepers");
            reference.is_some() && (2..=NODES).all(|i| cluster.running(i, "sleepers") == reference)
        },
    );
}
