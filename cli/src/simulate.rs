//! `gossipctl simulate`: the Delta Sum experiment, many learners in one process.

use std::path::PathBuf;

use anyhow::Context;
use learner::aggregate::Method;
use learner::backend::BackendKind;
use learner::data::{self, DataError, Partition};
use learner::model::ModelKind;
use learner::simulate::{self, EvalMode, Protocol, SimulationConfig, Timing, summary_markdown};
use learner::topology::Topology;
use learner::trainer::TrainConfig;

use crate::failure;
use crate::progress;

/// Flags of `gossipctl simulate`; defaults follow the Delta Sum paper's protocol.
#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// Network sizes to run, e.g. 10,25,50.
    #[arg(long, value_delimiter = ',', default_value = "10,25,50")]
    nodes: Vec<usize>,
    /// Aggregation rules to compare.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "delta-sum,average,variance-corrected"
    )]
    methods: Vec<Method>,
    #[arg(long, default_value = "cnn")]
    model: ModelKind,
    #[arg(long, default_value_t = 200)]
    epochs: u64,
    /// Aggregate every this many local epochs.
    #[arg(long, default_value_t = 10)]
    window: u64,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// `paper`: each node hears only its own neighbours, drains everything new after every
    /// epoch, and nodes run free in virtual time (the authors' protocol). `lockstep`: the same
    /// exchange in lockstep epochs. `relay`: lockstep epochs with every node's latest message
    /// relayed over --rounds hops per epoch (what earlier versions simulated).
    #[arg(long, default_value = "paper")]
    protocol: Protocol,
    /// Gossip graph: geometric (Flocky's latency-bounded discovery on a 2-D map), random (with
    /// --degree), ring or full.
    #[arg(long, default_value = "geometric")]
    topology: Topology,
    /// The authors' topology file (JSON list of nodes with pings); --nodes must match it.
    #[arg(long, conflicts_with = "topology")]
    topology_file: Option<PathBuf>,
    /// Average neighbours per node in the random graph.
    #[arg(long, default_value_t = 4.0)]
    degree: f64,
    /// Geometric graphs: pings are distance / 20 times U(1 - s, 1 + s).
    #[arg(long, default_value_t = Topology::DEFAULT_PING_SPREAD)]
    ping_spread: f64,
    /// Relay: gossip exchanges per local epoch (each moves messages one hop).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Probability that a message transfer is lost, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Peer messages each node takes in per epoch: a number, or `all` (default for paper and
    /// lockstep; relay defaults to 1). Delta Sum sums the deltas of every sender taken in.
    #[arg(long, value_parser = parse_intake)]
    intake: Option<Intake>,
    /// Relay: what an exchange fetches: `lacking` (every message newer than the node holds,
    /// over --rounds exchanges per epoch) or `intake` (only the messages it takes in).
    #[arg(long, default_value = "lacking")]
    fetch: learner::exchange::Fetch,
    /// iid, or dirichlet:ALPHA for label skew.
    #[arg(long, default_value = "iid")]
    partition: Partition,
    /// Seeds to run every cell with, e.g. 1,2,3,4,5; each drives the topology, partition,
    /// initial weights, jitter and delays. Summaries give mean, spread and intervals over them.
    #[arg(long, value_delimiter = ',', default_value = "1", alias = "seed")]
    seeds: Vec<u64>,
    /// `windows`: evaluate after every window and right after the last epoch's training.
    /// `paper`: the full test set after every epoch and after every aggregation, as the
    /// reference did (slower).
    #[arg(long, default_value = "windows")]
    eval: EvalMode,
    /// Paper protocol clock: seconds of training per local training example.
    #[arg(long, default_value_t = Timing::default().train_seconds_per_sample)]
    train_seconds_per_sample: f64,
    /// Paper protocol clock: seconds one evaluation takes.
    #[arg(long, default_value_t = Timing::default().eval_seconds)]
    eval_seconds: f64,
    /// Paper protocol clock: seconds a node sleeps after each epoch.
    #[arg(long, default_value_t = Timing::default().sleep_seconds)]
    sleep_seconds: f64,
    /// Paper protocol clock: each epoch lasts its nominal time times U(1 - j, 1 + j).
    #[arg(long, default_value_t = Timing::default().jitter)]
    jitter: f64,
    /// Paper protocol clock: memberlist's push-pull interval in seconds (default 1, 2 above 32
    /// nodes).
    #[arg(long)]
    push_pull_seconds: Option<f64>,
    /// Paper protocol clock: link bandwidth for a message's transfer time, in Mbit/s.
    #[arg(long, default_value_t = 1000.0)]
    bandwidth_mbps: f64,
    /// Directory of Fashion-MNIST IDX files (default: $GOSSIP_DATA if set, else the system package).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Use only the first N training examples (quick runs).
    #[arg(long)]
    train_samples: Option<usize>,
    /// Evaluate intermediate windows on the first N test examples; the final one uses all.
    #[arg(long)]
    eval_samples: Option<usize>,
    #[arg(long, default_value = "flex")]
    backend: BackendKind,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Skip simulating: summarise and plot these metrics.csv files of earlier runs instead.
    #[arg(long, value_delimiter = ',')]
    from_metrics: Vec<PathBuf>,
    /// Where metrics.csv, summary.csv, summary.md and the plots go.
    #[arg(long, default_value = "simulation")]
    out: PathBuf,
}

pub fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    check(&args)?;
    if !args.from_metrics.is_empty() {
        let runs = simulate::read_metrics(&args.from_metrics)
            .map_err(|error| failure::invalid(error.to_string()))?;
        return report(&args, &runs);
    }
    let mut splits = data::load(args.data.as_deref()).map_err(|error| match error {
        DataError::NotFound { .. } => failure::invalid(error.to_string()),
        other => anyhow::Error::new(other),
    })?;
    if let Some(limit) = args.train_samples.filter(|&n| n < splits.train.len()) {
        splits.train = splits.train.select(&(0..limit).collect::<Vec<_>>());
    }
    let topology = topology(&args);
    let timing = Timing {
        train_seconds_per_sample: args.train_seconds_per_sample,
        eval_seconds: args.eval_seconds,
        sleep_seconds: args.sleep_seconds,
        jitter: args.jitter,
        push_pull_seconds: args.push_pull_seconds,
        bandwidth_bits_per_second: args.bandwidth_mbps * 1e6,
        ..Timing::default()
    };
    let intake = match (args.intake, args.protocol) {
        (Some(intake), _) => intake.0,
        (None, Protocol::Relay) => Some(1),
        (None, _) => None,
    };
    let mut cells: Vec<(usize, Method, u64)> = Vec::new();
    for &nodes in &args.nodes {
        for &method in &args.methods {
            for &seed in &args.seeds {
                cells.push((nodes, method, seed));
            }
        }
    }
    let configs: Vec<SimulationConfig> = cells
        .into_iter()
        .map(|(nodes, method, seed)| SimulationConfig {
            nodes,
            method,
            train: TrainConfig {
                model: args.model,
                backend: args.backend,
                batch_size: args.batch_size,
                learning_rate: args.lr,
            },
            epochs: args.epochs,
            window: args.window,
            protocol: args.protocol,
            topology: topology.clone(),
            timing,
            rounds: args.rounds,
            message_loss: args.loss,
            intake,
            fetch: args.fetch,
            partition: args.partition,
            seed,
            eval: args.eval,
            eval_samples: args.eval_samples,
            threads: args.threads,
        })
        .collect();
    let bar = progress::bar(configs.len() as u64 * args.epochs, "simulating");
    let mut runs = Vec::with_capacity(configs.len());
    for config in &configs {
        bar.set_message(format!(
            "{} x {} nodes, seed {}",
            config.method, config.nodes, config.seed
        ));
        let run = simulate::run(config, &splits, |_| bar.inc(1))
            .map_err(|error| failure::invalid(error.to_string()))?;
        let line = format!(
            "{} at {} nodes, seed {}: {:.0} s",
            config.method,
            config.nodes,
            config.seed,
            run.wall.as_secs_f64()
        );
        // A hidden bar (stderr not a terminal, e.g. a log file) prints nothing: say it plainly.
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
        runs.push(run);
    }
    bar.finish_and_clear();
    report(&args, &runs)
}

fn report(args: &SimulateArgs, runs: &[simulate::RunResult]) -> anyhow::Result<()> {
    let summary = simulate::write_report(&args.out, runs)
        .with_context(|| format!("writing results to {}", args.out.display()))?;
    print!("{}", summary_markdown(&summary));
    println!(
        "\nmetrics.csv, summary.csv, summary.md and plots written to {}",
        args.out.display()
    );
    Ok(())
}

/// Messages taken in per epoch; `None` for all.
#[derive(Debug, Clone, Copy)]
struct Intake(Option<usize>);

fn parse_intake(text: &str) -> Result<Intake, String> {
    match text {
        "all" => Ok(Intake(None)),
        number => match number.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Intake(Some(n))),
            _ => Err(format!("`{text}`: expected a positive number or `all`")),
        },
    }
}

/// The gossip graph the flags describe.
fn topology(args: &SimulateArgs) -> Topology {
    match (&args.topology_file, &args.topology) {
        (Some(path), _) => Topology::File(path.clone()),
        (None, Topology::Random { .. }) => Topology::Random {
            degree: args.degree,
        },
        (None, Topology::Geometric { .. }) => Topology::Geometric {
            ping_spread: args.ping_spread,
        },
        (None, other) => other.clone(),
    }
}

fn check(args: &SimulateArgs) -> anyhow::Result<()> {
    if let (Some(_), true) = (&args.topology_file, args.from_metrics.is_empty()) {
        // A file that cannot be read, or that holds another number of nodes, fails now,
        // before any training.
        for &nodes in &args.nodes {
            learner::topology::Graph::build(&topology(args), nodes, 0)
                .map_err(|error| failure::invalid(format!("--topology-file: {error}")))?;
        }
    }
    let timing_ok = [
        args.train_seconds_per_sample,
        args.eval_seconds,
        args.sleep_seconds,
    ]
    .iter()
    .all(|v| v.is_finite() && *v >= 0.0);
    let problem = if !timing_ok {
        Some(
            "--train-seconds-per-sample, --eval-seconds and --sleep-seconds: expected numbers of at least 0",
        )
    } else if !(0.0..1.0).contains(&args.jitter) {
        Some("--jitter: expected a fraction from 0 up to (not including) 1")
    } else if args
        .push_pull_seconds
        .is_some_and(|p| !(p.is_finite() && p >= 0.0))
    {
        Some("--push-pull-seconds: expected a number of seconds of at least 0")
    } else if !(args.bandwidth_mbps.is_finite() && args.bandwidth_mbps > 0.0) {
        Some("--bandwidth-mbps: expected a positive number")
    } else if !(0.0..1.0).contains(&args.ping_spread) {
        Some("--ping-spread: expected a fraction from 0 up to (not including) 1")
    } else if args.seeds.is_empty() {
        Some("--seeds: expected one or more seeds")
    } else if args.nodes.is_empty() || args.nodes.contains(&0) {
        Some("--nodes: expected one or more sizes of at least 1")
    } else if args.methods.is_empty() {
        Some("--methods: expected at least one aggregation rule")
    } else if args.epochs == 0 || args.window == 0 || args.batch_size == 0 {
        Some("--epochs, --window and --batch-size must be at least 1")
    } else if !(0.0..1.0).contains(&args.loss) {
        Some("--loss: expected a probability from 0 up to (not including) 1")
    } else if !(args.lr > 0.0 && args.lr.is_finite()) {
        Some("--lr: expected a positive number")
    } else if args.degree < 1.0 {
        Some("--degree: expected at least 1")
    } else {
        None
    };
    match problem {
        Some(message) => Err(failure::invalid(message)),
        None => Ok(()),
    }
}
