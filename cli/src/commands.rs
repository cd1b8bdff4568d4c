//! The everyday commands: validate, deploy, delete, get, describe, logs.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use agent::api::{DeployOutcome, ErrorKind, EventView, LogStream, Request, Response};
use agent::client::Client;
use agent::maintenance::Mode;
use anyhow::{Context, anyhow, bail};
use orchestrator::{Application, MAX_DOCUMENT_BYTES, parse_document};

use crate::config::{self, Config};
use crate::failure::invalid;
use crate::output::{self, Format};
use crate::progress;

pub const POLL: Duration = Duration::from_millis(100);

pub async fn connect(config_flag: Option<&Path>) -> anyhow::Result<Client> {
    let path = config::locate(config_flag)?;
    let config = Config::load(&path)?;
    let creds = config.credentials(&path)?;
    Ok(Client::connect(&config.agents, &creds).await?)
}

/// Turns an agent's error answer into the CLI's exit-code classes.
fn rejected(kind: ErrorKind, message: String) -> anyhow::Error {
    match kind {
        ErrorKind::Invalid => invalid(message),
        _ => anyhow!(message),
    }
}

pub fn unexpected(response: Response) -> anyhow::Error {
    match response {
        Response::Error { kind, message } => rejected(kind, message),
        other => anyhow!("unexpected answer from the agent: {other:?}"),
    }
}

/// Reads and validates an application file, refusing oversized files before reading them.
pub fn load_application(file: &Path) -> anyhow::Result<(String, Application)> {
    let name = file.display().to_string();
    let handle = std::fs::File::open(file).map_err(|e| invalid(format!("{name}: {e}")))?;
    let size = handle.metadata().map(|m| m.len()).unwrap_or(0);
    if size > MAX_DOCUMENT_BYTES as u64 {
        return Err(invalid(format!(
            "{name}: file is {size} bytes; applications are limited to {MAX_DOCUMENT_BYTES} bytes"
        )));
    }
    let mut source = String::new();
    handle
        .take(MAX_DOCUMENT_BYTES as u64 + 1)
        .read_to_string(&mut source)
        .map_err(|e| invalid(format!("{name}: {e}")))?;
    let parsed = parse_document(&source, &name)
        .map_err(|d| anyhow::Error::new(crate::failure::Diagnosed(d.to_string())))?;
    // Notes (a workflow whose steps are not run one by one) go with the command's output.
    for note in &parsed.notes {
        eprintln!("{}", note.as_note());
    }
    Ok((source, parsed.application))
}

pub fn validate(file: &Path) -> anyhow::Result<()> {
    let (_, app) = load_application(file)?;
    let replicas: u32 = app.components.iter().map(|c| c.replicas).sum();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    println!(
        "{}: valid: application {:?}, {}, {}",
        file.display(),
        app.name,
        plural(app.components.len(), "component"),
        plural(replicas as usize, "replica")
    );
    Ok(())
}

pub async fn deploy(
    client: &Client,
    file: &Path,
    wait: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let (source, app) = load_application(file)?;
    let request = Request::Deploy {
        file: file.display().to_string(),
        source,
    };
    let outcome = match client.request(&request).await? {
        Response::Deployed(outcome) => outcome,
        other => return Err(unexpected(other)),
    };
    print_outcome(&outcome);
    if wait {
        crate::rollout::wait(client, &app.name, outcome.generation, timeout).await?;
    }
    Ok(())
}

/// What a deploy changed, in one line.
pub fn print_outcome(outcome: &DeployOutcome) {
    let mut summary = format!(
        "application {} deployed (generation {})",
        outcome.app, outcome.generation
    );
    for (label, names) in [
        ("changed", &outcome.changed),
        ("unchanged", &outcome.unchanged),
        ("removed", &outcome.removed),
    ] {
        if !names.is_empty() {
            summary += &format!("; {label}: {}", names.join(", "));
        }
    }
    println!("{summary}");
}

/// `cluster revoke`: the applications the certificate sealed stay valid unless `invalidate`.
pub async fn revoke(
    client: &Client,
    name: &str,
    serial: &str,
    invalidate: bool,
) -> anyhow::Result<()> {
    let sealed = match client
        .request(&Request::SealedBy {
            serial: serial.to_string(),
        })
        .await?
    {
        Response::SealedBy { apps } => apps,
        other => return Err(unexpected(other)),
    };
    let keep = if invalidate {
        Vec::new()
    } else {
        sealed.clone()
    };
    match client.revoke(name, serial, keep).await? {
        Response::Revoked { name, serial } => {
            println!(
                "revoked the certificate of {name} (serial {serial}); agents refuse it as they \
                 hear of it"
            );
            if !sealed.is_empty() {
                let apps: Vec<&str> = sealed.iter().map(|(app, _)| app.as_str()).collect();
                if invalidate {
                    println!(
                        "dropped the applications whose current version it wrote: {}; deploy \
                         them again to keep them",
                        apps.join(", ")
                    );
                } else {
                    println!(
                        "kept the applications whose current version it wrote: {} (--invalidate \
                         drops them)",
                        apps.join(", ")
                    );
                }
            }
            println!(
                "to let {name} back in, issue it a new certificate (`gossipctl cluster add-node \
                 {name}` or `add-admin {name}`)"
            );
            Ok(())
        }
        other => Err(unexpected(other)),
    }
}

/// `cordon`, `drain` and `uncordon`; a drain with `wait_for` waits until the node runs
/// nothing.
pub async fn maintain(
    client: &Client,
    node: &str,
    mode: Mode,
    wait_for: Option<Duration>,
) -> anyhow::Result<()> {
    match client.maintain(node, mode).await? {
        Response::Maintained { node, mode } => match mode {
            Mode::Schedulable => println!("node {node} uncordoned"),
            Mode::Cordoned => println!("node {node} cordoned: it takes no new replicas"),
            Mode::Draining => println!(
                "node {node} draining: its replicas move one at a time, each once its \
                 replacement is ready"
            ),
        },
        other => return Err(unexpected(other)),
    }
    let Some(timeout) = wait_for else {
        return Ok(());
    };
    let spinner = progress::spinner(&format!("draining {node}"));
    let deadline = Instant::now() + timeout;
    loop {
        let workloads = match client.request(&Request::GetWorkloads).await? {
            Response::Workloads { workloads } => workloads,
            other => return Err(unexpected(other)),
        };
        let left = workloads.iter().filter(|w| w.node == node).count();
        if left == 0 {
            spinner.finish_and_clear();
            println!("node {node} drained");
            return Ok(());
        }
        spinner.set_message(format!("draining {node}: {left} replicas left"));
        if Instant::now() > deadline {
            spinner.abandon();
            bail!("node {node} still runs {left} replicas after {timeout:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

pub async fn delete_app(
    client: &Client,
    name: &str,
    wait: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    match client
        .request(&Request::DeleteApp {
            name: name.to_string(),
        })
        .await?
    {
        Response::Deleted { .. } => println!("application {name} deleted"),
        other => return Err(unexpected(other)),
    }
    if wait {
        let spinner = progress::spinner(&format!("waiting for {name}'s workloads to stop"));
        let deadline = Instant::now() + timeout;
        loop {
            let remaining = match client.request(&Request::GetWorkloads).await? {
                Response::Workloads { workloads } => {
                    workloads.iter().filter(|w| w.app == name).count()
                }
                other => return Err(unexpected(other)),
            };
            if remaining == 0 {
                spinner.finish_and_clear();
                break;
            }
            if Instant::now() > deadline {
                spinner.abandon();
                bail!("{remaining} workloads of {name} still stopping after {timeout:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Resource {
    Nodes,
    Apps,
    Workloads,
    Services,
    Events,
}

pub async fn get(
    client: &Client,
    resource: Resource,
    format: Format,
    watch: bool,
) -> anyhow::Result<()> {
    let mut last = String::new();
    loop {
        let request = match resource {
            Resource::Nodes => Request::GetNodes,
            Resource::Apps => Request::GetApps,
            Resource::Workloads => Request::GetWorkloads,
            Resource::Services => Request::GetServices,
            Resource::Events => unreachable!("events are listed by `events`"),
        };
        let response = client.request(&request).await?;
        let rendered = match (&response, format) {
            (Response::Nodes { nodes }, Format::Table | Format::Wide) => {
                output::nodes(nodes, format)
            }
            (Response::Apps { apps }, Format::Table | Format::Wide) => output::apps(apps, format),
            (Response::Workloads { workloads }, Format::Table | Format::Wide) => {
                output::workloads(workloads, format)
            }
            (Response::Services { services }, Format::Table | Format::Wide) => {
                output::services(services, format)
            }
            (Response::Nodes { nodes }, _) => structured(nodes, format),
            (Response::Services { services }, _) => structured(services, format),
            (Response::Apps { apps }, _) => structured(apps, format),
            (Response::Workloads { workloads }, _) => structured(workloads, format),
            _ => return Err(unexpected(response)),
        };
        if rendered != last {
            print!("{rendered}");
            if !rendered.ends_with('\n') {
                println!();
            }
            last = rendered;
        }
        if !watch {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn structured<T: serde::Serialize>(items: &T, format: Format) -> String {
    match format {
        Format::Yaml => serde_yaml::to_string(items).expect("serialises"),
        _ => serde_json::to_string_pretty(items).expect("serialises"),
    }
}

/// `get events [--app A]`: every agent's events, oldest first. With `watch`, the ones seen so
/// far, then each new one as it arrives (one JSON object per line with `-o json`).
pub async fn events(
    client: &Client,
    app: Option<&str>,
    format: Format,
    watch: bool,
) -> anyhow::Result<()> {
    let request = Request::GetEvents {
        app: app.map(str::to_string),
    };
    let mut seen: std::collections::BTreeSet<EventView> = Default::default();
    let mut first = true;
    loop {
        let response = client.request(&request).await?;
        let Response::Events { events } = response else {
            return Err(unexpected(response));
        };
        let new: Vec<EventView> = events.into_iter().filter(|e| !seen.contains(e)).collect();
        if first && !(watch && format == Format::Json) {
            if !output::structured(&new, format) {
                let table = output::events(&new, format);
                println!("{}", table.trim_end_matches('\n'));
            }
        } else {
            for event in &new {
                match format {
                    Format::Json => println!("{}", serde_json::to_string(event)?),
                    _ => println!("{}", output::event_line(event)),
                }
            }
        }
        seen.extend(new);
        first = false;
        if !watch {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn describe_app(client: &Client, name: &str, format: Format) -> anyhow::Result<()> {
    let response = client
        .request(&Request::DescribeApp {
            name: name.to_string(),
        })
        .await?;
    let Response::App { app } = response else {
        return Err(unexpected(response));
    };
    if !output::structured(&app, format) {
        print!("{}", output::describe_app(&app));
    }
    Ok(())
}

pub async fn describe_node(client: &Client, name: &str, format: Format) -> anyhow::Result<()> {
    let response = client
        .request(&Request::DescribeNode {
            name: name.to_string(),
        })
        .await?;
    let Response::Node { node } = response else {
        return Err(unexpected(response));
    };
    if !output::structured(&node, format) {
        print!("{}", output::describe_node(&node));
    }
    Ok(())
}

pub async fn logs(
    client: &Client,
    workload: &str,
    follow: bool,
    tail: Option<usize>,
) -> anyhow::Result<()> {
    agent::Selector::parse(workload).map_err(invalid)?;
    let prefix = workload.matches('/').count() == 1;
    let mut responses = client
        .stream(&Request::Logs {
            workload: workload.to_string(),
            follow,
            tail,
            local: false,
        })
        .await?;
    while let Some(response) = responses.next().await.context("reading logs")? {
        match response {
            Response::Log { line } if line.stream != LogStream::Agent => {
                if prefix {
                    println!("[{}] {}", line.workload, line.text);
                } else {
                    println!("{}", line.text);
                }
            }
            Response::Log { .. } => {}
            Response::LogEnd => break,
            other => return Err(unexpected(other)),
        }
    }
    Ok(())
}
