//! `gossipctl logs`: answering a log request from this node's log store.

use std::collections::BTreeSet;
use std::sync::Arc;

use quinn::SendStream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::api::{ErrorKind, LogLine, Request, Response};
use crate::node::{Node, View};
use crate::wire::{WireError, write_frame};

/// Which workloads a `logs` argument names: `APP/COMPONENT/REPLICA`, or `APP/COMPONENT` for
/// every replica of the component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector(String);

impl Selector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let well_formed = match parts.as_slice() {
            [app, component] => !app.is_empty() && !component.is_empty(),
            [app, component, replica] => {
                !app.is_empty() && !component.is_empty() && replica.parse::<u32>().is_ok()
            }
            _ => false,
        };
        if well_formed {
            Ok(Selector(text.to_string()))
        } else {
            Err(format!(
                "{text:?} is not a workload: expected APP/COMPONENT/REPLICA or APP/COMPONENT"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn selects(&self, workload: &str) -> bool {
        workload == self.0
            || workload
                .strip_prefix(self.0.as_str())
                .is_some_and(|rest| rest.starts_with('/') && self.0.matches('/').count() == 1)
    }
}

/// Answers a `logs` request. Each node keeps its own replicas' logs; the agent that was asked
/// gathers them from every node that runs a selected replica (`local` marks those inner
/// requests, answered from this node's logs alone).
pub async fn stream_logs(
    mut send: SendStream,
    node: &Arc<Node>,
    workload: &str,
    follow: bool,
    tail: Option<usize>,
    local: bool,
) -> Result<(), WireError> {
    let selector = match Selector::parse(workload) {
        Ok(selector) => selector,
        Err(message) => return refuse(send, ErrorKind::Invalid, message).await,
    };
    let (lines, sources) = if local {
        local_source(node, &selector, follow, tail)
    } else {
        let view = node.view();
        let mut hosts: BTreeSet<String> = view
            .plan
            .assignments
            .iter()
            .filter(|(id, _)| selector.selects(&id.to_string()))
            .map(|(_, host)| host.clone())
            .collect();
        if node.logs.workloads().iter().any(|w| selector.selects(w)) {
            hosts.insert(node.name().to_string());
        }
        if hosts.is_empty() {
            let message = format!("no workload {workload:?} in the cluster");
            return refuse(send, ErrorKind::NotFound, message).await;
        }
        gather(node, &view, &selector, hosts, follow, tail).await
    };
    for line in lines {
        write_frame(&mut send, &Response::Log { line }).await?;
    }
    if let Some(mut live) = sources {
        loop {
            tokio::select! {
                line = live.recv() => match line {
                    Some(line) => {
                        write_frame(&mut send, &Response::Log { line }).await?;
                    }
                    None => break,
                },
                // The client went away: stop following.
                _ = send.stopped() => return Ok(()),
            }
        }
    }
    write_frame(&mut send, &Response::LogEnd).await?;
    let _ = send.finish();
    Ok(())
}

async fn refuse(mut send: SendStream, kind: ErrorKind, message: String) -> Result<(), WireError> {
    write_frame(&mut send, &Response::Error { kind, message }).await?;
    let _ = send.finish();
    Ok(())
}

/// This node's lines, and with `follow` a channel of the lines to come.
fn local_source(
    node: &Arc<Node>,
    selector: &Selector,
    follow: bool,
    tail: Option<usize>,
) -> (Vec<LogLine>, Option<mpsc::Receiver<LogLine>>) {
    let (lines, mut live) = node
        .logs
        .snapshot_and_subscribe(|w| selector.selects(w), tail);
    if !follow {
        return (lines, None);
    }
    let (tx, rx) = mpsc::channel(256);
    let selector = selector.clone();
    tokio::spawn(async move {
        loop {
            match live.recv().await {
                Ok(line) if selector.selects(&line.workload) => {
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    });
    (lines, Some(rx))
}

/// Asks every host for its lines: the initial lines merged in time order and cut to `tail`,
/// then (with `follow`) one channel fed by all hosts.
async fn gather(
    node: &Arc<Node>,
    view: &View,
    selector: &Selector,
    hosts: BTreeSet<String>,
    follow: bool,
    tail: Option<usize>,
) -> (Vec<LogLine>, Option<mpsc::Receiver<LogLine>>) {
    let mut lines = Vec::new();
    let (tx, rx) = mpsc::channel(256);
    for host in hosts {
        if host == node.name() {
            let (initial, live) = local_source(node, selector, follow, tail);
            lines.extend(initial);
            if let Some(mut live) = live {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Some(line) = live.recv().await {
                        if tx.send(line).await.is_err() {
                            return;
                        }
                    }
                });
            }
            continue;
        }
        let Some((_, record)) = view.nodes.get(&host) else {
            continue;
        };
        let request = Request::Logs {
            workload: selector.as_str().to_string(),
            follow,
            tail,
            local: true,
        };
        let Ok(mut responses) = node.peers.stream(record.address, &request).await else {
            tracing::debug!(%host, "cannot reach a host for logs");
            continue;
        };
        // The host first sends what it has; with `follow` it then keeps the stream open.
        let mut pending = Vec::new();
        if !follow {
            while let Ok(Some(Response::Log { line })) = responses.next().await {
                pending.push(line);
            }
            lines.extend(pending);
            continue;
        }
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(Some(Response::Log { line })) = responses.next().await {
                if tx.send(line).await.is_err() {
                    return;
                }
            }
        });
    }
    lines.sort_by_key(|l| l.time_ms);
    if let Some(tail) = tail {
        let excess = lines.len().saturating_sub(tail);
        lines.drain(..excess);
    }
    (lines, follow.then_some(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_selector_matches_all_its_replicas_and_nothing_else() {
        let all = Selector::parse("app/web").unwrap();
        assert!(all.selects("app/web/0"));
        assert!(all.selects("app/web/12"));
        assert!(!all.selects("app/webby/0"));
        let one = Selector::parse("app/web/1").unwrap();
        assert!(one.selects("app/web/1"));
        assert!(!one.selects("app/web/10"));
        assert!(Selector::parse("app").is_err());
        assert!(Selector::parse("app/web/x").is_err());
    }
}
