//! `gossipd`: the node agent. Parses flags, wires the pieces of the `agent` library together,
//! and runs until SIGTERM or SIGINT, when it stops its replicas before exiting.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent::cluster::gossip::Gossip;
use agent::cluster::identity::{self, Credentials, is_dns_label};
use agent::cluster::membership::{Membership, NodeId, Timings};
use agent::cluster::replication::ReplicatedState;
use agent::cluster::tls;
use agent::cluster::transport::Peers;
use agent::logs::{LogStore, now_ms};
use agent::node::Node;
use agent::runtime::Runtimes;
use agent::runtime::container::ContainerRuntime;
use agent::runtime::learner::LearnerRuntime;
use agent::runtime::{capacity, orphans};
use agent::services::Services;
use agent::services::network::{Network, ServiceNet};
use agent::store::Store;
use agent::trust::authority::Authority;
use agent::trust::seal::Sealer;
use agent::{server, sync};
use anyhow::{Context, bail};
use clap::Parser;
use orchestrator::plan::NodeInfo;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, mpsc};

#[derive(Parser, Debug)]
#[command(name = "gossipd", version, about = "The gossipctl node agent")]
struct Args {
    /// This node's name; must match the name in its certificate.
    #[arg(long)]
    name: String,
    /// Where the agent keeps its state (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// UDP address for QUIC (the API and, later, gossip).
    #[arg(long, default_value = "0.0.0.0:7946")]
    listen: SocketAddr,
    /// Directory with this node's bundle: ca.crt, node.crt, node.key
    /// (from `gossipctl cluster add-node NAME`). Defaults to DATA_DIR/certs.
    #[arg(long)]
    certs: Option<PathBuf>,
    /// The address other agents reach this one at (default: --listen, which must then name
    /// a specific IP).
    #[arg(long)]
    advertise: Option<SocketAddr>,
    /// Another agent's address to join the cluster through; repeatable. Agents keep asking
    /// their seeds while they know no one, so seeds may start in any order.
    #[arg(long = "join")]
    joins: Vec<SocketAddr>,
    /// A node label, KEY=VALUE; repeatable. Placement intents match on these.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// How often each agent probes a random member.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    probe_period: Duration,
    /// How long a probe waits for an answer before asking others to probe indirectly.
    #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
    probe_timeout: Duration,
    /// How long a suspected member has to refute before it is declared dead, once another
    /// member confirms the suspicion; six times as long while nobody does (Lifeguard).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    suspect_timeout: Duration,
    /// The `gossip-learner` program that runs learner replicas. Defaults to the one beside
    /// this agent's executable; without one, this node does not offer the learner runtime.
    #[arg(long)]
    learner_program: Option<PathBuf>,
    /// Do not offer the container runtime, even when a Docker engine answers (at
    /// `DOCKER_HOST`, else the local socket).
    #[arg(long)]
    no_containers: bool,
    /// This node's own address, where process replicas of a service listen
    /// (`GOSSIP_NODE_IP`) and `NodePort` services are served (default: the IP of
    /// --advertise).
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// The network of service addresses: each service has one of them on every node
    /// (default: a loopback network, reachable from this node only, as a Kubernetes
    /// ClusterIP is reachable inside the cluster only). Its second address answers names.
    #[arg(long, default_value = "127.64.0.0/16")]
    service_cidr: ServiceNet,
    /// Where to answer names (`COMPONENT.APP.svc.gossip`), UDP and TCP (default: the service
    /// network's second address, port 53); `off` to answer none.
    #[arg(long)]
    dns: Option<String>,
    /// Serve the HTTP gateway (`gateway` and `ingress` traits) here: PORT (on --node-ip) or
    /// IP:PORT. Off by default.
    #[arg(long, env = "GOSSIPD_HTTP_GATEWAY")]
    http_gateway: Option<String>,
    /// Serve Prometheus metrics at /metrics here: PORT (on --node-ip) or IP:PORT. Off by
    /// default.
    #[arg(long, env = "GOSSIPD_METRICS")]
    metrics: Option<String>,
    /// For benchmarks only: seal nothing and check no seals (applications are committed
    /// unsigned, as before they were signed), to measure what signing costs. Every agent of
    /// the cluster must run with it, and the cluster is then open to any node key: never use it
    /// in production.
    #[arg(long, hide = true, env = "GOSSIPD_UNSIGNED_FOR_BENCHMARKS")]
    unsigned_for_benchmarks: bool,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?}: expected KEY=VALUE")),
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quinn=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gossipd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if !is_dns_label(&args.name) {
        bail!("--name {:?}: expected a DNS-1123 label", args.name);
    }
    let advertise = args.advertise.unwrap_or(args.listen);
    if advertise.ip().is_unspecified() {
        bail!(
            "--listen {} names no specific address: pass --advertise IP:PORT",
            args.listen
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let certs = args.certs.unwrap_or_else(|| args.data_dir.join("certs"));
    let creds = Credentials::load_node(&certs).context("loading the node certificate bundle")?;
    let store = Store::open(&args.data_dir)
        .with_context(|| format!("opening the store in {}", args.data_dir.display()))?;
    let swept = orphans::sweep(&store, &args.name)?;
    if swept > 0 {
        tracing::info!(swept, "killed replicas left by a previous run");
    }
    // Application writes must carry an admin's seal checked against the cluster CA, on every
    // path into the replica, this store included.
    // This node's own record is sealed with its key; others' must carry theirs.
    // Revoked certificates are refused by the replica (seals) and by TLS (handshakes) alike.
    let authority = Authority::new(creds.ca.clone());
    let revoked = authority.revoked().clone();
    let sealer = Sealer::new(&creds).context("the node key cannot sign")?;
    let (authority, sealer) = if args.unsigned_for_benchmarks {
        tracing::warn!("--unsigned-for-benchmarks: this agent seals nothing and checks no seals");
        (None, None)
    } else {
        (Some(authority), Some(sealer))
    };
    let state = ReplicatedState::open(store.db(), &args.name, now_ms(), authority, sealer)?;
    // Asking the container engine can take a while; do it before joining, so that peers
    // never wait on an agent that gossips but does not serve yet.
    let container = if args.no_containers {
        None
    } else {
        ContainerRuntime::detect(&args.name).await
    };

    let mut endpoint = quinn::Endpoint::server(tls::server_config(&creds, &revoked)?, args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    endpoint.set_default_client_config(tls::client_config(&creds, &revoked)?);
    let (inbound_tx, inbound) = mpsc::channel(1024);
    let (peers, dialled) = Peers::new(endpoint.clone(), inbound_tx);
    let wake = Arc::new(Notify::new());
    // A restarted agent must win over its previous identity: start from the wall clock.
    let incarnation = now_ms();
    let me = NodeId {
        name: args.name.clone(),
        addr: advertise,
        incarnation,
    };
    let timings = Timings {
        probe_period: args.probe_period,
        probe_rtt: args.probe_timeout,
        suspect_to_down: args.suspect_timeout,
        ..Timings::default()
    };
    let membership = Membership::new(me, timings, incarnation);
    let gossip = Gossip::spawn(
        membership,
        peers.clone(),
        inbound,
        wake.clone(),
        state.fingerprint_handle(),
    );

    let learners = args.data_dir.join("learners");
    let learner = match args.learner_program {
        Some(program) => {
            anyhow::ensure!(
                program.is_file(),
                "--learner-program {}: no such file",
                program.display()
            );
            Some(LearnerRuntime {
                program,
                state_root: learners,
            })
        }
        None => LearnerRuntime::beside_agent(learners),
    };
    let runtimes = Runtimes { learner, container };
    let info = NodeInfo {
        name: args.name.clone(),
        labels: args.labels.into_iter().collect::<BTreeMap<_, _>>(),
        capacity: capacity::detect(),
        runtimes: runtimes.names(),
        cordoned: false,
    };
    let network = Network {
        node_ip: args.node_ip.unwrap_or(advertise.ip()),
        service_net: args.service_cidr,
    };
    let names = match args.dns.as_deref() {
        None => Some(agent::services::dns::default_address(&network.service_net)),
        Some("off") => None,
        Some(text) => Some(
            text.parse()
                .with_context(|| format!("--dns {text:?}: expected IP:PORT or off"))?,
        ),
    };
    let gateway = port_or_address("--http-gateway", args.http_gateway.as_deref(), &network)?;
    let metrics = port_or_address("--metrics", args.metrics.as_deref(), &network)?;
    let services = Services::new(network, names, gateway);
    services.spawn();
    let node = Node::new(
        info,
        advertise,
        store,
        state,
        LogStore::new(),
        peers,
        gossip,
        wake,
        runtimes,
        services,
    );
    if let Some(address) = metrics {
        let node = node.clone();
        tokio::spawn(async move {
            if let Err(e) = agent::metrics::serve(address, node).await {
                tracing::error!(%address, "cannot serve metrics: {e}");
            }
        });
    }
    // Serve before anyone can learn of us: a member that hears of this agent dials it at once.
    let api = tokio::spawn(server::serve(endpoint.clone(), dialled, node.clone()));
    node.publish_self(false).await?;
    node.gossip.join(args.joins).await;
    tracing::info!(node = %args.name, %advertise, "agent up");

    let reconciler = tokio::spawn(node.clone().run_reconciler());
    let anti_entropy = tokio::spawn(sync::run(node.clone()));
    let spread = tokio::spawn(sync::spread(node.clone()));
    let sweeper = tokio::spawn(node.clone().sweep_containers());
    let expiry = identity::expires_at(creds.chain[0].as_ref());
    tokio::spawn(warn_before_expiry(args.name.clone(), expiry));

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    tracing::info!("leaving the cluster and stopping replicas");
    reconciler.abort();
    anti_entropy.abort();
    spread.abort();
    sweeper.abort();
    if let Err(e) = node.publish_self(true).await {
        tracing::warn!("cannot record the departure: {e}");
    }
    node.gossip.leave().await;
    node.stop_all().await;
    endpoint.close(0u32.into(), b"agent shutting down");
    api.abort();
    endpoint.wait_idle().await;
    Ok(())
}

/// An optional listening address given as PORT (on the node's address) or IP:PORT; `off` or
/// nothing for none.
fn port_or_address(
    flag: &str,
    text: Option<&str>,
    network: &Network,
) -> anyhow::Result<Option<SocketAddr>> {
    match text {
        None | Some("" | "off") => Ok(None),
        Some(text) => match text.parse::<u16>() {
            Ok(port) => Ok(Some(SocketAddr::new(network.node_ip, port))),
            Err(_) => text
                .parse()
                .map(Some)
                .with_context(|| format!("{flag} {text:?}: expected PORT or IP:PORT")),
        },
    }
}

/// Logs a warning about this node's certificate at start and twice a day while it is within
/// 30 days of expiring (see [`agent::trust::expiry`]).
async fn warn_before_expiry(name: String, expires_at: Option<i64>) {
    let Some(expires_at) = expires_at else {
        tracing::warn!("this node's certificate carries no readable expiry");
        return;
    };
    loop {
        let now = now_ms() as i64 / 1000;
        if let Some(warning) = agent::trust::expiry::warning(&name, expires_at, now) {
            tracing::warn!("{warning}");
        }
        tokio::time::sleep(Duration::from_secs(12 * 3600)).await;
    }
}
