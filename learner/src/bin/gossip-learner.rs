//! `gossip-learner`: one replica of a `learner` workload. `gossipd` starts it with the component's
//! properties in `GOSSIP_LEARNER` (JSON), the replica's place in `GOSSIP_REPLICA` and
//! `GOSSIP_REPLICAS`, and its state directory in `GOSSIP_STATE_DIR`; it talks to the agent over
//! stdin and stdout (see `orchestrator::learner_link`) and logs on stderr.

use std::path::PathBuf;

use anyhow::{Context, Result};
use learner::replica::{self, ReplicaConfig};

fn var(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: gossipd sets it"))
}

/// Exits 1 with the error and its causes on one line of stderr (no backtrace, whatever
/// `RUST_BACKTRACE` says): the agent shows a failed replica's last line as its status.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gossip-learner: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let spec = serde_json::from_str(&var("GOSSIP_LEARNER")?).context("GOSSIP_LEARNER")?;
    let config = ReplicaConfig {
        spec,
        replica: var("GOSSIP_REPLICA")?.parse().context("GOSSIP_REPLICA")?,
        replicas: var("GOSSIP_REPLICAS")?.parse().context("GOSSIP_REPLICAS")?,
        state_dir: PathBuf::from(var("GOSSIP_STATE_DIR")?),
    };
    anyhow::ensure!(
        config.replica < config.replicas,
        "replica {} of {} does not exist",
        config.replica,
        config.replicas
    );
    replica::run(config, std::io::stdin(), std::io::stdout())?;
    Ok(())
}
