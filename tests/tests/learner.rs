//! The learner workload across real agents: replicas in their own processes, exchanging models
//! through the agents' mutual-TLS QUIC connections, surviving the loss of a node and the crash
//! of a learner process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent::api::{ErrorKind, Request, Response};
use agent::client::Client;
use agent::cluster::identity::Credentials;
use e2e::{Cluster, gossipctl, wait_for};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../learner/tests/fixtures/fashion-mnist-small")
}

fn app(epochs: u32) -> String {
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: fmnist
spec:
  components:
    - name: learner
      type: learner
      properties:
        dataset: {dataset}
        model: mlp
        aggregation: delta-sum
        epochs: {epochs}
        window: 5
        batchSize: 32
        peers: 2
        seed: 3
      traits:
        - type: scaler
          properties: {{replicas: 4}}
        - type: spread
          properties: {{}}
    - name: sidecar
      type: process
      properties:
        command: ["sleep", "600"]
"#,
        dataset = fixture().display()
    )
}

fn learners(cluster: &Cluster, agent: usize) -> Vec<Value> {
    cluster
        .workloads_at(agent)
        .into_iter()
        .filter(|w| w["component"] == "learner")
        .collect()
}

fn epoch(workload: &Value) -> u64 {
    workload["learner"]["epoch"].as_u64().unwrap_or(0)
}

fn agent_index(node: &str) -> usize {
    node.strip_prefix("node-")
        .and_then(|n| n.parse().ok())
        .expect("local cluster node names are node-K")
}

#[test]
fn replicas_learn_together_and_a_moved_replica_resumes_from_its_checkpoint() {
    let cluster = Cluster::up_joined(4);
    cluster
        .ctl(&["deploy", &cluster.write("app.yaml", &app(400))])
        .ok();

    // Let every replica make real progress, then kill the agent running replica 1.
    wait_for(
        "every replica past epoch 20",
        Duration::from_secs(120),
        || {
            let replicas = learners(&cluster, 1);
            replicas.len() == 4 && replicas.iter().all(|w| epoch(w) >= 20)
        },
    );
    let before = learners(&cluster, 1);
    let victim = before
        .iter()
        .find(|w| w["replica"] == 1)
        .expect("replica 1")
        .clone();
    let victim_node = victim["node"].as_str().unwrap().to_string();
    let victim_agent = agent_index(&victim_node);
    cluster.kill_agent(victim_agent);
    let observer = if victim_agent == 1 { 2 } else { 1 };

    wait_for(
        "replica 1 running on a survivor",
        Duration::from_secs(60),
        || {
            learners(&cluster, observer).iter().any(|w| {
                w["replica"] == 1
                    && w["node"] != victim_node.as_str()
                    && matches!(w["state"].as_str(), Some("running" | "succeeded"))
            })
        },
    );
    // A learner process that crashes restarts on its node from its local checkpoint, Adam
    // state included.
    let survivor = learners(&cluster, observer)
        .into_iter()
        .find(|w| w["replica"] == 0)
        .expect("replica 0");
    assert_eq!(
        survivor["state"], "running",
        "replica 0 finished before the crash test: raise the epochs"
    );
    let pid = survivor["pid"]
        .as_i64()
        .expect("a running learner has a pid") as i32;
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill the learner process");
    wait_for(
        "replica 0 to restart from its checkpoint",
        Duration::from_secs(60),
        || {
            cluster
                .ctl_at(observer, &["logs", "fmnist/learner/0", "--tail", "2000"])
                .stdout
                .contains("resumed from the local checkpoint at epoch")
        },
    );
    wait_for("every replica to finish", Duration::from_secs(300), || {
        let replicas = learners(&cluster, observer);
        replicas.len() == 4 && replicas.iter().all(|w| w["state"] == "succeeded")
    });

    let finals = learners(&cluster, observer);
    for replica in &finals {
        let accuracy = replica["learner"]["test_accuracy"].as_f64().unwrap();
        assert!(
            accuracy > 0.5,
            "{} ended at {accuracy}, barely above chance (0.1)",
            replica["id"]
        );
        assert_eq!(epoch(replica), 400, "{replica}");
        assert!(replica["learner"]["final_model"].is_string(), "{replica}");
    }
    let moved = finals.iter().find(|w| w["replica"] == 1).unwrap();
    let resumed = moved["learner"]["resumed_from"].as_u64().unwrap_or(0);
    assert!(
        resumed >= 10,
        "the moved replica started over instead of resuming: {moved}"
    );

    // Each replica merged models from its peers, and only from them (no relay): with four
    // replicas and `peers: 2`, replica i's peers are its ring neighbours i - 1 and i + 1, so
    // the replica across the ring is never in its window.
    let logs = cluster
        .ctl_at(observer, &["logs", "fmnist/learner", "--tail", "4000"])
        .ok()
        .stdout;
    let list = |line: &str, after: &str| -> Vec<u32> {
        let Some((_, rest)) = line.split_once(after) else {
            return Vec::new();
        };
        let inside = rest.split(']').next().unwrap_or("");
        inside
            .split([',', ' '])
            .filter_map(|n| n.trim().parse().ok())
            .collect()
    };
    for me in 0..4u32 {
        let aggregations: Vec<&str> = logs
            .lines()
            .filter(|line| line.contains(&format!("fmnist/learner/{me}")))
            .filter(|line| line.contains("from replicas ["))
            .collect();
        assert!(
            !aggregations.is_empty(),
            "replica {me} never aggregated:\n{logs}"
        );
        let mut heard_a_peer = false;
        for line in &aggregations {
            let senders = list(line, "from replicas [");
            let peers = list(line, "peers [");
            let across = (me + 2) % 4;
            assert!(
                !senders.contains(&across),
                "replica {me} took in replica {across}, which is not its peer: {line}"
            );
            for sender in &senders {
                assert!(
                    *sender == me || peers.contains(sender),
                    "replica {me}'s window holds {sender}, not among its peers: {line}"
                );
            }
            heard_a_peer |= senders.iter().any(|s| *s != me);
        }
        assert!(
            heard_a_peer,
            "replica {me} never merged a peer's model:\n{logs}"
        );
    }
    assert!(
        logs.contains("resumed at epoch"),
        "the moved replica's log does not say it resumed:\n{logs}"
    );

    // `describe app` sums the learners up and says where the final models are.
    let described = cluster
        .ctl_at(observer, &["describe", "app", "fmnist"])
        .ok();
    assert!(
        described.stdout.contains("final model of learner"),
        "{}",
        described.stdout
    );
}

fn agent_address(cluster: &Cluster) -> SocketAddr {
    cluster.address(1).parse().expect("agent address")
}

#[test]
fn learner_calls_need_a_cluster_node_certificate() {
    let cluster = Cluster::up(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let call = Request::LearnerCall {
        workload: "fmnist/learner/0".into(),
        from: 99,
    };

    // A client of another cluster does not get through the handshake.
    let foreign = tempfile::tempdir().unwrap();
    gossipctl(
        &["cluster", "init", "--dir", foreign.path().to_str().unwrap()],
        Path::new("/nonexistent"),
    )
    .ok();
    let outsider = Credentials::load(
        &cluster.dir.path().join("ca.crt"),
        &foreign.path().join("admin.crt"),
        &foreign.path().join("admin.key"),
    )
    .unwrap();
    let refused = runtime.block_on(Client::connect(&[agent_address(&cluster)], &outsider));
    assert!(refused.is_err(), "a foreign certificate connected");

    // The cluster's own admin may operate the cluster, but is not a node: no model calls.
    let admin = Credentials::load(
        &cluster.dir.path().join("ca.crt"),
        &cluster.dir.path().join("admin.crt"),
        &cluster.dir.path().join("admin.key"),
    )
    .unwrap();
    let response = runtime.block_on(async {
        let client = Client::connect(&[agent_address(&cluster)], &admin)
            .await
            .unwrap();
        client.request(&call).await.unwrap()
    });
    // Refused for who is asking, not because the workload is unknown.
    assert!(
        matches!(
            &response,
            Response::Error {
                kind: ErrorKind::Forbidden,
                message,
            } if message.contains("only cluster nodes may")
        ),
        "{response:?}"
    );
}

/// The shipped example on a node without the data set: its replicas fail and say, in
/// `get workloads`, which Debian package brings the data, and keep retrying with back-off so
/// that installing it is enough.
#[test]
fn the_example_without_the_dataset_names_the_package_in_its_status() {
    let empty = e2e::temp_dir();
    let cluster = Cluster::up_with_env(1, &[("GOSSIP_DATA", empty.path().to_str().unwrap())]);
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/fashion-mnist-delta-sum.yaml");
    cluster.ctl(&["deploy", example.to_str().unwrap()]).ok();
    // Each replica crash-loops with back-off; between attempts its status names the package.
    // Under load a replica may be caught mid-attempt, so each is watched until it has said so.
    let mut named: std::collections::BTreeMap<u64, String> = Default::default();
    wait_for(
        "every learner replica to report the missing data set",
        Duration::from_secs(120),
        || {
            for w in learners(&cluster, 1) {
                let message = w["message"].as_str().unwrap_or("");
                if message.contains("apt-get install dataset-fashion-mnist") {
                    named.insert(w["replica"].as_u64().unwrap(), message.to_string());
                }
            }
            named.len() == 3
        },
    );
    for message in named.values() {
        assert!(message.contains("exited with status"), "{message}");
    }
    // The process component of the same application is not held back by the learner.
    let dashboard = cluster
        .workloads_at(1)
        .into_iter()
        .find(|w| w["component"] == "dashboard")
        .expect("the dashboard replica");
    assert_eq!(dashboard["state"], "running", "{dashboard}");
}
