//! The foundation slice end to end: one real agent, real certificates, real child processes.

use std::time::Duration;

use e2e::{Cluster, replica_groups, unique_marker, wait_for};

/// Two components: `greeter` (2 replicas) and `ticker`, which depends on it. `marker` is an
/// environment entry unique to the test, to find exactly this app's processes.
fn app(marker: &str, greeting: &str) -> String {
    let (name, value) = marker.split_once('=').unwrap();
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: hello
spec:
  components:
    - name: greeter
      type: process
      properties:
        command: ["sh", "-c", "while true; do echo \"$GREETING from $GOSSIP_COMPONENT/$GOSSIP_REPLICA of $GOSSIP_REPLICAS\"; sleep 0.2; done"]
        env:
          - name: GREETING
            value: {greeting}
          - name: {name}
            value: "{value}"
      traits:
        - type: scaler
          properties:
            replicas: 2
    - name: ticker
      type: process
      dependsOn: [greeter]
      properties:
        command: ["sh", "-c", "while true; do echo tick; sleep 0.2; done"]
        env:
          - name: {name}
            value: "{value}"
"#
    )
}

fn states(cluster: &Cluster) -> Vec<(String, String)> {
    cluster
        .workloads()
        .iter()
        .map(|w| {
            (
                w["id"].as_str().unwrap().to_string(),
                w["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn all_running(cluster: &Cluster) -> bool {
    let states = states(cluster);
    states.len() == 3 && states.iter().all(|(_, s)| s == "running")
}

fn pids(cluster: &Cluster, component: &str) -> Vec<u64> {
    cluster
        .workloads()
        .iter()
        .filter(|w| w["component"] == component)
        .map(|w| w["pid"].as_u64().expect("a running replica has a pid"))
        .collect()
}

#[test]
fn deploy_logs_survive_kill_and_delete() {
    let cluster = Cluster::up(1);
    let marker = unique_marker();
    let file = cluster.write("hello.yaml", &app(&marker, "hello"));

    cluster.ctl(&["deploy", &file, "--wait"]).ok();
    let workloads = cluster.workloads();
    let ids: Vec<&str> = workloads
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["hello/greeter/0", "hello/greeter/1", "hello/ticker/0"]
    );
    for w in &workloads {
        assert_eq!(w["state"], "running", "{w}");
        assert_eq!(w["node"], "node-1");
        assert_eq!(w["type"], "process");
        assert_eq!(w["app"], "hello");
        assert!(w["restarts"].is_u64() && w["message"].is_string());
    }
    let apps = cluster.apps();
    assert_eq!(apps[0]["name"], "hello");
    assert_eq!(apps[0]["status"], "running");
    assert_eq!(apps[0]["components"], 2);
    assert_eq!(replica_groups(&marker).len(), 3);

    wait_for("greeter output", Duration::from_secs(10), || {
        cluster
            .ctl(&["logs", "hello/greeter/1"])
            .ok()
            .stdout
            .contains("hello from greeter/1 of 2")
    });
    let tail = cluster.ctl(&["logs", "hello/greeter", "--tail", "4"]).ok();
    assert_eq!(tail.stdout.lines().count(), 4, "{}", tail.stdout);
    assert!(
        tail.stdout
            .lines()
            .all(|l| l.starts_with("[hello/greeter/"))
    );

    // kill -9 the agent: its replicas die with it, and come back exactly once with it.
    let before = replica_groups(&marker);
    cluster.kill_agent(1);
    wait_for(
        "replicas to die with their agent",
        Duration::from_secs(10),
        || replica_groups(&marker).is_empty(),
    );
    cluster.up_again();
    wait_for(
        "the application to run again",
        Duration::from_secs(20),
        || all_running(&cluster),
    );
    let after = replica_groups(&marker);
    assert_eq!(
        after.len(),
        3,
        "one process group per replica, no duplicates"
    );
    assert!(after.is_disjoint(&before));

    cluster.ctl(&["delete", "app", "hello", "--wait"]).ok();
    wait_for("no processes left", Duration::from_secs(10), || {
        replica_groups(&marker).is_empty()
    });
    assert_eq!(cluster.apps(), serde_json::json!([]));
}

#[test]
fn redeploy_restarts_only_what_changed() {
    let cluster = Cluster::up(1);
    let marker = unique_marker();
    let file = cluster.write("hello.yaml", &app(&marker, "hello"));
    cluster.ctl(&["deploy", &file, "--wait"]).ok();
    let (greeters, tickers) = (pids(&cluster, "greeter"), pids(&cluster, "ticker"));

    // The same file again: nothing restarts.
    let again = cluster.ctl(&["deploy", &file, "--wait"]).ok();
    assert!(
        again.stdout.contains("unchanged: greeter, ticker"),
        "{}",
        again.stdout
    );
    assert_eq!(pids(&cluster, "greeter"), greeters);
    assert_eq!(pids(&cluster, "ticker"), tickers);

    // A changed greeter is replaced; the unchanged ticker keeps running.
    let changed = cluster.write("hello-2.yaml", &app(&marker, "bonjour"));
    let out = cluster.ctl(&["deploy", &changed, "--wait"]).ok();
    assert!(out.stdout.contains("changed: greeter"), "{}", out.stdout);
    let new_greeters = pids(&cluster, "greeter");
    assert!(new_greeters.iter().all(|p| !greeters.contains(p)));
    assert_eq!(pids(&cluster, "ticker"), tickers);
    wait_for("the new greeting", Duration::from_secs(10), || {
        cluster
            .ctl(&["logs", "hello/greeter/0", "--tail", "1"])
            .ok()
            .stdout
            .contains("bonjour")
    });
    assert_eq!(replica_groups(&marker).len(), 3);
}

#[test]
fn a_crashing_process_is_restarted_per_its_policy() {
    let cluster = Cluster::up(1);
    let file = cluster.write(
        "crash.yaml",
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: crash
spec:
  components:
    - name: always
      type: process
      properties:
        command: ["sh", "-c", "echo up; exit 3"]
    - name: once
      type: process
      properties:
        command: ["sh", "-c", "echo done"]
        restart: OnFailure
    - name: never
      type: process
      properties:
        command: ["sh", "-c", "exit 1"]
        restart: Never
"#,
    );
    cluster.ctl(&["deploy", &file]).ok();
    let find = |id: &str| {
        cluster
            .workloads()
            .into_iter()
            .find(|w| w["id"] == id)
            .unwrap_or_default()
    };
    wait_for("restarts with backoff", Duration::from_secs(15), || {
        find("crash/always/0")["restarts"].as_u64() >= Some(2)
    });
    wait_for("run-to-completion success", Duration::from_secs(10), || {
        find("crash/once/0")["state"] == "succeeded"
    });
    wait_for("a failure left alone", Duration::from_secs(10), || {
        find("crash/never/0")["state"] == "failed"
    });
    assert_eq!(find("crash/never/0")["restarts"], 0);
    assert!(
        find("crash/never/0")["message"]
            .as_str()
            .unwrap()
            .contains("status 1")
    );
    assert_eq!(cluster.apps()[0]["status"], "degraded");
}

#[test]
fn an_override_policy_decides_what_runs_and_deploy_notes_the_workflow() {
    let cluster = Cluster::up(1);
    let file = e2e::docker::repo_root().join("examples/override.yaml");
    let deployed = cluster
        .ctl(&["deploy", file.to_str().unwrap(), "--wait"])
        .ok();
    assert!(
        deployed.stderr.contains("note: spec.workflow:"),
        "deploy says the workflow's steps are not run: {deployed:?}"
    );
    let replicas: Vec<String> = cluster
        .workloads()
        .iter()
        .filter(|w| w["state"] == "running")
        .map(|w| w["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        replicas.len(),
        3,
        "the production override's scaler: {replicas:?}"
    );
    wait_for("the production message", Duration::from_secs(10), || {
        cluster
            .ctl(&["logs", "greeter/hello/2", "--tail", "1"])
            .ok()
            .stdout
            .contains("hello from production")
    });
}
