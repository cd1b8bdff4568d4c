//! A stolen node is cut off: `gossipctl cluster revoke node-3` makes every agent refuse node-3's
//! certificate in TLS handshakes within seconds, drop its record, show it `revoked` and run its
//! replicas elsewhere; an agent restarted afterwards still refuses it (the revocation is in its
//! store), a node certificate cannot revoke anyone, and `cluster add-node node-3` issues a new
//! certificate with which node-3 joins again. Admins: a second admin from `cluster add-admin`
//! deploys; revoking it keeps what it deployed (or, with `--invalidate`, drops it everywhere),
//! and its key can do nothing more.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agent::api::{ErrorKind, Response};
use agent::client::Client;
use agent::cluster::identity::Credentials;
use agent::trust::revocation::serial_of_pem_file;
use e2e::{Cluster, gossipctl, processes_with_env, unique_marker, wait_for};

fn app(marker: &str) -> String {
    named_app("web", marker)
}

fn named_app(name: &str, marker: &str) -> String {
    let (key, value) = marker.split_once('=').expect("KEY=VALUE");
    format!(
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: worker\n      type: process\n      properties:\n        command: [\"sleep\", \"3600\"]\n        env:\n          - name: {key}\n            value: \"{value}\"\n      traits:\n        - type: scaler\n          properties:\n            replicas: 3\n"
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Whether a client holding `creds` completes a handshake with the agent at `agent`.
fn connects(runtime: &tokio::runtime::Runtime, agent: SocketAddr, creds: &Credentials) -> bool {
    runtime.block_on(async {
        match Client::connect(&[agent], creds).await {
            Ok(client) => {
                let answered = client.request(&agent::api::Request::Ping).await.is_ok();
                client.close().await;
                answered
            }
            Err(_) => false,
        }
    })
}

fn nodes_running(cluster: &Cluster, index: usize) -> Option<BTreeSet<String>> {
    cluster
        .running(index, "web")
        .filter(|placement| placement.len() == 3)
        .map(|placement| placement.into_values().collect())
}

#[test]
fn a_revoked_node_is_refused_everywhere_and_its_replicas_move() {
    let cluster = Cluster::up_joined(3);
    let marker = unique_marker();
    let file = cluster.write("web.yaml", &app(&marker));
    cluster.ctl(&["deploy", &file, "--wait"]).ok();
    wait_for("a replica on node-3", Duration::from_secs(20), || {
        nodes_running(&cluster, 1).is_some_and(|nodes| nodes.contains("node-3"))
    });

    let runtime = runtime();
    let agents: Vec<SocketAddr> = (1..=3)
        .map(|i| cluster.address(i).parse().expect("address"))
        .collect();
    let certs = |name: &str| cluster.dir.path().join(name).join("certs");
    let node_3 = Credentials::load_node(&certs("node-3")).expect("node-3's credentials");
    let node_2 = Credentials::load_node(&certs("node-2")).expect("node-2's credentials");
    assert!(
        connects(&runtime, agents[0], &node_3),
        "before: node-3 connects"
    );

    // A node certificate cannot revoke another node.
    let serial_1 = serial_of_pem_file(&certs("node-1").join("node.crt")).expect("serial");
    let answer = runtime.block_on(async {
        let client = Client::connect(&agents[..1], &node_2)
            .await
            .expect("connect");
        client
            .revoke("node-1", &serial_1, Vec::new())
            .await
            .expect("answered")
    });
    assert!(
        matches!(
            answer,
            Response::Error {
                kind: ErrorKind::Forbidden,
                ..
            }
        ),
        "{answer:?}"
    );

    let old_serial = serial_of_pem_file(&certs("node-3").join("node.crt")).expect("serial");
    let revoked_at = Instant::now();
    let out = cluster
        .ctl(&["cluster", "revoke", "node-3", "--dir", cluster.path()])
        .ok();
    assert!(out.stdout.contains(&old_serial), "{}", out.stdout);

    // Every other agent refuses node-3's certificate within 5 s of the command.
    for (i, agent) in agents.iter().enumerate().take(2) {
        wait_for(
            &format!("agent {} to refuse node-3's handshake", i + 1),
            Duration::from_secs(5).saturating_sub(revoked_at.elapsed()),
            || !connects(&runtime, *agent, &node_3),
        );
    }
    println!(
        "node-3 refused by node-1 and node-2 {:.2} s after the revoke command",
        revoked_at.elapsed().as_secs_f64()
    );
    assert!(
        connects(&runtime, agents[1], &node_2),
        "node-2's own certificate still works"
    );
    for i in 1..=2 {
        wait_for(
            &format!("agent {i} to show node-3 revoked"),
            Duration::from_secs(10),
            || cluster.sees(i, &[("node-3", "revoked"), ("node-1", "alive")]),
        );
        wait_for(
            &format!("agent {i} to run every replica on node-1 and node-2"),
            Duration::from_secs(30),
            || nodes_running(&cluster, i).is_some_and(|nodes| !nodes.contains("node-3")),
        );
    }

    // The revocation survives a restart: node-1 comes back refusing node-3. `up` restarts it
    // and says why node-3 (still running, revoked) will not join.
    cluster.kill_agent(1);
    let up = cluster.ctl(&["up", "--nodes", "3", "--dir", cluster.path()]);
    assert_eq!(up.code, 1, "{up:?}");
    assert!(
        up.stderr.contains("node-3's certificate is revoked"),
        "{}",
        up.stderr
    );
    wait_for("node-1 to answer again", Duration::from_secs(20), || {
        cluster.sees(1, &[("node-1", "alive"), ("node-3", "revoked")])
    });
    assert!(
        !connects(&runtime, agents[0], &node_3),
        "node-1 accepted node-3 after a restart"
    );

    // A new certificate for node-3 brings it back; this one expires in 20 days, so its agent
    // warns, and `get nodes` shows every node's certificate expiry.
    cluster
        .ctl(&[
            "cluster",
            "add-node",
            "node-3",
            "--dir",
            cluster.path(),
            "--valid-for",
            "20days",
        ])
        .ok();
    let new_serial = serial_of_pem_file(&certs("node-3").join("node.crt")).expect("serial");
    assert_ne!(
        new_serial, old_serial,
        "a fresh certificate has a new serial"
    );
    cluster.kill_agent(3);
    cluster.up_again();
    wait_for(
        "every agent to see node-3 alive again",
        Duration::from_secs(30),
        || cluster.all_see_all_alive(),
    );
    let log = std::fs::read_to_string(cluster.dir.path().join("node-3").join("gossipd.log"))
        .expect("node-3's log");
    assert!(
        log.contains("this node's certificate expires in 19 days")
            || log.contains("this node's certificate expires in 20 days"),
        "no expiry warning in node-3's log"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let days_left = |name: &str| {
        let nodes = cluster.ctl(&["get", "nodes", "-o", "json"]).ok().json();
        let node = nodes
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["name"] == name)
            .cloned()
            .expect("listed");
        (node["certificate_expires"].as_i64().expect("an expiry") - now) / (24 * 3600)
    };
    assert!(
        (19..=20).contains(&days_left("node-3")),
        "{}",
        days_left("node-3")
    );
    assert!(
        (364..=365).contains(&days_left("node-1")),
        "{}",
        days_left("node-1")
    );
    let wide = cluster.ctl(&["get", "nodes", "-o", "wide"]).ok();
    assert!(
        wide.stdout.contains("CERTIFICATE EXPIRES"),
        "{}",
        wide.stdout
    );
}

/// `get apps -o json` names at agent `index`.
fn app_names(cluster: &Cluster, index: usize) -> BTreeSet<String> {
    let run = cluster.ctl_at(index, &["get", "apps", "-o", "json"]);
    if run.code != 0 {
        return BTreeSet::new();
    }
    run.json()
        .as_array()
        .expect("apps")
        .iter()
        .filter_map(|a| a["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_revoked_admin_keeps_or_loses_what_it_deployed_and_can_do_nothing_more() {
    let cluster = Cluster::up_joined(2);
    let admin_config = |name: &str| cluster.dir.path().join(name).join("config.yaml");
    for name in ["ops", "ops2"] {
        cluster
            .ctl(&["cluster", "add-admin", name, "--dir", cluster.path()])
            .ok();
    }
    let (kept, voided) = (unique_marker(), unique_marker());
    let kept_file = cluster.write("kept.yaml", &named_app("kept", &kept));
    let voided_file = cluster.write("voided.yaml", &named_app("voided", &voided));
    gossipctl(&["deploy", &kept_file, "--wait"], &admin_config("ops")).ok();
    gossipctl(&["deploy", &voided_file, "--wait"], &admin_config("ops2")).ok();
    assert_eq!(processes_with_env(&kept).len(), 3);
    assert_eq!(processes_with_env(&voided).len(), 3);

    // Revoking ops keeps its application: it runs on, everywhere.
    let out = cluster
        .ctl(&["cluster", "revoke", "ops", "--dir", cluster.path()])
        .ok();
    assert!(
        out.stdout.contains("kept the applications"),
        "{}",
        out.stdout
    );
    // ops' key is refused from now on, for anything.
    wait_for("ops to be refused", Duration::from_secs(5), || {
        gossipctl(&["get", "apps"], &admin_config("ops")).code != 0
    });
    let late = cluster.write("late.yaml", &named_app("late", &unique_marker()));
    assert_ne!(
        gossipctl(&["deploy", &late], &admin_config("ops")).code,
        0,
        "a revoked admin deployed"
    );

    // Revoking ops2 with --invalidate drops what it deployed, on every agent.
    let out = cluster
        .ctl(&[
            "cluster",
            "revoke",
            "ops2",
            "--dir",
            cluster.path(),
            "--invalidate",
        ])
        .ok();
    assert!(
        out.stdout.contains("dropped the applications"),
        "{}",
        out.stdout
    );
    for i in 1..=2 {
        wait_for(
            &format!("agent {i} to drop the invalidated application"),
            Duration::from_secs(10),
            || {
                let names = app_names(&cluster, i);
                names.contains("kept") && !names.contains("voided")
            },
        );
    }
    wait_for(
        "the invalidated application's processes to stop",
        Duration::from_secs(20),
        || processes_with_env(&voided).is_empty(),
    );
    assert_eq!(
        processes_with_env(&kept).len(),
        3,
        "the kept application stopped"
    );
}
