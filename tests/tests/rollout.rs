//! Rolling updates end to end: real agents replace a 4-replica HTTP service (busybox httpd
//! processes) one replica at a time while a client in the test requests it continuously,
//! choosing among the replicas the cluster reports ready, as a load balancer would. An update
//! that never becomes ready is rolled back at its progress deadline; `rollout undo` returns
//! to an earlier generation; events tell the story.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e::service::{self, Client};
use e2e::{Cluster, wait_for};

const REPLICAS: u16 = 4;

/// `REPLICAS` free consecutive ports: replica `i` of the service listens on `base + i`.
fn free_ports() -> u16 {
    for _ in 0..100 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = listener.local_addr().unwrap().port();
        drop(listener);
        if base > u16::MAX - REPLICAS {
            continue;
        }
        let free =
            (0..REPLICAS).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no {REPLICAS} consecutive free ports");
}

/// The service serving `DIR/VERSION` (v3 has no index.html, so it never becomes ready).
fn app(dir: &str, base: u16, version: &str, deadline: u32) -> String {
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: rolling
spec:
  components:
    - name: web
      type: process
      properties:
        command: ["sh", "-c", "exec busybox httpd -f -p 127.0.0.1:$(({base} + GOSSIP_REPLICA)) -h {dir}/{version}"]
        readinessProbe:
          exec:
            command: ["sh", "-c", "busybox wget -q -O /dev/null http://127.0.0.1:$(({base} + GOSSIP_REPLICA))/index.html"]
          periodSeconds: 1
      traits:
        - type: scaler
          properties: {{replicas: {REPLICAS}}}
        - type: rollout
          properties:
            maxUnavailable: 1
            progressDeadlineSeconds: {deadline}
"#
    )
}

/// Where replica `i` serves: `base + i` on loopback.
fn replica_address(base: u16) -> impl Fn(&serde_json::Value) -> Option<SocketAddr> {
    move |w| {
        let replica = u16::try_from(w["replica"].as_u64()?).ok()?;
        Some(SocketAddr::from(([127, 0, 0, 1], base + replica)))
    }
}

fn get(port: u16) -> Result<String, String> {
    service::get(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Every replica answers with `version`.
fn all_serve(base: u16, version: &str) -> bool {
    (0..REPLICAS).all(|i| get(base + i).is_ok_and(|body| body == version))
}

fn events(cluster: &Cluster) -> Vec<serde_json::Value> {
    cluster
        .ctl(&["get", "events", "--app", "rolling", "-o", "json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .clone()
}

fn index_of(
    events: &[serde_json::Value],
    reason: &str,
    object: &str,
    after: usize,
) -> Option<usize> {
    events
        .iter()
        .enumerate()
        .skip(after)
        .find(|(_, e)| e["reason"] == reason && e["object"] == object)
        .map(|(i, _)| i)
}

#[test]
fn rolling_update_rollback_and_undo_keep_serving() {
    let cluster = Cluster::up_joined(3);
    let dir = cluster.dir.path().join("site");
    for version in ["v1", "v2"] {
        std::fs::create_dir_all(dir.join(version)).unwrap();
        std::fs::write(dir.join(version).join("index.html"), version).unwrap();
    }
    std::fs::create_dir_all(dir.join("v3")).unwrap();
    let dir = dir.to_str().unwrap().to_string();
    let base = free_ports();
    let deploy = |version: &str, deadline: u32| {
        let file = cluster.write(
            &format!("{version}.yaml"),
            &app(&dir, base, version, deadline),
        );
        cluster.ctl(&["deploy", &file, "--wait", "--timeout", "90s"])
    };
    deploy("v1", 60).ok();
    wait_for("every replica to serve v1", Duration::from_secs(10), || {
        all_serve(base, "v1")
    });

    // The update: one replica at a time, and no request fails.
    let client = Client::start(cluster.config(), "rolling", replica_address(base));
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    deploy("v2", 60).ok();
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let seen = client.finish();
    assert!(
        all_serve(base, "v2"),
        "every replica serves v2 once deploy --wait returns"
    );
    assert!(
        seen.failed.is_empty(),
        "failed requests during the update: {:?}",
        seen.failed
    );
    assert!(
        seen.served.len() > 50,
        "the client kept requesting: {}",
        seen.served.len()
    );
    assert!(seen.served.iter().any(|b| b == "v1") && seen.served.iter().any(|b| b == "v2"));
    assert!(
        seen.fewest_ready
            .is_some_and(|f| f >= usize::from(REPLICAS) - 1),
        "never more than maxUnavailable (1) replica below the desired ready ones: {:?}",
        seen.fewest_ready
    );
    eprintln!(
        "rolled out 4 replicas in {took:?}, {} requests",
        seen.served.len()
    );

    // Events tell it in order: each replica is replaced, starts and becomes ready, then the
    // rollout completes.
    let story = events(&cluster);
    let begin = story
        .iter()
        .position(|e| e["reason"] == "Replacing")
        .expect("a Replacing event");
    let mut last_ready = begin;
    for replica in 0..REPLICAS {
        let object = format!("rolling/web/{replica}");
        let replacing = index_of(&story, "Replacing", &object, begin)
            .unwrap_or_else(|| panic!("{object} replaced: {story:#?}"));
        let started = index_of(&story, "Started", &object, replacing)
            .unwrap_or_else(|| panic!("{object} started after its replacement: {story:#?}"));
        let ready = index_of(&story, "Ready", &object, started)
            .unwrap_or_else(|| panic!("{object} ready after it started: {story:#?}"));
        last_ready = last_ready.max(ready);
    }
    let complete = story
        .iter()
        .rposition(|e| e["reason"] == "RolloutComplete" && e["object"] == "rolling/web")
        .expect("the rollout completes");
    assert!(
        complete > last_ready,
        "complete after every replica is ready: {story:#?}"
    );

    // An update that never becomes ready: rolled back at its deadline, v2 never stops serving.
    let client = Client::start(cluster.config(), "rolling", replica_address(base));
    let failed = deploy("v3", 8);
    let seen = client.finish();
    assert_eq!(
        failed.code, 1,
        "deploy --wait fails on a rollback: {failed:?}"
    );
    assert!(failed.stderr.contains("rolled back"), "{}", failed.stderr);
    assert!(
        seen.failed.is_empty(),
        "failed requests during the failed update: {:?}",
        seen.failed
    );
    assert!(seen.served.iter().all(|b| b == "v2"), "only v2 ever served");
    assert!(
        seen.fewest_ready
            .is_some_and(|f| f >= usize::from(REPLICAS) - 1)
    );
    wait_for(
        "every replica to serve v2 again",
        Duration::from_secs(20),
        || all_serve(base, "v2"),
    );
    let detail = cluster
        .ctl(&["describe", "app", "rolling", "-o", "json"])
        .ok()
        .json();
    assert_eq!(detail["summary"]["status"], "rolled-back", "{detail:#}");
    assert_eq!(detail["components"][0]["rollout"]["state"], "rolled-back");
    let status = cluster.ctl(&["rollout", "status", "rolling"]);
    assert_eq!(status.code, 1, "{status:?}");
    assert!(
        events(&cluster)
            .iter()
            .any(|e| e["reason"] == "RolledBack" && e["object"] == "rolling/web"),
        "the rollback is an event"
    );

    // History and undo: generation 1 again, as generation 4.
    let history = cluster
        .ctl(&["rollout", "history", "rolling", "-o", "json"])
        .ok()
        .json();
    let generations: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["generation"].as_u64().unwrap())
        .collect();
    assert_eq!(generations, vec![3, 2, 1]);
    cluster
        .ctl(&[
            "rollout",
            "undo",
            "rolling",
            "--to-generation",
            "1",
            "--wait",
        ])
        .ok();
    assert!(all_serve(base, "v1"));
    let status = cluster.ctl(&["rollout", "status", "rolling"]).ok();
    assert!(
        status.stdout.contains("successfully rolled out"),
        "{status:?}"
    );
    let missing = cluster.ctl(&["rollout", "undo", "rolling", "--to-generation", "99"]);
    assert_eq!(missing.code, 2, "{missing:?}");
}
