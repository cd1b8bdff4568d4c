//! `gossipctl simulate`: the Delta Sum experiment, many learners in one process.

use std::path::PathBuf;

use anyhow::Context;
use learner::aggregate::Method;
use learner::backend::BackendKind;
use learner::data::{self, DataError, Partition};
use learner::model::ModelKind;
use learner::simulate::{self, SimulationConfig, summary_markdown};
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
    /// Gossip graph: random (with --degree), ring or full.
    #[arg(long, default_value = "random")]
    topology: Topology,
    /// Average neighbours per node in the random graph.
    #[arg(long, default_value_t = 4.0)]
    degree: f64,
    /// Gossip exchanges per local epoch (each moves messages one hop).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Probability that a message transfer is lost, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Peer messages each node takes in per epoch: a number, or `all`. The reference learner
    /// took one per epoch; Delta Sum sums the deltas of every sender taken in, so taking in all
    /// of N senders scales its step with N.
    #[arg(long, default_value = "1", value_parser = parse_intake)]
    intake: Intake,
    /// What an exchange fetches: `lacking` (every message newer than the node holds, over
    /// --rounds exchanges per epoch) or `intake` (only the messages it takes in, one exchange per
    /// epoch: what the learner workload on a real cluster does).
    #[arg(long, default_value = "lacking")]
    fetch: learner::exchange::Fetch,
    /// iid, or dirichlet:ALPHA for label skew.
    #[arg(long, default_value = "iid")]
    partition: Partition,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Directory of Fashion-MNIST IDX files (default: $GOSSIP_DATA, then the system package).
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
    let topology = match args.topology {
        Topology::Random { .. } => Topology::Random {
            degree: args.degree,
        },
        other => other,
    };
    let configs: Vec<SimulationConfig> = args
        .nodes
        .iter()
        .flat_map(|&nodes| args.methods.iter().map(move |&method| (nodes, method)))
        .map(|(nodes, method)| SimulationConfig {
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
            topology,
            rounds: args.rounds,
            message_loss: args.loss,
            intake: args.intake.0,
            fetch: args.fetch,
            partition: args.partition,
            seed: args.seed,
            eval_samples: args.eval_samples,
            threads: args.threads,
        })
        .collect();
    let bar = progress::bar(configs.len() as u64 * args.epochs, "simulating");
    let mut runs = Vec::with_capacity(configs.len());
    for config in &configs {
        bar.set_message(format!("{} x {} nodes", config.method, config.nodes));
        let run = simulate::run(config, &splits, |_| bar.inc(1));
        let line = format!(
            "{} at {} nodes: {:.0} s",
            config.method,
            config.nodes,
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

fn check(args: &SimulateArgs) -> anyhow::Result<()> {
    let problem = if args.nodes.is_empty() || args.nodes.contains(&0) {
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
