//! Services between components, with real agents and real busybox processes: a `NodePort`
//! service answers on every node while its replicas run on some of them; a worker on another
//! node reaches it by name and by environment variable; and a node's death moves the traffic
//! to the other replicas.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::service::{get, request};
use e2e::{Cluster, processes_with_env, unique_marker, wait_for};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Local agents have node addresses of their own (see `gossipctl up`), so concurrent tests may
/// all use this node port.
const NODE_PORT: u16 = 30080;

fn two_tier(app: &str, marker: &str, node_port: u16) -> String {
    let (key, value) = marker.split_once('=').expect("KEY=VALUE");
    let variable = app.to_ascii_uppercase().replace('-', "_");
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {app}
spec:
  components:
    - name: api
      type: process
      properties:
        command:
          - sh
          - -c
          - >-
            dir=$(mktemp -d) && mkdir "$dir/api" &&
            echo "api replica $GOSSIP_REPLICA on $GOSSIP_NODE" | tee "$dir/api/index.html" > "$dir/index.html" &&
            exec busybox httpd -f -p "$GOSSIP_NODE_IP:8080" -h "$dir"
        env:
          - {{name: {key}, value: "{value}"}}
        readinessProbe:
          httpGet: {{path: /, port: 8080}}
          periodSeconds: 1
      traits:
        - type: scaler
          properties: {{replicas: 2}}
        - type: spread
          properties: {{maxSkew: 1}}
        - type: expose
          properties:
            type: NodePort
            ports: [{{port: 8080, name: http, nodePort: {node_port}}}]
        - type: gateway
          properties: {{domain: shop.example.com, http: {{"/api": 8080}}}}
    - name: docs
      type: process
      properties:
        command:
          - sh
          - -c
          - >-
            dir=$(mktemp -d) && mkdir "$dir/docs" &&
            echo "docs on $GOSSIP_NODE" > "$dir/docs/index.html" &&
            exec busybox httpd -f -p "$GOSSIP_NODE_IP:8081" -h "$dir"
      traits:
        - type: ingress
          properties: {{domain: shop.example.com, http: {{"/docs": 8081}}}}
    - name: worker
      type: process
      dependsOn: [api]
      properties:
        command:
          - sh
          - -c
          - >-
            while true; do
            by_name=$(busybox nslookup api.{app}.svc.gossip "$GOSSIP_DNS" 2>/dev/null | awk '/^Address/ && !/#/ {{print $NF}}' | tail -n 1);
            echo "by name $by_name: $(busybox wget -q -O - "http://$by_name:8080/")";
            echo "by variables: $(busybox wget -q -O - "http://$GOSSIP_SERVICE_{variable}_API_HOST:$GOSSIP_SERVICE_{variable}_API_PORT/")";
            sleep 1;
            done
      traits:
        - type: affinity
          properties:
            podAntiAffinity: {{components: [api]}}
"#
    )
}

/// `node name -> node IP`, from `get nodes`.
fn node_ips(cluster: &Cluster) -> Vec<(String, String)> {
    let nodes = cluster.ctl(&["get", "nodes", "-o", "json"]).ok().json();
    nodes
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                n["nodeIp"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The port every agent of the test serves the HTTP gateway on, at its node address.
const GATEWAY_PORT: &str = "18088";

#[test]
fn services_answer_everywhere_by_name_and_follow_a_dead_node() {
    let cluster = Cluster::up_joined_with_env(3, &[("GOSSIPD_HTTP_GATEWAY", GATEWAY_PORT)]);
    let app = format!("two-tier-{}", std::process::id());
    let marker = unique_marker();
    let port = NODE_PORT;
    let file = cluster.write("two-tier.yaml", &two_tier(&app, &marker, port));
    cluster
        .ctl(&["deploy", &file, "--wait", "--timeout", "60s"])
        .ok();

    // Where everything runs: two api replicas on two nodes, the worker on the third.
    let workloads = cluster.workloads();
    let node_of = |component: &str| -> Vec<String> {
        workloads
            .iter()
            .filter(|w| w["app"] == app.as_str() && w["component"] == component)
            .map(|w| w["node"].as_str().unwrap().to_string())
            .collect()
    };
    let api_nodes = node_of("api");
    let worker_node = node_of("worker").remove(0);
    assert_eq!(api_nodes.len(), 2);
    assert!(!api_nodes.contains(&worker_node));

    // The node port answers on every node, the replica-less one included.
    let ips = node_ips(&cluster);
    for (node, ip) in &ips {
        let address: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let answer = get(address).unwrap_or_else(|e| panic!("{node}'s node port: {e}"));
        assert!(answer.starts_with("api replica"), "{answer}");
        if api_nodes.contains(node) {
            assert!(
                answer.ends_with(&format!("on {node}")),
                "a node prefers its own replica: {answer}"
            );
        }
    }
    let services = cluster.ctl(&["get", "services", "-o", "json"]).ok().json();
    let service = &services.as_array().unwrap()[0];
    assert_eq!(services.as_array().unwrap().len(), 1, "docs is not exposed");
    assert_eq!(service["name"], format!("api.{app}.svc.gossip"));
    assert_eq!(service["endpoints"].as_array().unwrap().len(), 2);

    // The gateway on every node routes by host and path to two components.
    for (node, ip) in &ips {
        let gateway: SocketAddr = format!("{ip}:{GATEWAY_PORT}").parse().unwrap();
        let ask = |host: &str, path: &str| {
            request(gateway, host, path).unwrap_or_else(|e| panic!("{node}'s gateway: {e}"))
        };
        let (status, body) = ask("shop.example.com", "/api/");
        assert!(status.contains("200"), "{node}: {status}");
        assert!(body.starts_with("api replica"), "{node}: {body}");
        let (status, body) = ask("shop.example.com", "/docs/");
        assert!(status.contains("200"), "{node}: {status}");
        assert!(body.starts_with("docs on"), "{node}: {body}");
        let (status, _) = ask("other.example.com", "/api/");
        assert!(
            status.contains("404"),
            "another host has no route: {status}"
        );
    }

    // The worker, on the node without a replica, reaches the API by name and by variable.
    let worker_log = || {
        cluster
            .ctl(&["logs", &format!("{app}/worker/0")])
            .ok()
            .stdout
    };
    wait_for(
        "the worker to reach the API",
        Duration::from_secs(30),
        || {
            let log = worker_log();
            log.lines()
                .any(|l| l.starts_with("by name 127.") && l.contains(": api replica"))
                && log
                    .lines()
                    .any(|l| l.starts_with("by variables: api replica"))
        },
    );

    // A client of the node port on the worker's node, which has no replica of its own.
    let worker_ip = &ips.iter().find(|(n, _)| *n == worker_node).unwrap().1;
    let address: SocketAddr = format!("{worker_ip}:{port}").parse().unwrap();
    let failures: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let served: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (failures, served, stop) = (failures.clone(), served.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match get(address) {
                    Ok(body) => served.lock().unwrap().push((Instant::now(), body)),
                    Err(e) => failures.lock().unwrap().push((Instant::now(), e)),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(2));

    // The node under one replica dies: its agent and its replicas.
    let victim = api_nodes[0].clone();
    let index: usize = victim.trim_start_matches("node-").parse().unwrap();
    cluster.kill_agent(index);
    for (pid, _) in processes_with_env(&marker) {
        let node_entry = format!("GOSSIP_NODE={victim}");
        let on_victim = std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == node_entry.as_bytes()));
        if on_victim {
            let _ = kill(Pid::from_raw(-(pid as i32)), Signal::SIGKILL);
        }
    }
    let survivor = (1..=3).find(|i| *i != index).unwrap();
    wait_for("the death to be declared", Duration::from_secs(30), || {
        cluster.sees(survivor, &[(victim.as_str(), "dead")])
    });
    let declared = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();

    let failures = failures.lock().unwrap();
    let late: Vec<&(Instant, String)> = failures
        .iter()
        .filter(|(at, _)| *at > declared + Duration::from_secs(5))
        .collect();
    assert!(
        late.is_empty(),
        "requests failed more than 5 s after the death was declared: {late:?}"
    );
    let served = served.lock().unwrap();
    let after: Vec<&String> = served
        .iter()
        .filter(|(at, _)| *at > declared + Duration::from_secs(5))
        .map(|(_, body)| body)
        .collect();
    assert!(!after.is_empty(), "the service still answers");
    assert!(
        after.iter().all(|b| !b.ends_with(&format!("on {victim}"))),
        "no answer from the dead node"
    );
    eprintln!(
        "{} requests, {} failed ({} within 5 s of the death being declared)",
        served.len() + failures.len(),
        failures.len(),
        failures.len() - late.len()
    );
}
