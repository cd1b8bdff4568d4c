//! Health probes end to end: real agents run exec, tcp and http probes against real
//! processes; readiness shows as `ready` in `get workloads` and `describe app`, a failing
//! liveness probe restarts the replica.

use std::time::Duration;

use e2e::{Cluster, unique_marker, wait_for};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `gate`: ready while `$DIR/ready` exists (exec), alive while `$DIR/dead` does not (exec,
/// two failures). `follower`: depends on `gate`, so starts once it is ready. `web`: a busybox httpd serving `$DIR/www`, ready when `/health` answers
/// (httpGet), alive while its port accepts (tcpSocket).
fn app(marker: &str, dir: &str, port: u16) -> String {
    let (name, value) = marker.split_once('=').unwrap();
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: probed
spec:
  components:
    - name: gate
      type: process
      properties:
        command: ["sleep", "3600"]
        env:
          - name: {name}
            value: "{value}"
        readinessProbe:
          exec:
            command: ["test", "-e", "{dir}/ready"]
          periodSeconds: 1
        livenessProbe:
          exec:
            command: ["sh", "-c", "! test -e {dir}/dead"]
          periodSeconds: 1
          failureThreshold: 2
    - name: follower
      type: process
      dependsOn: [gate]
      properties:
        command: ["sleep", "3600"]
    - name: web
      type: process
      properties:
        command: ["busybox", "httpd", "-f", "-p", "127.0.0.1:{port}", "-h", "{dir}/www"]
        readinessProbe:
          httpGet:
            path: /health
            port: {port}
          periodSeconds: 1
        livenessProbe:
          tcpSocket:
            port: {port}
          initialDelaySeconds: 1
          periodSeconds: 1
"#
    )
}

fn workload(cluster: &Cluster, id: &str) -> serde_json::Value {
    cluster
        .workloads()
        .into_iter()
        .find(|w| w["id"] == id)
        .unwrap_or_else(|| panic!("no workload {id}"))
}

fn state(cluster: &Cluster, id: &str) -> String {
    workload(cluster, id)["state"].as_str().unwrap().to_string()
}

/// `(up, ready)` of `component` in `describe app probed -o json`.
fn counts(cluster: &Cluster, component: &str) -> (u64, u64) {
    let detail = cluster
        .ctl(&["describe", "app", "probed", "-o", "json"])
        .ok()
        .json();
    let c = detail["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == component)
        .unwrap()
        .clone();
    (c["running"].as_u64().unwrap(), c["ready"].as_u64().unwrap())
}

#[test]
fn readiness_gates_ready_and_liveness_restarts() {
    let cluster = Cluster::up(1);
    let marker = unique_marker();
    let dir = cluster.dir.path().join("probed");
    std::fs::create_dir_all(dir.join("www")).unwrap();
    let port = free_port();
    let file = cluster.write("probed.yaml", &app(&marker, dir.to_str().unwrap(), port));
    let wall_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let deployed_ms = wall_ms();
    cluster.ctl(&["deploy", &file]).ok();

    // Both run, neither is ready: the gate's flag is missing, the web has no /health yet.
    wait_for("both replicas to run", Duration::from_secs(20), || {
        state(&cluster, "probed/gate/0") == "running"
            && state(&cluster, "probed/web/0") == "running"
    });
    wait_for(
        "the gate to say why it is not ready",
        Duration::from_secs(10),
        || {
            workload(&cluster, "probed/gate/0")["message"]
                .as_str()
                .unwrap()
                .starts_with("not ready: exited with status 1")
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(state(&cluster, "probed/gate/0"), "running");
    assert_eq!(state(&cluster, "probed/web/0"), "running");
    assert_eq!(counts(&cluster, "gate"), (1, 0));
    assert_eq!(counts(&cluster, "web"), (1, 0));
    // dependsOn waits for readiness, not only for a running process.
    assert_eq!(state(&cluster, "probed/follower/0"), "pending");
    let web = workload(&cluster, "probed/web/0");
    assert!(
        web["message"].as_str().unwrap().contains("404"),
        "the http probe says what it got: {web}"
    );

    // Make each ready: the probes see it within a period or two.
    std::fs::write(dir.join("ready"), "").unwrap();
    std::fs::write(dir.join("www/health"), "ok\n").unwrap();
    wait_for("both replicas to be ready", Duration::from_secs(10), || {
        state(&cluster, "probed/gate/0") == "ready" && state(&cluster, "probed/web/0") == "ready"
    });
    assert_eq!(counts(&cluster, "gate"), (1, 1));
    assert_eq!(counts(&cluster, "web"), (1, 1));
    // The status says since when it is ready.
    let ready_since = workload(&cluster, "probed/gate/0")["since_ms"]
        .as_u64()
        .unwrap();
    assert!(
        (deployed_ms..=wall_ms()).contains(&ready_since),
        "ready since {ready_since}, deployed at {deployed_ms}"
    );
    wait_for(
        "the follower to start once the gate is ready",
        Duration::from_secs(10),
        || state(&cluster, "probed/follower/0") == "running",
    );
    let table = cluster.ctl(&["describe", "app", "probed"]).ok().stdout;
    assert!(table.contains("READY"), "{table}");
    let listed = cluster.ctl(&["get", "workloads"]).ok().stdout;
    assert!(
        listed
            .lines()
            .any(|l| l.contains("probed/gate/0") && l.contains("ready")),
        "{listed}"
    );

    // Not ready again: back to running, still the same process (readiness never restarts).
    let pid = workload(&cluster, "probed/gate/0")["pid"].as_u64().unwrap();
    std::fs::remove_file(dir.join("ready")).unwrap();
    wait_for("the gate to be not ready", Duration::from_secs(10), || {
        state(&cluster, "probed/gate/0") == "running"
    });
    assert_eq!(
        workload(&cluster, "probed/gate/0")["pid"].as_u64(),
        Some(pid)
    );
    std::fs::write(dir.join("ready"), "").unwrap();

    // The liveness probe fails twice in a row: the replica is restarted, a new process.
    std::fs::write(dir.join("dead"), "").unwrap();
    wait_for(
        "the liveness failure to restart the gate",
        Duration::from_secs(15),
        || {
            let w = workload(&cluster, "probed/gate/0");
            w["restarts"].as_u64() >= Some(1) && w["pid"].as_u64().is_some_and(|p| p != pid)
        },
    );
    std::fs::remove_file(dir.join("dead")).unwrap();
    let agent_log = std::fs::read_to_string(cluster.dir.path().join("node-1/gossipd.log")).unwrap();
    assert!(
        agent_log.lines().any(|l| l.contains("probed/gate/0")
            && l.contains("liveness probe failed: exited with status 1")),
        "{agent_log}"
    );
    wait_for(
        "the restarted gate to be ready",
        Duration::from_secs(15),
        || state(&cluster, "probed/gate/0") == "ready",
    );
    // The events tell it in order: not ready, then restarted for the liveness failure.
    let events = cluster
        .ctl(&["get", "events", "--app", "probed", "-o", "json"])
        .ok()
        .json();
    let gate: Vec<(String, String)> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["object"] == "probed/gate/0")
        .map(|e| {
            let text = |field: &str| e[field].as_str().unwrap().to_string();
            (text("reason"), text("message"))
        })
        .collect();
    let position = |reason: &str| gate.iter().position(|(r, _)| r == reason);
    let (unready, restarted) = (position("NotReady"), position("Restarted"));
    assert!(
        unready.is_some() && restarted > unready,
        "NotReady, then Restarted: {gate:?}"
    );
    assert!(
        gate[restarted.unwrap()].1.contains("liveness probe failed"),
        "{gate:?}"
    );
    let ready_again = workload(&cluster, "probed/gate/0")["since_ms"]
        .as_u64()
        .unwrap();
    assert!(
        ready_again > ready_since,
        "{ready_again} after {ready_since}"
    );
    assert!(
        !e2e::processes_with_env(&marker)
            .iter()
            .any(|&(p, _)| u64::from(p) == pid),
        "the old process is gone"
    );

    // A hung web server (SIGSTOP): the kernel still accepts connections into the listen
    // backlog, so the tcp liveness probe passes and nothing restarts it, but the http check
    // times out and the replica is no longer ready.
    let web_pid = workload(&cluster, "probed/web/0")["pid"].as_u64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(web_pid),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    wait_for(
        "a hung web server to be not ready",
        Duration::from_secs(15),
        || state(&cluster, "probed/web/0") == "running",
    );
    let web = workload(&cluster, "probed/web/0");
    assert_eq!(
        web["restarts"], 0,
        "a hung server that accepts is alive by tcp: {web}"
    );
    assert!(
        web["message"].as_str().unwrap().contains("timed out"),
        "{web}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(web_pid),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    wait_for(
        "the web server to be ready again",
        Duration::from_secs(15),
        || state(&cluster, "probed/web/0") == "ready",
    );
}
