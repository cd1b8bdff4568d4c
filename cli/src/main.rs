//! `gossipctl`: the operator's command line for a gossipctl cluster.

mod cluster;
mod commands;
mod config;
mod failure;
mod local;
mod output;
mod progress;
mod rollout;
mod simulate;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use agent::maintenance::Mode;

use crate::commands::Resource;
use crate::output::Format;

/// Where `up`, `down` and `cluster` keep a cluster's files unless told otherwise.
const DEFAULT_CLUSTER_DIR: &str = ".gossipctl";

#[derive(Parser, Debug)]
#[command(
    name = "gossipctl",
    version,
    about = "Drive a gossipctl cluster: deploy OAM applications, inspect nodes and workloads"
)]
struct Cli {
    /// The cluster config (default: $GOSSIPCTL_CONFIG, then the user's config dir).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create cluster credentials.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Start a local development cluster of N agents on loopback; returns once they form one
    /// cluster (an agent sees every other alive).
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value = DEFAULT_CLUSTER_DIR)]
        dir: PathBuf,
    },
    /// Stop the local development cluster's agents (their data stays).
    Down {
        #[arg(long, default_value = DEFAULT_CLUSTER_DIR)]
        dir: PathBuf,
    },
    /// Check an application file offline.
    Validate { file: PathBuf },
    /// Create or update an application.
    Deploy {
        file: PathBuf,
        /// Wait until every replica runs.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Delete an application.
    Delete {
        #[command(subcommand)]
        what: DeleteCommand,
    },
    /// List nodes, applications, workloads or events.
    Get {
        resource: Resource,
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Format,
        /// Keep printing as things change (events: each new one as it arrives).
        #[arg(short, long)]
        watch: bool,
        /// Only this application's (events).
        #[arg(long)]
        app: Option<String>,
    },
    /// Take no new replicas on NODE; the ones it runs stay (admin only).
    Cordon { node: String },
    /// Cordon NODE, then move its replicas away one at a time, each only once its
    /// replacement elsewhere is ready (admin only).
    Drain {
        node: String,
        /// Wait until the node runs nothing.
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Make NODE schedulable again (admin only); nothing moves back by itself.
    Uncordon { node: String },
    /// Follow, list and undo an application's rolling updates.
    Rollout {
        #[command(subcommand)]
        what: RolloutCommand,
    },
    /// Show one application in detail.
    Describe {
        #[command(subcommand)]
        what: DescribeCommand,
    },
    /// Print a workload's output: APP/COMPONENT/REPLICA, or APP/COMPONENT for all replicas.
    Logs {
        workload: String,
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
    },
    /// Run the gossip-learning experiment in one process (Delta Sum vs baselines).
    Simulate(Box<simulate::SimulateArgs>),
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Create the cluster CA, admin credentials and the CLI config in DIR.
    Init {
        #[arg(long, default_value = DEFAULT_CLUSTER_DIR)]
        dir: PathBuf,
        /// A name for the cluster, written into its CA certificate.
        #[arg(long, default_value = "gossipctl")]
        name: String,
        /// An agent's address (IP:PORT) for the CLI config to list; repeatable.
        #[arg(long = "agent")]
        agents: Vec<std::net::SocketAddr>,
    },
    /// Issue a node certificate bundle under DIR/NAME/certs (a fresh certificate, with a new
    /// serial, when NAME had one before).
    AddNode {
        name: String,
        #[arg(long, default_value = DEFAULT_CLUSTER_DIR)]
        dir: PathBuf,
        /// How long the certificate is valid (agents warn 30 days before it expires).
        #[arg(long, default_value = "365days", value_parser = humantime::parse_duration)]
        valid_for: Duration,
    },
    /// Issue another admin credential under DIR/NAME (admin.crt, admin.key, ca.crt and a
    /// config.yaml to point the CLI at).
    AddAdmin {
        name: String,
        #[arg(long, default_value = DEFAULT_CLUSTER_DIR)]
        dir: PathBuf,
        /// How long the certificate is valid.
        #[arg(long, default_value = "365days", value_parser = humantime::parse_duration)]
        valid_for: Duration,
    },
    /// Revoke NAME's certificate (a node's or an admin's): every agent refuses it, a node's
    /// record is dropped and its replicas placed elsewhere. The serial is read from
    /// DIR/NAME/certs/node.crt or DIR/NAME/admin.crt unless given.
    Revoke {
        name: String,
        #[arg(long, default_value = DEFAULT_CLUSTER_DIR)]
        dir: PathBuf,
        /// The certificate's serial (hex), for a certificate not kept under DIR.
        #[arg(long)]
        serial: Option<String>,
        /// Also drop the applications whose current version this certificate signed (an
        /// admin's); by default they stay.
        #[arg(long)]
        invalidate: bool,
    },
}

#[derive(Subcommand, Debug)]
enum RolloutCommand {
    /// Where each component's rollout stands; exits 1 if it was rolled back.
    Status {
        app: String,
        /// Keep printing until the rollout completes or is rolled back.
        #[arg(short, long)]
        watch: bool,
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// The generations kept for `undo`, newest first.
    History {
        app: String,
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Format,
    },
    /// Deploy an earlier generation again (by default the one before the current).
    Undo {
        app: String,
        #[arg(long)]
        to_generation: Option<u64>,
        /// Wait for the rollout back, like `deploy --wait`.
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

#[derive(Subcommand, Debug)]
enum DeleteCommand {
    App {
        name: String,
        /// Wait until its workloads have stopped.
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

#[derive(Subcommand, Debug)]
enum DescribeCommand {
    App {
        name: String,
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Format,
    },
    Node {
        name: String,
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Format,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GOSSIPCTL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let outcome = match cli.command {
        // CPU-bound and offline: no runtime, every core for the learners.
        Command::Simulate(args) => simulate::simulate(*args),
        command => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(run(Cli { command, ..cli })),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", failure::report(&e));
            ExitCode::from(failure::exit_code(&e))
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Cluster(ClusterCommand::Init { dir, name, agents }) => {
            cluster::init(&dir, &name, agents)?;
            println!(
                "cluster credentials written to {}; the CLI config is {}",
                dir.display(),
                dir.join(config::CONFIG_FILE).display()
            );
        }
        Command::Cluster(ClusterCommand::AddNode {
            name,
            dir,
            valid_for,
        }) => {
            let certs = cluster::add_node(&dir, &name, valid_for)?;
            println!(
                "node bundle written to {}; start the agent with: gossipd --name {name} --certs {} --data-dir DATA --listen ADDR",
                certs.display(),
                certs.display()
            );
        }
        Command::Cluster(ClusterCommand::AddAdmin {
            name,
            dir,
            valid_for,
        }) => {
            let home = cluster::add_admin(&dir, &name, valid_for)?;
            println!(
                "admin credentials for {name} written to {}; use them with:\n  export GOSSIPCTL_CONFIG={}",
                home.display(),
                std::path::absolute(home.join(config::CONFIG_FILE))
                    .unwrap_or_else(|_| home.join(config::CONFIG_FILE))
                    .display()
            );
        }
        Command::Cluster(ClusterCommand::Revoke {
            name,
            dir,
            serial,
            invalidate,
        }) => {
            let serial = cluster::serial_to_revoke(&dir, &name, serial)?;
            let client = commands::connect(config).await?;
            commands::revoke(&client, &name, &serial, invalidate).await?;
            client.close().await;
        }
        Command::Up { nodes, dir } => local::up(&dir, nodes).await?,
        Command::Down { dir } => local::down(&dir)?,
        Command::Validate { file } => commands::validate(&file)?,
        Command::Deploy {
            file,
            wait,
            timeout,
        } => {
            // Bad input fails before any connection is attempted, and changes nothing.
            commands::load_application(&file)?;
            let client = commands::connect(config).await?;
            commands::deploy(&client, &file, wait, timeout).await?;
            client.close().await;
        }
        Command::Delete {
            what:
                DeleteCommand::App {
                    name,
                    wait,
                    timeout,
                },
        } => {
            let client = commands::connect(config).await?;
            commands::delete_app(&client, &name, wait, timeout).await?;
            client.close().await;
        }
        Command::Get {
            resource,
            output,
            watch,
            app,
        } => {
            if app.is_some() && resource != Resource::Events {
                return Err(failure::invalid("--app applies to `get events` only"));
            }
            let client = commands::connect(config).await?;
            match resource {
                Resource::Events => {
                    commands::events(&client, app.as_deref(), output, watch).await?
                }
                _ => commands::get(&client, resource, output, watch).await?,
            }
            client.close().await;
        }
        Command::Cordon { node } => {
            let client = commands::connect(config).await?;
            commands::maintain(&client, &node, Mode::Cordoned, None).await?;
            client.close().await;
        }
        Command::Uncordon { node } => {
            let client = commands::connect(config).await?;
            commands::maintain(&client, &node, Mode::Schedulable, None).await?;
            client.close().await;
        }
        Command::Drain {
            node,
            wait,
            timeout,
        } => {
            let client = commands::connect(config).await?;
            commands::maintain(&client, &node, Mode::Draining, wait.then_some(timeout)).await?;
            client.close().await;
        }
        Command::Rollout { what } => {
            let client = commands::connect(config).await?;
            match what {
                RolloutCommand::Status {
                    app,
                    watch,
                    timeout,
                } => rollout::status(&client, &app, watch, timeout).await?,
                RolloutCommand::History { app, output } => {
                    rollout::history(&client, &app, output).await?
                }
                RolloutCommand::Undo {
                    app,
                    to_generation,
                    wait,
                    timeout,
                } => rollout::undo(&client, &app, to_generation, wait.then_some(timeout)).await?,
            }
            client.close().await;
        }
        Command::Describe { what } => {
            let client = commands::connect(config).await?;
            match what {
                DescribeCommand::App { name, output } => {
                    commands::describe_app(&client, &name, output).await?
                }
                DescribeCommand::Node { name, output } => {
                    commands::describe_node(&client, &name, output).await?
                }
            }
            client.close().await;
        }
        Command::Logs {
            workload,
            follow,
            tail,
        } => {
            agent::Selector::parse(&workload).map_err(failure::invalid)?;
            let client = commands::connect(config).await?;
            commands::logs(&client, &workload, follow, tail).await?;
            client.close().await;
        }
        Command::Simulate(_) => unreachable!("simulate runs without the async runtime"),
    }
    Ok(())
}
