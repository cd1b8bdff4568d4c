//! Metrics as operators use them: a real Prometheus server (Debian's `prometheus`) scrapes
//! three real agents, and its HTTP API answers for each agent's member count and its replicas
//! by state.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e::service::request;
use e2e::{Cluster, temp_dir, wait_for};

/// Every agent of the test serves metrics on this port, at its own node address.
const METRICS_PORT: &str = "19100";

/// `GET path` on `address`: the body, when the answer is 200.
fn http_get(address: SocketAddr, path: &str) -> Option<String> {
    let (status, body) = request(address, &address.to_string(), path).ok()?;
    status.contains(" 200 ").then_some(body)
}

/// A query string's value, percent-encoded.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server scraping `targets` every second, stopped when dropped.
struct Prometheus {
    child: Child,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[String]) -> Prometheus {
        let dir = temp_dir();
        let listed: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n\
                 scrape_configs:\n  - job_name: gossipd\n    static_configs:\n      - targets: [{}]\n",
                listed.join(", ")
            ),
        )
        .expect("write the Prometheus config");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .unwrap()
            .port();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (Debian package prometheus; scripts/test.sh installs it)");
        Prometheus {
            child,
            address,
            _dir: dir,
        }
    }

    /// An instant query's results: `(instance, value)`.
    fn query(&self, promql: &str) -> Vec<(String, f64)> {
        let Some(body) = http_get(
            self.address,
            &format!("/api/v1/query?query={}", encode(promql)),
        ) else {
            return Vec::new();
        };
        let json: serde_json::Value = serde_json::from_str(&body).expect("Prometheus answers JSON");
        json["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let instance = r["metric"]["instance"].as_str()?.to_string();
                let value = r["value"][1].as_str()?.parse().ok()?;
                Some((instance, value))
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_every_agent() {
    let cluster = Cluster::up_joined_with_env(3, &[("GOSSIPD_METRICS", METRICS_PORT)]);
    let app = format!("metrics-{}", std::process::id());
    let file = cluster.write(
        "metrics.yaml",
        &format!(
            r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {app}
spec:
  components:
    - name: sleeper
      type: process
      properties:
        command: ["sleep", "3600"]
      traits:
        - type: scaler
          properties: {{replicas: 3}}
        - type: spread
          properties: {{}}
    - name: checked
      type: process
      properties:
        command: ["sleep", "3600"]
        readinessProbe:
          exec: {{command: ["true"]}}
          periodSeconds: 1
"#
        ),
    );
    cluster.ctl(&["deploy", &file, "--wait"]).ok();

    let nodes = cluster.ctl(&["get", "nodes", "-o", "json"]).ok().json();
    let targets: Vec<String> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| format!("{}:{METRICS_PORT}", n["nodeIp"].as_str().unwrap()))
        .collect();
    // Each agent's page is there before Prometheus is.
    for target in &targets {
        let page = http_get(target.parse().unwrap(), "/metrics").expect("a metrics page");
        assert!(
            page.contains("gossipctl_members{state=\"alive\"} 3"),
            "{page}"
        );
        assert!(
            page.contains("gossipctl_reconcile_duration_seconds_bucket"),
            "{page}"
        );
    }

    let prometheus = Prometheus::start(&targets);
    let mut members = Vec::new();
    wait_for(
        "Prometheus to scrape every agent",
        Duration::from_secs(60),
        || {
            members = prometheus.query("gossipctl_members{state=\"alive\"}");
            members.len() == 3
        },
    );
    let mut instances: Vec<&str> = members.iter().map(|(i, _)| i.as_str()).collect();
    instances.sort();
    let mut expected: Vec<&str> = targets.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(instances, expected, "one series per agent");
    assert!(
        members.iter().all(|(_, count)| *count == 3.0),
        "every agent counts 3 alive members: {members:?}"
    );

    let running = prometheus.query("sum by (instance) (gossipctl_replicas{state=\"running\"})");
    assert_eq!(running.len(), 3, "{running:?}");
    assert!(
        running.iter().all(|(_, count)| *count == 1.0),
        "spread puts one running replica on each agent: {running:?}"
    );
    let up = prometheus.query("up{job=\"gossipd\"}");
    assert!(up.len() == 3 && up.iter().all(|(_, v)| *v == 1.0), "{up:?}");

    // Failure detection and state traffic, per agent.
    let acked = prometheus.query("gossipctl_swim_probes_total{outcome=\"acked\"} > 0");
    assert_eq!(
        acked.len(),
        3,
        "every agent's probes are answered: {acked:?}"
    );
    let failed = prometheus.query("gossipctl_swim_verdicts_total{verdict=\"declared_down\"} > 0");
    assert!(
        failed.is_empty(),
        "no agent declared a live one down: {failed:?}"
    );
    let pushed = prometheus.query(
        "sum by (instance) (gossipctl_state_bytes_total{channel=\"dissemination\",direction=\"sent\"}) > 0",
    );
    assert!(
        !pushed.is_empty(),
        "the deploy was pushed as rumours: {pushed:?}"
    );
    // The readiness probe's checks, on the one node that runs the replica.
    let mut checks = Vec::new();
    wait_for(
        "probe checks to be scraped",
        Duration::from_secs(30),
        || {
            checks = prometheus.query(&format!(
            "gossipctl_probe_checks_total{{replica=\"{app}/checked/0\",probe=\"readiness\",result=\"passed\"}} > 0"
        ));
            !checks.is_empty()
        },
    );
    assert_eq!(checks.len(), 1, "{checks:?}");
}
