//! What the service forwarder costs: a busybox web server deployed as a `process` replica
//! with the `expose` trait on one real agent, requested directly (its node address) and
//! through the agent's forwarder (the service's address), in the same run, alternating so
//! that a drift in the machine's speed hits both alike:
//!
//! - small requests: one HTTP/1.0 GET of a 20-byte page per connection (as busybox httpd
//!   serves them), latency percentiles and the added latency at each;
//! - a 100 MB transfer: throughput of one GET of a 100 MB file.
//!
//! Run with `scripts/bench.sh forward`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use e2e::Cluster;

const SMALL_REQUESTS: usize = 2000;
const TRANSFERS: usize = 25;
const BIG_MB: usize = 100;

const APP: &str = r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: forward-bench
spec:
  components:
    - name: web
      type: process
      properties:
        command:
          - sh
          - -c
          - >-
            dir=$(mktemp -d) && echo "a small answer here" > "$dir/index.html" &&
            head -c 100M /dev/zero > "$dir/big.bin" &&
            exec busybox httpd -f -p "$GOSSIP_NODE_IP:8080" -h "$dir"
        readinessProbe:
          httpGet: {path: /, port: 8080}
          periodSeconds: 1
      traits:
        - type: expose
          properties: {port: [8080]}
"#;

/// One GET of `path`; the bytes received (head and body).
fn get(address: SocketAddr, path: &str) -> usize {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").expect("request");
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => panic!("read from {address}: {e}"),
        }
    }
    total
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let cluster = Cluster::up_joined(1);
    let file = cluster.write("forward-bench.yaml", APP);
    cluster
        .ctl(&["deploy", &file, "--wait", "--timeout", "60s"])
        .ok();
    let nodes = cluster.ctl(&["get", "nodes", "-o", "json"]).ok().json();
    let node_ip = nodes[0]["nodeIp"].as_str().expect("node IP").to_string();
    let services = cluster.ctl(&["get", "services", "-o", "json"]).ok().json();
    let service_ip = services[0]["address"]
        .as_str()
        .expect("address")
        .to_string();
    let direct: SocketAddr = format!("{node_ip}:8080").parse().unwrap();
    let forwarded: SocketAddr = format!("{service_ip}:8080").parse().unwrap();
    // Both paths answer, and the file is in the page cache before timing starts.
    assert_eq!(get(direct, "/index.html"), get(forwarded, "/index.html"));
    assert!(get(forwarded, "/big.bin") >= BIG_MB << 20);

    let mut latency: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..SMALL_REQUESTS {
        for (i, address) in [direct, forwarded].into_iter().enumerate() {
            let start = Instant::now();
            get(address, "/index.html");
            latency[i].push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mut throughput: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..TRANSFERS {
        for (i, address) in [direct, forwarded].into_iter().enumerate() {
            let start = Instant::now();
            let bytes = get(address, "/big.bin");
            let seconds = start.elapsed().as_secs_f64();
            throughput[i].push(bytes as f64 / seconds / 1e6);
            eprintln!(
                "transfer {round}: {}: {:.0} MB/s",
                ["direct", "forwarded"][i],
                bytes as f64 / seconds / 1e6
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for samples in latency.iter_mut().chain(throughput.iter_mut()) {
        samples.sort_by(f64::total_cmp);
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "service forwarder vs direct, one agent, busybox httpd replica, loopback, {cores} cores"
    );
    println!("| small GET ({SMALL_REQUESTS} each) | p50 (ms) | p90 (ms) | p99 (ms) |");
    println!("|---|---|---|---|");
    for (i, label) in ["direct", "forwarded"].iter().enumerate() {
        let s = &latency[i];
        println!(
            "| {label} | {:.3} | {:.3} | {:.3} |",
            percentile(s, 0.5),
            percentile(s, 0.9),
            percentile(s, 0.99)
        );
    }
    println!(
        "| added by the forwarder | {:.3} | {:.3} | {:.3} |",
        percentile(&latency[1], 0.5) - percentile(&latency[0], 0.5),
        percentile(&latency[1], 0.9) - percentile(&latency[0], 0.9),
        percentile(&latency[1], 0.99) - percentile(&latency[0], 0.99)
    );
    let median = |s: &[f64]| s[s.len() / 2];
    println!();
    println!("| {BIG_MB} MB GET ({TRANSFERS} each) | min (MB/s) | median (MB/s) | max (MB/s) |");
    println!("|---|---|---|---|");
    for (i, label) in ["direct", "forwarded"].iter().enumerate() {
        let s = &throughput[i];
        println!(
            "| {label} | {:.0} | {:.0} | {:.0} |",
            s[0],
            median(s),
            s[s.len() - 1]
        );
    }
    println!(
        "forwarded / direct throughput (medians): {:.2}x",
        median(&throughput[1]) / median(&throughput[0])
    );
}
