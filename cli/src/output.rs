//! Rendering for people (tables) and for programs (`-o json|yaml`, stable field names).

use agent::api::{
    AppDetail, AppView, EventView, GenerationView, NodeDetail, NodeView, ServiceView, WorkloadView,
};
use clap::ValueEnum;
use serde::Serialize;
use tabled::builder::Builder;
use tabled::settings::Style;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Wide,
    Json,
    Yaml,
}

/// Prints `items` as JSON or YAML, or returns `false` for the table formats.
pub fn structured<T: Serialize>(items: &T, format: Format) -> bool {
    match format {
        Format::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(items).expect("serialises")
            );
            true
        }
        Format::Yaml => {
            print!("{}", serde_yaml::to_string(items).expect("serialises"));
            true
        }
        Format::Table | Format::Wide => false,
    }
}

fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut builder = Builder::default();
    builder.push_record(header.iter().copied());
    for row in rows {
        builder.push_record(row);
    }
    let mut table = builder.build();
    table.with(Style::blank());
    table.to_string()
}

pub fn apps(apps: &[AppView], format: Format) -> String {
    let mut header = vec!["NAME", "COMPONENTS", "STATUS", "MESSAGE"];
    if format == Format::Wide {
        header.push("GENERATION");
    }
    table(
        &header,
        apps.iter().map(|a| {
            let mut row = vec![
                a.name.clone(),
                a.components.to_string(),
                a.status.to_string(),
                a.message.clone(),
            ];
            if format == Format::Wide {
                row.push(a.generation.to_string());
            }
            row
        }),
    )
}

pub fn workloads(workloads: &[WorkloadView], format: Format) -> String {
    let mut header = vec!["ID", "TYPE", "NODE", "STATE", "RESTARTS", "MESSAGE"];
    if format == Format::Wide {
        header.extend(["PID", "ADDRESS", "FOR", "EPOCH", "ACCURACY"]);
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    table(
        &header,
        workloads.iter().map(|w| {
            let mut row = vec![
                w.id.clone(),
                w.kind.clone(),
                w.node.clone(),
                w.state.to_string(),
                w.restarts.to_string(),
                w.message.clone(),
            ];
            if format == Format::Wide {
                row.push(w.pid.map_or(String::new(), |p| p.to_string()));
                row.push(w.address.clone().unwrap_or_default());
                row.push(w.since_ms.map_or(String::new(), |since| {
                    age(std::time::Duration::from_millis(
                        now_ms.saturating_sub(since),
                    ))
                }));
                match &w.learner {
                    Some(p) => row.extend([
                        format!("{}/{}", p.epoch, p.epochs),
                        format!("{:.2}%", p.test_accuracy * 100.0),
                    ]),
                    None => row.extend([String::new(), String::new()]),
                }
            }
            row
        }),
    )
}

/// How long, as `kubectl` writes ages: `42s`, `3m12s`, `5h3m`, `2d4h`.
fn age(elapsed: std::time::Duration) -> String {
    let s = elapsed.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

pub fn nodes(nodes: &[NodeView], format: Format) -> String {
    let mut header = vec![
        "NAME",
        "STATE",
        "ADDRESS",
        "LABELS",
        "CPU",
        "MEMORY",
        "WORKLOADS",
    ];
    if format == Format::Wide {
        header.extend(["RUNTIMES", "VERSION", "CERTIFICATE EXPIRES"]);
    }
    table(
        &header,
        nodes.iter().map(|n| {
            let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mut row = vec![
                n.name.clone(),
                match n.maintenance {
                    Some(mode) => format!("{},{mode}", n.state),
                    None => n.state.to_string(),
                },
                n.address.clone(),
                labels.join(","),
                format!("{}", n.capacity.cpu_millis as f64 / 1000.0),
                bytes(n.capacity.memory_bytes),
                n.workloads.to_string(),
            ];
            if format == Format::Wide {
                let expires = n
                    .certificate_expires
                    .map_or_else(|| "-".to_string(), agent::trust::expiry::date);
                row.extend([n.runtimes.join(","), n.version.clone(), expires]);
            }
            row
        }),
    )
}

/// `get services`: each service, where the answering agent serves it, and its ready replicas.
pub fn services(services: &[ServiceView], format: Format) -> String {
    let mut header = vec!["NAME", "TYPE", "ADDRESS", "PORTS", "ENDPOINTS"];
    if format == Format::Wide {
        header.push("REPLICAS");
    }
    table(
        &header,
        services.iter().map(|s| {
            let ports: Vec<String> = s
                .ports
                .iter()
                .map(|p| match p.node_port {
                    Some(node_port) => format!("{}:{node_port}/{}", p.port, p.protocol),
                    None => format!("{}/{}", p.port, p.protocol),
                })
                .collect();
            let mut row = vec![
                s.name.clone(),
                s.kind.clone(),
                s.address.clone(),
                ports.join(","),
                s.endpoints.len().to_string(),
            ];
            if format == Format::Wide {
                let replicas: Vec<String> = s
                    .endpoints
                    .iter()
                    .map(|e| format!("{}@{}", e.replica, e.node))
                    .collect();
                row.push(replicas.join(","));
            }
            row
        }),
    )
}

pub fn describe_app(app: &AppDetail) -> String {
    let summary = &app.summary;
    let mut out = format!(
        "Name:        {}\nStatus:      {}\nMessage:     {}\nGeneration:  {}\n\nComponents:\n",
        summary.name, summary.status, summary.message, summary.generation
    );
    out += &indent(&table(
        &[
            "NAME",
            "TYPE",
            "REPLICAS",
            "UP",
            "READY",
            "ROLLOUT",
            "DEPENDS ON",
            "UNSCHEDULABLE",
        ],
        app.components.iter().map(|c| {
            let rollout = c.rollout.as_ref().map_or(String::new(), |r| {
                format!(
                    "{} ({}/{} updated, {} available)",
                    r.state,
                    r.updated.min(c.replicas),
                    c.replicas,
                    r.available
                )
            });
            vec![
                c.name.clone(),
                c.kind.clone(),
                c.replicas.to_string(),
                c.running.to_string(),
                c.ready.to_string(),
                rollout,
                c.depends_on.join(","),
                c.unschedulable.clone().unwrap_or_default(),
            ]
        }),
    ));
    let learning: Vec<_> = app
        .components
        .iter()
        .filter_map(|c| Some((c, c.learning.as_ref()?)))
        .collect();
    if !learning.is_empty() {
        out += "\nLearning (test accuracy across replicas):\n";
        out += &indent(&table(
            &["COMPONENT", "EPOCH", "MIN", "MEDIAN", "MAX", "FINISHED"],
            learning.iter().map(|(c, l)| {
                let epoch = if l.epoch_min == l.epoch_max {
                    format!("{}/{}", l.epoch_min, l.epochs)
                } else {
                    format!("{}-{}/{}", l.epoch_min, l.epoch_max, l.epochs)
                };
                vec![
                    c.name.clone(),
                    epoch,
                    format!("{:.2}%", l.accuracy_min * 100.0),
                    format!("{:.2}%", l.accuracy_median * 100.0),
                    format!("{:.2}%", l.accuracy_max * 100.0),
                    format!("{}/{}", l.finished, c.replicas),
                ]
            }),
        ));
        for (c, l) in &learning {
            for model in &l.final_models {
                out += &format!("  final model of {}: {model}\n", c.name);
            }
        }
    }
    out += "\nWorkloads:\n";
    out += &indent(&workloads(&app.workloads, Format::Wide));
    out += "\nEvents:\n";
    if app.events.is_empty() {
        out += "  <none>\n";
    } else {
        out += &indent(&events(&app.events, Format::Table));
    }
    out
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// When, as an age (`12s`) for people.
fn ago(at_ms: u64) -> String {
    age(std::time::Duration::from_millis(
        now_ms().saturating_sub(at_ms),
    ))
}

/// Events as `kubectl get events` lists them; `-o wide` adds the time in milliseconds.
pub fn events(events: &[EventView], format: Format) -> String {
    let mut header = vec!["AGE", "NODE", "REASON", "OBJECT", "MESSAGE"];
    if format == Format::Wide {
        header.push("AT_MS");
    }
    table(
        &header,
        events.iter().map(|e| {
            let mut row = vec![
                ago(e.at_ms),
                e.node.clone(),
                e.reason.clone(),
                e.object.clone(),
                e.message.clone(),
            ];
            if format == Format::Wide {
                row.push(e.at_ms.to_string());
            }
            row
        }),
    )
}

/// One event on one line, for `get events --watch`.
pub fn event_line(e: &EventView) -> String {
    format!(
        "{:<6} {:<10} {:<16} {:<24} {}",
        ago(e.at_ms),
        e.node,
        e.reason,
        e.object,
        e.message
    )
}

/// `rollout history`.
pub fn generations(generations: &[GenerationView]) -> String {
    table(
        &["GENERATION", "DEPLOYED", "CHANGED", ""],
        generations.iter().map(|g| {
            vec![
                g.generation.to_string(),
                format!("{} ago", ago(g.deployed_ms)),
                g.changed.join(","),
                if g.current { "current" } else { "" }.to_string(),
            ]
        }),
    )
}

pub fn describe_node(node: &NodeDetail) -> String {
    let mut out = String::from("Node:\n");
    out += &indent(&nodes(std::slice::from_ref(&node.summary), Format::Wide));
    out += "\nWorkloads:\n";
    out += &indent(&workloads(&node.workloads, Format::Wide));
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ages_read_as_kubectl_writes_them() {
        assert_eq!(age(Duration::from_millis(42_900)), "42s");
        assert_eq!(age(Duration::from_secs(192)), "3m12s");
        assert_eq!(age(Duration::from_secs(5 * 3600 + 180)), "5h3m");
        assert_eq!(age(Duration::from_secs(2 * 86_400 + 4 * 3600 + 59)), "2d4h");
    }
}
