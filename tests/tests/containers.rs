//! Container workloads end to end, on the machine's Docker engine, with the project's own
//! locally built image: run, logs, adoption across an agent crash, delete, and placement
//! that says why it cannot place.

use std::time::Duration;

use e2e::docker::{build_images, containers_labelled, docker, remove_labelled};
use e2e::{Cluster, wait_for};

const APP_LABEL: &str = "dev.gossipctl.app";

/// Removes whatever an app left on the engine, even when the test fails half-way.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        remove_labelled(APP_LABEL, &self.0);
    }
}

fn unique_app(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}

/// A `worker` with two replicas and a `webservice` published on `web_port` of the node.
fn container_app(name: &str, web_port: u16) -> String {
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {name}
spec:
  components:
    - name: worker
      type: worker
      properties:
        image: gossipctl/busybox:local
        args:
          - sh
          - -c
          - "trap 'exit 0' TERM; echo started $GOSSIP_APP/$GOSSIP_REPLICA of $GOSSIP_REPLICAS on $GOSSIP_NODE; echo to-stderr >&2; while true; do sleep 1; done"
        memory: 32Mi
      traits:
        - type: scaler
          properties:
            replicas: 2
    - name: web
      type: webservice
      properties:
        image: gossipctl/busybox:local
        args:
          - sh
          - -c
          - "mkdir -p /www && echo web on $GOSSIP_NODE > /www/index.html && trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"
        ports:
          - port: 8080
            expose: true
            hostPort: {web_port}
"#
    )
}

/// One `worker` replica idling in a shell, reserving `memory`, with `traits` (flow YAML).
fn idle_worker(app: &str, memory: &str, traits: &str) -> String {
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {app}
spec:
  components:
    - name: idle
      type: worker
      properties:
        image: gossipctl/busybox:local
        args: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
        memory: {memory}
      traits: {traits}
"#
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The body of `GET /` on the node's port, if anything answers there.
fn http_get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

fn workload_states(cluster: &Cluster, app: &str) -> Vec<String> {
    cluster
        .workloads()
        .iter()
        .filter(|w| w["app"] == app)
        .map(|w| w["state"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn all_running(cluster: &Cluster, app: &str, replicas: usize) -> bool {
    let states = workload_states(cluster, app);
    states.len() == replicas && states.iter().all(|s| s == "running")
}

fn app_status(cluster: &Cluster, app: &str) -> (String, String) {
    let apps = cluster.apps();
    let found = apps
        .as_array()
        .expect("apps array")
        .iter()
        .find(|a| a["name"] == app)
        .cloned()
        .unwrap_or_default();
    (
        found["status"].as_str().unwrap_or_default().to_string(),
        found["message"].as_str().unwrap_or_default().to_string(),
    )
}

fn logs(cluster: &Cluster, workload: &str) -> String {
    cluster.ctl(&["logs", workload]).ok().stdout
}

#[test]
fn a_worker_runs_logs_survives_its_agent_and_leaves_nothing_behind() {
    build_images();
    let app = unique_app("ctr");
    let _cleanup = Cleanup(app.clone());
    let cluster = Cluster::up_joined(1);

    let nodes = cluster.ctl(&["get", "nodes", "-o", "json"]).ok().json();
    let runtimes = &nodes[0]["runtimes"];
    assert!(
        runtimes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "container"),
        "a node with a Docker engine offers the container runtime: {runtimes}"
    );

    let web_port = free_port();
    let file = cluster.write("containers.yaml", &container_app(&app, web_port));
    cluster.ctl(&["deploy", &file, "--wait"]).ok();
    wait_for("every replica to run", Duration::from_secs(60), || {
        all_running(&cluster, &app, 3)
    });
    let before = containers_labelled(APP_LABEL, &app);
    assert_eq!(before.len(), 3, "one container per replica");
    wait_for(
        "the webservice to answer on its host port",
        Duration::from_secs(20),
        || http_get(web_port).is_some_and(|r| r.contains("web on node-1")),
    );
    let worker = containers_labelled("dev.gossipctl.component", "worker")
        .into_iter()
        .find(|c| before.contains(c))
        .expect("a worker container");
    let inspected = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.Memory}} {{index .Config.Labels \"dev.gossipctl.node\"}}",
        &worker,
    ]);
    assert_eq!(inspected.trim(), format!("{} node-1", 32 << 20));

    wait_for(
        "the container's output in its log",
        Duration::from_secs(20),
        || {
            let text = logs(&cluster, &format!("{app}/worker/1"));
            text.contains(&format!("started {app}/1 of 2 on node-1")) && text.contains("to-stderr")
        },
    );

    // A crashed agent comes back to find its containers still serving, and adopts them.
    cluster.kill_agent(1);
    assert_eq!(
        containers_labelled(APP_LABEL, &app),
        before,
        "containers outlive their agent"
    );
    cluster.up_again();
    wait_for("the replicas to run again", Duration::from_secs(60), || {
        all_running(&cluster, &app, 3)
    });
    let mut after = containers_labelled(APP_LABEL, &app);
    after.sort();
    let mut before = before;
    before.sort();
    // Each attempt creates a new container, so the same ids mean adopted, not restarted.
    assert_eq!(after, before, "the same containers, no duplicates");

    // More memory than any node has: unschedulable, and the app says why.
    let greedy = unique_app("greedy");
    let _greedy_cleanup = Cleanup(greedy.clone());
    let file = cluster.write("greedy.yaml", &idle_worker(&greedy, "64Ti", "[]"));
    cluster.ctl(&["deploy", &file]).ok();
    wait_for(
        "the greedy app to be unschedulable",
        Duration::from_secs(20),
        || app_status(&cluster, &greedy).0 == "unschedulable",
    );
    let (_, message) = app_status(&cluster, &greedy);
    assert!(
        message.contains("resource: needs 64Ti memory per replica"),
        "{message}"
    );
    assert!(containers_labelled(APP_LABEL, &greedy).is_empty());

    cluster.ctl(&["delete", "app", &app, "--wait"]).ok();
    wait_for(
        "its containers to be removed",
        Duration::from_secs(30),
        || containers_labelled(APP_LABEL, &app).is_empty(),
    );
}

#[test]
fn without_an_engine_a_node_offers_no_container_runtime() {
    let app = unique_app("noengine");
    let _cleanup = Cleanup(app.clone());
    let cluster =
        Cluster::up_joined_with_env(1, &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    let nodes = cluster.ctl(&["get", "nodes", "-o", "json"]).ok().json();
    let runtimes = nodes[0]["runtimes"].as_array().unwrap().clone();
    assert!(!runtimes.iter().any(|r| r == "container"), "{runtimes:?}");

    let file = cluster.write("containers.yaml", &container_app(&app, free_port()));
    cluster.ctl(&["deploy", &file]).ok();
    wait_for(
        "the app to be unschedulable",
        Duration::from_secs(20),
        || app_status(&cluster, &app).0 == "unschedulable",
    );
    let (_, message) = app_status(&cluster, &app);
    assert!(message.contains("container runtime"), "{message}");
}

#[test]
fn a_restarted_agent_removes_the_containers_it_no_longer_runs() {
    build_images();
    let app = unique_app("orphan");
    let _cleanup = Cleanup(app.clone());
    let cluster = Cluster::up_joined(2);
    let pinned = idle_worker(
        &app,
        "16Mi",
        "[{type: affinity, properties: {nodeSelector: {zone: a}}}]",
    );
    let file = cluster.write("pinned.yaml", &pinned);
    cluster.ctl(&["deploy", &file, "--wait"]).ok();
    assert_eq!(containers_labelled(APP_LABEL, &app).len(), 1);

    // The app is deleted while the agent that runs its container is down.
    cluster.kill_agent(1);
    cluster.ctl_at(2, &["delete", "app", &app]).ok();
    assert_eq!(
        containers_labelled(APP_LABEL, &app).len(),
        1,
        "nobody else may remove another node's container"
    );
    cluster.up_again();
    wait_for(
        "the restarted agent to remove the container",
        Duration::from_secs(45),
        || containers_labelled(APP_LABEL, &app).is_empty(),
    );
}

#[test]
fn after_failover_and_return_one_container_per_replica_remains() {
    build_images();
    let app = unique_app("failover");
    let _cleanup = Cleanup(app.clone());
    let cluster = Cluster::up_joined(2);
    let one = idle_worker(&app, "16Mi", "[]");
    let file = cluster.write("one.yaml", &one);
    cluster.ctl(&["deploy", &file, "--wait"]).ok();
    let first = cluster.running(1, &app).expect("one running replica");
    let node = first.values().next().expect("placed").clone();
    let (dead, survivor) = if node == "node-1" { (1, 2) } else { (2, 1) };

    // Its agent dies; the container lives on while the replica starts on the survivor.
    cluster.kill_agent(dead);
    wait_for("the replica to fail over", Duration::from_secs(30), || {
        cluster
            .running(survivor, &app)
            .is_some_and(|p| p.values().all(|n| *n == format!("node-{survivor}")))
            && containers_labelled(APP_LABEL, &app).len() == 2
    });

    // The agent returns: the replica stays where it runs, the orphan goes.
    cluster.up_again();
    wait_for(
        "one container for the replica",
        Duration::from_secs(45),
        || {
            containers_labelled(APP_LABEL, &app).len() == 1
                && cluster.running(dead, &app).is_some_and(|p| p.len() == 1)
        },
    );
}

/// Probes of a container run against the container: `httpGet` at its own address (the port
/// is not published), `exec` inside it through the engine.
#[test]
fn container_probes_run_inside_and_against_the_container() {
    build_images();
    let cluster = Cluster::up(1);
    let app = unique_app("probed-web");
    let _cleanup = Cleanup(app.clone());
    let yaml = format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {app}
spec:
  components:
    - name: web
      type: webservice
      properties:
        image: gossipctl/busybox:local
        args:
          - sh
          - -c
          - "mkdir -p /www && trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"
        readinessProbe:
          httpGet: {{path: /health, port: 8080}}
          periodSeconds: 1
        livenessProbe:
          exec: {{command: ["sh", "-c", "! test -e /www/dead"]}}
          periodSeconds: 1
          failureThreshold: 2
"#
    );
    let file = cluster.write(&format!("{app}.yaml"), &yaml);
    cluster.ctl(&["deploy", &file]).ok();
    let id = format!("{app}/web/0");
    let workload = || {
        cluster
            .workloads()
            .into_iter()
            .find(|w| w["id"] == id.as_str())
            .unwrap_or_default()
    };
    wait_for(
        "the web container to run, not ready",
        Duration::from_secs(60),
        || {
            let w = workload();
            w["state"] == "running" && w["message"].as_str().unwrap_or("").contains("404")
        },
    );
    let container = format!("gossip_node-1_{app}_web_0");
    docker(&["exec", &container, "sh", "-c", "echo ok > /www/health"]);
    wait_for(
        "the web container to be ready",
        Duration::from_secs(15),
        || workload()["state"] == "ready",
    );
    docker(&["exec", &container, "touch", "/www/dead"]);
    wait_for(
        "the liveness failure to restart it",
        Duration::from_secs(30),
        || {
            let w = workload();
            w["restarts"].as_u64() >= Some(1) && w["state"] == "running"
        },
    );
    // A fresh container: no /www/dead, no /www/health, so alive and not ready.
    let agent_log = std::fs::read_to_string(cluster.dir.path().join("node-1/gossipd.log")).unwrap();
    assert!(
        agent_log.lines().any(|l| l.contains(id.as_str())
            && l.contains("liveness probe failed: exited with status 1")),
        "{agent_log}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let w = workload();
    assert_eq!(w["state"], "running", "{w}");
    assert_eq!(w["restarts"], 1, "{w}");
}

/// Four busybox web containers serving `VERSION`, ready once the page answers; updated from v1
/// to v2 while a client requests them continuously at the addresses the cluster reports, with
/// the container default of one surge replica.
fn rolling_web(app: &str, version: &str) -> String {
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {app}
spec:
  components:
    - name: web
      type: webservice
      properties:
        image: gossipctl/busybox:local
        args:
          - sh
          - -c
          - "mkdir -p /www && echo $VERSION > /www/index.html && trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"
        env:
          - name: VERSION
            value: "{version}"
        readinessProbe:
          httpGet: {{path: /index.html, port: 8080}}
          periodSeconds: 1
      traits:
        - type: scaler
          properties: {{replicas: 4}}
"#
    )
}

#[test]
fn a_webservice_is_updated_without_a_failed_request() {
    build_images();
    let cluster = Cluster::up(2);
    let app = unique_app("rolling-web");
    let _cleanup = Cleanup(app.clone());
    let v1 = cluster.write(&format!("{app}-v1.yaml"), &rolling_web(&app, "v1"));
    cluster
        .ctl(&["deploy", &v1, "--wait", "--timeout", "120s"])
        .ok();
    let address = |w: &serde_json::Value| {
        let ip: std::net::IpAddr = w["address"].as_str()?.parse().ok()?;
        Some(std::net::SocketAddr::new(ip, 8080))
    };
    let client = e2e::service::Client::start(cluster.config(), &app, address);
    std::thread::sleep(Duration::from_secs(2));
    let v2 = cluster.write(&format!("{app}-v2.yaml"), &rolling_web(&app, "v2"));
    cluster
        .ctl(&["deploy", &v2, "--wait", "--timeout", "120s"])
        .ok();
    std::thread::sleep(Duration::from_secs(1));
    let seen = client.finish();
    assert!(
        seen.failed.is_empty(),
        "failed requests during the update: {:?}",
        seen.failed
    );
    assert!(seen.served.iter().any(|b| b == "v1"));
    assert_eq!(seen.served.last().map(String::as_str), Some("v2"));
    assert!(
        seen.fewest_ready.is_some_and(|f| f >= 3),
        "never below desired - maxUnavailable ready: {:?}",
        seen.fewest_ready
    );
    let workloads: Vec<serde_json::Value> = cluster
        .workloads()
        .into_iter()
        .filter(|w| w["app"] == app.as_str())
        .collect();
    assert_eq!(
        workloads.len(),
        4,
        "the surge replica is gone: {workloads:#?}"
    );
}
