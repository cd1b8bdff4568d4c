//! Mutual TLS and authorisation against a real agent.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use e2e::{Cluster, gossipctl};

const APP: &str = r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: sneaky
spec:
  components:
    - name: job
      type: process
      properties:
        command: ["sleep", "60"]
"#;

/// A CLI config naming the cluster's agents but presenting other credentials.
fn config_with(cluster: &Cluster, dir: &Path, ca: &Path, cert: &Path, key: &Path) -> PathBuf {
    let text = std::fs::read_to_string(cluster.config()).unwrap();
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    config["ca"] = ca.to_str().unwrap().into();
    config["cert"] = cert.to_str().unwrap().into();
    config["key"] = key.to_str().unwrap().into();
    let path = dir.join("config.yaml");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

#[test]
fn a_client_from_another_ca_gets_no_answer() {
    let cluster = Cluster::up(1);
    let foreign = tempfile::tempdir().unwrap();
    let foreign_dir = foreign.path().to_str().unwrap();
    gossipctl(
        &["cluster", "init", "--dir", foreign_dir],
        Path::new("/nonexistent"),
    )
    .ok();

    // Foreign client certificate, even when it trusts the real cluster CA.
    let config = config_with(
        &cluster,
        foreign.path(),
        &cluster.dir.path().join("ca.crt"),
        &foreign.path().join("admin.crt"),
        &foreign.path().join("admin.key"),
    );
    for args in [
        vec!["get", "apps", "-o", "json"],
        vec!["deploy", &cluster.write("app.yaml", APP)],
    ] {
        let mut full = args.clone();
        full.extend(["--config", config.to_str().unwrap()]);
        let run = gossipctl(&full, &config);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(run.stdout.is_empty(), "leaked: {}", run.stdout);
        assert!(run.stderr.contains("no agent answered"), "{}", run.stderr);
    }
    assert_eq!(cluster.apps(), serde_json::json!([]));
}

#[test]
fn a_node_certificate_cannot_deploy_delete_or_drain() {
    let cluster = Cluster::up(1);
    let node_certs = cluster.dir.path().join("node-1").join("certs");
    let scratch = tempfile::tempdir().unwrap();
    let config = config_with(
        &cluster,
        scratch.path(),
        &node_certs.join("ca.crt"),
        &node_certs.join("node.crt"),
        &node_certs.join("node.key"),
    );
    let file = cluster.write("app.yaml", APP);
    let deploy = gossipctl(&["deploy", &file], &config);
    assert_eq!(deploy.code, 1, "{deploy:?}");
    assert!(
        deploy.stderr.contains("may not deploy"),
        "{}",
        deploy.stderr
    );
    assert_eq!(cluster.apps(), serde_json::json!([]));

    // Reading is fine for a cluster member.
    let read = gossipctl(&["get", "nodes", "-o", "json"], &config).ok();
    assert_eq!(read.json()[0]["name"], "node-1");

    cluster.ctl(&["deploy", &file]).ok();
    let delete = gossipctl(&["delete", "app", "sneaky"], &config);
    assert_eq!(delete.code, 1);
    assert!(
        delete.stderr.contains("may not delete"),
        "{}",
        delete.stderr
    );
    assert_eq!(cluster.apps()[0]["name"], "sneaky");

    // Nor cordon or drain a node, itself included.
    for command in ["cordon", "drain", "uncordon"] {
        let run = gossipctl(&[command, "node-1"], &config);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(
            run.stderr.contains("may not cordon or drain"),
            "{}",
            run.stderr
        );
    }
    let nodes = cluster.ctl(&["get", "nodes", "-o", "json"]).ok().json();
    assert!(nodes[0].get("maintenance").is_none(), "{nodes:#}");
}

#[test]
fn private_keys_are_owner_only() {
    let cluster = Cluster::up(2);
    let root = cluster.dir.path();
    for key in [
        root.join("ca.key"),
        root.join("admin.key"),
        root.join("node-1/certs/node.key"),
        root.join("node-2/certs/node.key"),
    ] {
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }
}
