//! Rolling updates end to end: real agents replace a 4-replica HTTP service (busybox httpd
//! processes) one replica at a time while a client in the test requests it continuously,
//! choosing among the replicas the cluster reports ready, as a load balancer would. An update
//! that never becomes ready is rolled back at its progress deadline; `rollout undo` returns
//! to an earlier generation; events tell the story.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// One HTTP GET; the body, or why it failed.
fn get(port: u16) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .map_err(|e| format!("connect {port}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream
        .write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("write {port}: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("read {port}: {e}"))?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body))
            if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") =>
        {
            Ok(body.trim().to_string())
        }
        _ => Err(format!("port {port} answered {answer:?}")),
    }
}

/// What the client saw.
#[derive(Debug, Default)]
struct Seen {
    served: Vec<String>,
    failed: Vec<String>,
    /// The fewest replicas the cluster reported ready at any refresh.
    fewest_ready: Option<usize>,
}

/// A client requesting the service every 20 ms, round-robin over the replicas the cluster
/// reports ready (refreshed every 300 ms), until stopped.
struct Client {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Client {
    fn start(cluster: &Cluster, base: u16) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let ready: Arc<Mutex<Vec<u16>>> = Arc::default();
        let config = cluster.config();
        let refresh = {
            let (stop, seen, ready) = (stop.clone(), seen.clone(), ready.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let run = e2e::gossipctl(&["get", "workloads", "-o", "json"], &config);
                    if run.code == 0 {
                        let ports: Vec<u16> = run
                            .json()
                            .as_array()
                            .unwrap()
                            .iter()
                            .filter(|w| w["app"] == "rolling" && w["state"] == "ready")
                            .map(|w| base + w["replica"].as_u64().unwrap() as u16)
                            .collect::<BTreeSet<u16>>()
                            .into_iter()
                            .collect();
                        let mut seen = seen.lock().unwrap();
                        let fewest = seen
                            .fewest_ready
                            .map_or(ports.len(), |f| f.min(ports.len()));
                        seen.fewest_ready = Some(fewest);
                        *ready.lock().unwrap() = ports;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        };
        let requests = {
            let (stop, seen, ready) = (stop.clone(), seen.clone(), ready.clone());
            std::thread::spawn(move || {
                let mut next = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let port = {
                        let ready = ready.lock().unwrap();
                        (!ready.is_empty()).then(|| ready[next % ready.len()])
                    };
                    next += 1;
                    if let Some(port) = port {
                        let answer = get(port);
                        let mut seen = seen.lock().unwrap();
                        match answer {
                            Ok(body) => seen.served.push(body),
                            Err(why) => seen.failed.push(why),
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Client {
            stop,
            seen,
            threads: vec![refresh, requests],
        }
    }

    fn finish(self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().unwrap();
        }
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }
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
    let client = Client::start(&cluster, base);
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
    let client = Client::start(&cluster, base);
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
