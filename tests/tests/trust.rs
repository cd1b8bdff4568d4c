//! A stolen node key cannot write applications: a small adversarial client speaks the agents'
//! own replication protocol with a real node certificate of the cluster and pushes forged,
//! altered, replayed and node-signed application writes to every agent. Every agent keeps the
//! admin's versions, nothing the adversary wrote runs anywhere, a node record and a replica's
//! status it wrote for another node are refused, and every agent logs what it dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent::api::{Request, Response, WorkloadState};
use agent::client::Client;
use agent::cluster::identity::Credentials;
use agent::cluster::replication::{NodeRecord, StateDigest, Updates, WorkloadRecord};
use agent::store::StoredApp;
use agent::trust::authority::encode;
use agent::trust::seal::Sealer;
use agent::trust::statement::{Map, statement};
use e2e::{Cluster, processes_with_env, unique_marker};
use orchestrator::state::{Entry, Timestamp};

fn app(name: &str, marker: &str, replicas: u32) -> String {
    let (key, value) = marker.split_once('=').expect("KEY=VALUE");
    format!(
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: worker\n      type: process\n      properties:\n        command: [\"sleep\", \"3600\"]\n        env:\n          - name: {key}\n            value: \"{value}\"\n      traits:\n        - type: scaler\n          properties:\n            replicas: {replicas}\n"
    )
}

fn stored(name: &str, marker: &str, generation: u64) -> StoredApp {
    let app = orchestrator::parse_application(&app(name, marker, 3), "forged.yaml")
        .expect("the forged application is valid OAM");
    StoredApp {
        generation,
        ..StoredApp::first(app, 0)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

fn version(wall_ms: u64) -> Timestamp {
    Timestamp {
        wall_ms,
        logical: 0,
        node: "node-3".into(),
    }
}

/// `get apps -o json` at agent `index`: name -> generation.
fn apps_at(cluster: &Cluster, index: usize) -> BTreeMap<String, u64> {
    let run = cluster.ctl_at(index, &["get", "apps", "-o", "json"]).ok();
    run.json()
        .as_array()
        .expect("apps array")
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or_default().to_string(),
                a["generation"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

/// Everything `agent` holds, as any member can read it: an anti-entropy answer to an empty
/// digest.
async fn everything(agent: SocketAddr, creds: &Credentials) -> Updates {
    let client = Client::connect(&[agent], creds)
        .await
        .expect("a node certificate connects");
    let request = Request::SyncDigest {
        digest: StateDigest::default(),
    };
    match client.request(&request).await.expect("sync digest") {
        Response::SyncReply { updates, .. } => updates,
        other => panic!("unexpected answer {other:?}"),
    }
}

#[test]
fn a_stolen_node_key_cannot_create_alter_replay_or_delete_applications() {
    let cluster = Cluster::up_joined(3);
    let marker = unique_marker();
    let evil = unique_marker();
    let web_v1 = cluster.write("web-v1.yaml", &app("web", &marker, 1));
    cluster.ctl(&["deploy", &web_v1, "--wait"]).ok();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let node_dir = cluster.dir.path().join("node-3").join("certs");
    let stolen = Credentials::load_node(&node_dir).expect("node-3's credentials");
    let agents: Vec<SocketAddr> = (1..=3)
        .map(|i| cluster.address(i).parse().expect("address"))
        .collect();

    // The adversary reads the admin's sealed generation 1, and node-2's record, as any member
    // can.
    let held = runtime.block_on(everything(agents[0], &stolen));
    let sealed_v1: Entry<StoredApp> = held
        .apps
        .into_iter()
        .find(|(name, _)| name == "web")
        .map(|(_, entry)| entry)
        .expect("web is replicated");
    let node_2: Entry<NodeRecord> = held
        .nodes
        .into_iter()
        .find(|(name, _)| name == "node-2")
        .map(|(_, entry)| entry)
        .expect("node-2's record is replicated");
    assert!(sealed_v1.seal.is_some(), "the admin's write is sealed");

    let web_v2 = cluster.write("web-v2.yaml", &app("web", &marker, 2));
    cluster.ctl(&["deploy", &web_v2, "--wait"]).ok();

    // The status of a replica another node runs, as node-1 holds it.
    let (status_key, status): (String, Entry<WorkloadRecord>) = runtime
        .block_on(everything(agents[0], &stolen))
        .workloads
        .into_iter()
        .find(|(key, entry)| !key.ends_with("@node-3") && entry.value.is_some())
        .expect("a replica runs on node-1 or node-2");

    let now = now_ms();
    let node_sealer = Sealer::new(&stolen).expect("a node key signs");
    let node_sealed = {
        let value = stored("evil-signed", &evil, 1);
        let signed =
            statement(Map::Apps, "evil-signed", &version(now), Some(&value)).expect("statement");
        Entry::live(value, version(now)).sealed(encode(&node_sealer.seal(&signed).unwrap()))
    };
    let mut altered = sealed_v1.clone();
    altered.value = Some(stored("web", &evil, 9));
    altered.version = version(now + 1);
    let mut tampered = sealed_v1.clone();
    tampered.version = version(now + 2);
    if let Some(seal) = tampered.seal.as_mut() {
        let last = seal.len() - 1;
        seal[last] ^= 0x01;
    }
    // node-2's record with a label added, its own seal kept; and one sealed by node-3.
    let mut relabelled = node_2.clone();
    relabelled.version = version(now + 4);
    if let Some(record) = relabelled.value.as_mut() {
        record.info.labels.insert("forged".into(), "yes".into());
    }
    let spoken_for = {
        let record = relabelled.value.clone().expect("a live record");
        let signed =
            statement(Map::Nodes, "node-2", &version(now + 5), Some(&record)).expect("statement");
        Entry::live(record, version(now + 5)).sealed(encode(&node_sealer.seal(&signed).unwrap()))
    };
    // That replica reported failed with 99 restarts: sealed by node-3, and unsealed.
    let failed = {
        let mut record = status.value.clone().expect("a live status");
        record.state = WorkloadState::Failed;
        record.restarts = 99;
        record
    };
    let status_for_another = {
        let signed = statement(
            Map::Workloads,
            &status_key,
            &version(now + 6),
            Some(&failed),
        )
        .expect("statement");
        Entry::live(failed.clone(), version(now + 6))
            .sealed(encode(&node_sealer.seal(&signed).unwrap()))
    };
    let status_unsealed = Entry::live(failed, version(now + 7));
    let forged = Updates {
        apps: vec![
            // A new application, unsealed.
            (
                "evil".to_string(),
                Entry::live(stored("evil", &evil, 1), version(now)),
            ),
            // One sealed with the stolen node key.
            ("evil-signed".to_string(), node_sealed),
            // The deployed one with other content at a newer version, the admin's seal kept.
            ("web".to_string(), altered),
            // The admin's generation 1 at a newer version, its signature's last byte flipped.
            ("web".to_string(), tampered),
            // The admin's own generation 1, replayed as it was.
            ("web".to_string(), sealed_v1),
            // A deletion.
            ("web".to_string(), Entry::tombstone(version(now + 3))),
        ],
        nodes: vec![
            ("node-2".to_string(), relabelled),
            ("node-2".to_string(), spoken_for),
        ],
        workloads: vec![
            (status_key.clone(), status_for_another),
            (status_key.clone(), status_unsealed),
        ],
        ..Updates::default()
    };
    runtime.block_on(async {
        for agent in &agents {
            let client = Client::connect(std::slice::from_ref(agent), &stolen)
                .await
                .expect("connect");
            let answer = client
                .request(&Request::Push {
                    updates: forged.clone(),
                })
                .await
                .expect("the push is answered");
            assert!(matches!(answer, Response::Pushed { .. }), "{answer:?}");
        }
    });

    // Rumours and anti-entropy rounds run meanwhile; nothing may spread or start.
    std::thread::sleep(Duration::from_secs(6));
    for i in 1..=3 {
        let apps = apps_at(&cluster, i);
        assert_eq!(
            apps,
            BTreeMap::from([("web".to_string(), 2)]),
            "agent {i} holds what the adversary wrote"
        );
    }
    for i in 1..=3 {
        let nodes = cluster
            .ctl_at(i, &["get", "nodes", "-o", "json"])
            .ok()
            .json();
        let node_2 = nodes
            .as_array()
            .expect("nodes array")
            .iter()
            .find(|n| n["name"] == "node-2")
            .cloned()
            .expect("node-2 is listed");
        assert!(
            node_2["labels"].get("forged").is_none(),
            "agent {i} took node-3's word for node-2's record: {node_2}"
        );
    }
    for i in 1..=3 {
        let workloads = cluster
            .ctl_at(i, &["get", "workloads", "-o", "json"])
            .ok()
            .json();
        let forged: Vec<_> = workloads
            .as_array()
            .expect("workloads array")
            .iter()
            .filter(|w| w["restarts"] == 99 || w["state"] == "failed")
            .collect();
        assert!(
            forged.is_empty(),
            "agent {i} took node-3's word for {status_key}: {forged:?}"
        );
    }
    assert!(
        processes_with_env(&evil).is_empty(),
        "a process the adversary defined runs"
    );
    assert_eq!(
        processes_with_env(&marker).len(),
        2,
        "the admin's web runs its two replicas"
    );
    for i in 1..=3 {
        let log = std::fs::read_to_string(
            cluster
                .dir
                .path()
                .join(format!("node-{i}"))
                .join("gossipd.log"),
        )
        .expect("agent log");
        let dropped = log
            .lines()
            .filter(|l| l.contains("dropped an application write"))
            .count();
        assert!(
            dropped >= 5,
            "agent {i} logged {dropped} dropped application writes, expected the five forged ones"
        );
        let records = log
            .lines()
            .filter(|l| l.contains("dropped a node record"))
            .count();
        assert!(
            records >= 2,
            "agent {i} logged {records} dropped node records, expected the two forged ones"
        );
        let statuses = log
            .lines()
            .filter(|l| l.contains("dropped a workload status"))
            .count();
        assert!(
            statuses >= 2,
            "agent {i} logged {statuses} dropped workload status, expected the two forged ones"
        );
    }
}
