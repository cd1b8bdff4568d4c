//! Prometheus metrics (`gossipd --metrics PORT|IP:PORT`): `GET /metrics` answers in the
//! OpenMetrics text format (the `prometheus-client` crate). Most values are read from the
//! agent's own view when scraped (members, replicas, replicated entries, services, learners),
//! so nothing is kept twice; the reconcile loop's durations are a histogram it records into.
//! Names are listed in the README ("Metrics").

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::cluster::counters::{Channel, ClusterCounters};
use crate::node::{Node, VERSION};
use crate::runtime::probe::Kind;

type Labels = Vec<(String, String)>;

/// What the agent's loops record as they go.
#[derive(Debug)]
pub struct Instruments {
    /// How long each reconcile pass took.
    pub reconcile_seconds: Histogram,
}

impl Default for Instruments {
    fn default() -> Self {
        Instruments {
            // 100 us to about 3 s.
            reconcile_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        }
    }
}

/// Reads the agent's view at each scrape.
struct Scrape {
    node: Weak<Node>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn put(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let metric_encoder = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(metric_encoder)
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(node) = self.node.upgrade() else {
            return Ok(());
        };
        let view = node.view();
        let me = node.name();

        let info = Family::<Labels, Gauge>::default();
        info.get_or_create(&labels(&[("node", me), ("version", VERSION)]))
            .set(1);
        put(
            &mut encoder,
            "gossipctl_agent",
            "This agent: its node name and version",
            &info,
        )?;

        let members = Family::<Labels, Gauge>::default();
        for (state, _) in view.nodes.values() {
            members
                .get_or_create(&labels(&[("state", &state.to_string())]))
                .inc();
        }
        put(
            &mut encoder,
            "gossipctl_members",
            "Nodes this agent knows of, by the state it sees them in",
            &members,
        )?;

        let replicas = Family::<Labels, Gauge>::default();
        let restarts = Family::<Labels, Gauge>::default();
        let epoch = Family::<Labels, Gauge>::default();
        let accuracy = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let learner_bytes = Family::<Labels, Counter>::default();
        for record in view.records.values().filter(|r| r.node == me) {
            let kind = view
                .component(&record.id)
                .map_or("unknown", |c| c.workload.type_name());
            replicas
                .get_or_create(&labels(&[
                    ("type", kind),
                    ("state", &record.state.to_string()),
                ]))
                .inc();
            let replica = record.id.to_string();
            restarts
                .get_or_create(&labels(&[("replica", &replica)]))
                .set(i64::from(record.restarts));
            if let Some(progress) = &record.learner {
                let id = labels(&[("replica", &replica)]);
                epoch.get_or_create(&id).set(progress.epoch as i64);
                accuracy.get_or_create(&id).set(progress.test_accuracy);
                for (direction, bytes) in [
                    ("sent", progress.bytes_sent),
                    ("received", progress.bytes_received),
                ] {
                    learner_bytes
                        .get_or_create(&labels(&[("replica", &replica), ("direction", direction)]))
                        .inc_by(bytes);
                }
            }
        }
        put(
            &mut encoder,
            "gossipctl_replicas",
            "This node's replicas, by workload type and state",
            &replicas,
        )?;
        put(
            &mut encoder,
            "gossipctl_replica_restarts",
            "Restarts of each of this node's replicas",
            &restarts,
        )?;
        put(
            &mut encoder,
            "gossipctl_learner_epoch",
            "The latest epoch each of this node's learner replicas finished",
            &epoch,
        )?;
        put(
            &mut encoder,
            "gossipctl_learner_accuracy",
            "Test-set accuracy of each of this node's learner replicas after its latest epoch",
            &accuracy,
        )?;
        put(
            &mut encoder,
            "gossipctl_learner_bytes",
            "Model-exchange bytes of each of this node's learner replicas",
            &learner_bytes,
        )?;

        let entries = Family::<Labels, Gauge>::default();
        let sizes = node.state.read(|r| {
            [
                ("apps", r.apps.len()),
                ("nodes", r.nodes.len()),
                ("workloads", r.workloads.len()),
                ("revocations", r.revocations.len()),
                ("activity", r.activity.len()),
                ("maintenance", r.maintenance.len()),
            ]
        });
        for (map, size) in sizes {
            entries
                .get_or_create(&labels(&[("map", map)]))
                .set(size as i64);
        }
        put(
            &mut encoder,
            "gossipctl_replicated_entries",
            "Entries in this agent's replicated state, by map",
            &entries,
        )?;

        let counters = &node.peers.counters;
        let membership = Family::<Labels, Counter>::default();
        let state = Family::<Labels, Counter>::default();
        for (i, direction) in ["sent", "received"].into_iter().enumerate() {
            membership
                .get_or_create(&labels(&[("direction", direction)]))
                .inc_by(ClusterCounters::read(&counters.membership_bytes[i]));
            for channel in Channel::ALL {
                state
                    .get_or_create(&labels(&[
                        ("channel", channel.name()),
                        ("direction", direction),
                    ]))
                    .inc_by(ClusterCounters::read(&counters.state_bytes(channel)[i]));
            }
        }
        put(
            &mut encoder,
            "gossipctl_membership_bytes",
            "SWIM membership datagram bytes",
            &membership,
        )?;
        put(
            &mut encoder,
            "gossipctl_state_bytes",
            "Replicated-state bytes of the exchanges this agent starts: rumour pushes (dissemination) and repair rounds (anti_entropy); sent: requests, received: answers",
            &state,
        )?;
        let probes = Family::<Labels, Counter>::default();
        for (outcome, counter) in [
            ("acked", &counters.acks),
            ("acked_indirectly", &counters.indirect_acks),
            ("failed", &counters.probes_failed),
        ] {
            probes
                .get_or_create(&labels(&[("outcome", outcome)]))
                .inc_by(ClusterCounters::read(counter));
        }
        put(
            &mut encoder,
            "gossipctl_swim_probes",
            "SWIM probe outcomes: an ack to a direct probe, an ack relayed by another member (indirect probe), or no ack in the probe period",
            &probes,
        )?;
        let verdicts = Family::<Labels, Counter>::default();
        for (verdict, counter) in [
            ("suspected", &counters.suspected),
            ("declared_down", &counters.declared_down),
        ] {
            verdicts
                .get_or_create(&labels(&[("verdict", verdict)]))
                .inc_by(ClusterCounters::read(counter));
        }
        put(
            &mut encoder,
            "gossipctl_swim_verdicts",
            "Members this agent's own probes made it suspect, and suspects its own timer declared down",
            &verdicts,
        )?;
        let checks = Family::<Labels, Counter>::default();
        for (id, results) in node.probe_checks() {
            let replica = id.to_string();
            for kind in Kind::ALL {
                for (index, result) in ["passed", "failed"].into_iter().enumerate() {
                    checks
                        .get_or_create(&labels(&[
                            ("replica", &replica),
                            ("probe", kind.name()),
                            ("result", result),
                        ]))
                        .inc_by(results[kind as usize][index]);
                }
            }
        }
        put(
            &mut encoder,
            "gossipctl_probe_checks",
            "Health-probe checks this node's replicas ran, by probe and result",
            &checks,
        )?;
        let (sent, received) = node.peers.connection_bytes();
        let connections = Family::<Labels, Gauge>::default();
        for (direction, bytes) in [("sent", sent), ("received", received)] {
            connections
                .get_or_create(&labels(&[("direction", direction)]))
                .set(bytes as i64);
        }
        put(
            &mut encoder,
            "gossipctl_peer_connection_bytes",
            "UDP bytes on the open QUIC connections to peers: membership, dissemination, anti-entropy, learners",
            &connections,
        )?;

        let forwarded = Family::<Labels, Counter>::default();
        let failed = Family::<Labels, Counter>::default();
        let bytes = Family::<Labels, Counter>::default();
        for (service, carried, refused, bytes_in, bytes_out) in node.services.traffic.snapshot() {
            let id = labels(&[("service", &service)]);
            forwarded.get_or_create(&id).inc_by(carried);
            failed.get_or_create(&id).inc_by(refused);
            for (direction, count) in [("in", bytes_in), ("out", bytes_out)] {
                bytes
                    .get_or_create(&labels(&[("service", &service), ("direction", direction)]))
                    .inc_by(count);
            }
        }
        put(
            &mut encoder,
            "gossipctl_service_connections",
            "Connections (UDP: flows) this agent forwarded, by service port",
            &forwarded,
        )?;
        put(
            &mut encoder,
            "gossipctl_service_failed_connections",
            "Connections this agent could not forward: no ready replica accepted",
            &failed,
        )?;
        put(
            &mut encoder,
            "gossipctl_service_bytes",
            "Bytes this agent forwarded, by service port; in: from clients",
            &bytes,
        )?;
        put(
            &mut encoder,
            "gossipctl_reconcile_duration_seconds",
            "How long each reconcile pass took",
            &node.instruments.reconcile_seconds,
        )?;
        Ok(())
    }
}

/// The metrics page, as Prometheus scrapes it.
pub fn render(node: &Arc<Node>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        node: Arc::downgrade(node),
    }));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a string cannot fail");
    text
}

/// Serves `GET /metrics` on `address` until the process exits.
pub async fn serve(address: SocketAddr, node: Arc<Node>) -> std::io::Result<()> {
    let listener = TcpListener::bind(address).await?;
    tracing::info!(%address, "metrics up");
    let node = Arc::downgrade(&node);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("metrics accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let node = node.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                let node = node.upgrade();
                async move {
                    let response = match (request.uri().path(), node) {
                        ("/metrics", Some(node)) => {
                            let mut response = Response::new(Full::new(Bytes::from(render(&node))));
                            response.headers_mut().insert(
                                hyper::header::CONTENT_TYPE,
                                hyper::header::HeaderValue::from_static(
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                ),
                            );
                            response
                        }
                        _ => {
                            let mut response =
                                Response::new(Full::new(Bytes::from_static(b"see /metrics\n")));
                            *response.status_mut() = StatusCode::NOT_FOUND;
                            response
                        }
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
