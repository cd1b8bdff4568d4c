//! `gossipctl rollout status|history|undo` and the waiting behind `deploy --wait`.

use std::time::{Duration, Instant};

use agent::api::{AppDetail, AppStatus, Request, Response, RolloutState};
use agent::client::Client;
use anyhow::bail;

use crate::commands::{POLL, print_outcome, unexpected};
use crate::output;
use crate::progress;

async fn describe(client: &Client, name: &str) -> anyhow::Result<AppDetail> {
    match client
        .request(&Request::DescribeApp {
            name: name.to_string(),
        })
        .await?
    {
        Response::App { app } => Ok(app),
        other => Err(unexpected(other)),
    }
}

/// One line per component: where its rollout stands.
fn lines(app: &AppDetail) -> Vec<String> {
    app.components
        .iter()
        .filter_map(|c| {
            let r = c.rollout.as_ref()?;
            Some(format!(
                "{}: {} ({} of {} updated, {} available{})",
                c.name,
                r.state,
                r.updated.min(c.replicas),
                c.replicas,
                r.available,
                if r.outdated > 0 {
                    format!(", {} on an earlier definition", r.outdated)
                } else {
                    String::new()
                }
            ))
        })
        .collect()
}

/// How a finished rollout ended, or `None` while it progresses.
fn settled(app: &AppDetail, generation: u64) -> Option<Result<(), String>> {
    if app.summary.generation < generation {
        return None;
    }
    let states: Vec<RolloutState> = app
        .components
        .iter()
        .filter_map(|c| Some(c.rollout.as_ref()?.state))
        .collect();
    if states.contains(&RolloutState::RolledBack) {
        return Some(Err(app.summary.message.clone()));
    }
    if app.summary.status == AppStatus::Unschedulable {
        return Some(Err(format!("unschedulable: {}", app.summary.message)));
    }
    let complete = states.iter().all(|s| *s == RolloutState::Complete);
    (complete && app.summary.status == AppStatus::Running).then_some(Ok(()))
}

/// Waits until generation `generation` of `name` is rolled out; fails (exit 1) if it was
/// rolled back, is unschedulable or is still progressing after `timeout`.
pub async fn wait(
    client: &Client,
    name: &str,
    generation: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let spinner = progress::spinner(&format!("waiting for {name} to roll out"));
    let deadline = Instant::now() + timeout;
    loop {
        let app = describe(client, name).await?;
        spinner.set_message(format!("{name}: {}", app.summary.message));
        match settled(&app, generation) {
            Some(Ok(())) => {
                spinner.finish_and_clear();
                println!("application {name} running: {}", app.summary.message);
                return Ok(());
            }
            Some(Err(why)) => {
                spinner.abandon();
                bail!("application {name}: {why}");
            }
            None => {}
        }
        if Instant::now() > deadline {
            spinner.abandon();
            bail!(
                "application {name} not rolled out after {timeout:?} ({}: {})",
                app.summary.status,
                app.summary.message
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `rollout status`: where each component's rollout stands; with `watch`, every change until
/// it settles (exit 1 if it was rolled back).
pub async fn status(
    client: &Client,
    name: &str,
    watch: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = Vec::new();
    loop {
        let app = describe(client, name).await?;
        let now = lines(&app);
        if now != last {
            for line in &now {
                println!("{line}");
            }
            last = now;
        }
        match settled(&app, app.summary.generation) {
            Some(Ok(())) => {
                println!(
                    "generation {} of {name} successfully rolled out",
                    app.summary.generation
                );
                return Ok(());
            }
            Some(Err(why)) => bail!("application {name}: {why}"),
            None if !watch => return Ok(()),
            None if Instant::now() > deadline => {
                bail!("application {name} still rolling out after {timeout:?}")
            }
            None => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

pub async fn history(client: &Client, name: &str, format: output::Format) -> anyhow::Result<()> {
    let response = client
        .request(&Request::RolloutHistory {
            app: name.to_string(),
        })
        .await?;
    let Response::History { generations, .. } = response else {
        return Err(unexpected(response));
    };
    if !output::structured(&generations, format) {
        print!("{}", output::generations(&generations));
    }
    Ok(())
}

pub async fn undo(
    client: &Client,
    name: &str,
    to_generation: Option<u64>,
    wait_for: Option<Duration>,
) -> anyhow::Result<()> {
    let response = client
        .request(&Request::RolloutUndo {
            app: name.to_string(),
            to_generation,
        })
        .await?;
    let Response::Deployed(outcome) = response else {
        return Err(unexpected(response));
    };
    print_outcome(&outcome);
    if let Some(timeout) = wait_for {
        wait(client, name, outcome.generation, timeout).await?;
    }
    Ok(())
}
