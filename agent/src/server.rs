//! The agent's QUIC API: accept mutually authenticated connections and answer requests.
//!
//! Each request arrives on its own bidirectional stream, so a slow `logs -f` never holds up a
//! `get`. Authorisation happens here, once per request, from the role in the peer's certificate.

use std::sync::Arc;

use orchestrator::parse_application;
use orchestrator::state::Entry;
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use rustls::pki_types::CertificateDer;

use crate::api::{DeployOutcome, ErrorKind, PendingWrite, Request, Response};
use crate::cluster::identity::Role;
use crate::cluster::replication::Updates;
use crate::cluster::tls::peer_role;
use crate::cluster::transport::Dialled;
use crate::logs::now_ms;
use crate::maintenance::Maintenance;
use crate::node::{Node, VERSION};
use crate::rollout::{activity, history};
use crate::store::{StoreError, StoredApp};
use crate::trust::authority::Authority;
use crate::trust::revocation::{Revocation, Revoked, is_serial};
use crate::trust::seal::Seal;
use crate::trust::statement::Map;
use crate::wire::{WireError, read_frame, write_frame};

/// Accepts connections until the endpoint is closed, and answers requests on them and on the
/// connections this agent dialled to its peers (a pair of agents shares one connection).
pub async fn serve(endpoint: Endpoint, mut dialled: Dialled, node: Arc<Node>) {
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { return };
                let node = node.clone();
                tokio::spawn(async move {
                    match incoming.await {
                        Ok(connection) => {
                            tracing::debug!(peer = %connection.remote_address(), "accepted");
                            // Other agents' connections also carry membership datagrams.
                            node.peers.adopt(connection.clone());
                            serve_connection(connection, node).await;
                        }
                        // Failed handshakes include peers without a cluster certificate.
                        Err(e) => tracing::debug!("handshake failed: {e}"),
                    }
                });
            }
            Some(connection) = dialled.recv() => {
                tokio::spawn(serve_connection(connection, node.clone()));
            }
        }
    }
}

async fn serve_connection(connection: Connection, node: Arc<Node>) {
    let Some(role) = peer_role(&connection) else {
        connection.close(1u32.into(), b"unknown peer identity");
        return;
    };
    if let Some(revoked) = node
        .state
        .read(|r| r.authority.as_ref().map(|a| a.revoked().clone()))
    {
        tokio::spawn(close_when_revoked(connection.clone(), revoked));
    }
    while let Ok((send, recv)) = connection.accept_bi().await {
        let node = node.clone();
        let role = role.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_stream(send, recv, &node, &role).await {
                tracing::debug!(peer = role.name(), "request stream: {e}");
            }
        });
    }
}

/// Closes `connection` once its peer's certificate is revoked. New handshakes with it are
/// refused by the TLS verifiers; this ends the connections made before.
async fn close_when_revoked(connection: Connection, revoked: Revoked) {
    let Some(leaf) = connection
        .peer_identity()
        .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|chain| chain.first().cloned())
    else {
        return;
    };
    let mut changes = revoked.subscribe();
    loop {
        if revoked.certificate(leaf.as_ref()) {
            tracing::info!(peer = %connection.remote_address(), "closing a connection whose certificate was revoked");
            connection.close(2u32.into(), b"certificate revoked");
            return;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = connection.closed() => return,
        }
    }
}

fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error {
        kind,
        message: message.into(),
    }
}

fn internal(e: StoreError) -> Response {
    error(ErrorKind::Internal, e.to_string())
}

async fn serve_stream(
    mut send: SendStream,
    mut recv: RecvStream,
    node: &Arc<Node>,
    role: &Role,
) -> Result<(), WireError> {
    let Some(request) = read_frame::<Request>(&mut recv).await? else {
        return Ok(());
    };
    let response = match request {
        Request::Ping => Response::Pong {
            node: node.name().to_string(),
            version: VERSION.to_string(),
        },
        Request::Deploy { file, source } => {
            if role.may_mutate() {
                deploy(node, &file, &source).await
            } else {
                forbidden(role, "deploy")
            }
        }
        Request::RolloutUndo { app, to_generation } => {
            if role.may_mutate() {
                undo(node, &app, to_generation).await
            } else {
                forbidden(role, "undo rollouts")
            }
        }
        Request::Version => Response::Version {
            version: node.state.next_version(now_ms()),
        },
        Request::Maintain { node: name, entry } => {
            if role.may_mutate() {
                maintain(node, name, entry).await
            } else {
                forbidden(role, "cordon or drain nodes")
            }
        }
        Request::GetServices => Response::Services {
            services: node.services.views(),
        },
        Request::GetEvents { app } => Response::Events {
            events: node.events(app.as_deref()),
        },
        Request::RolloutHistory { app } => match node.generations(&app) {
            Some(generations) => Response::History { app, generations },
            None => error(
                ErrorKind::NotFound,
                format!("application {app:?} not found"),
            ),
        },
        Request::DeleteApp { name } => {
            if role.may_mutate() {
                delete(node, &name).await
            } else {
                forbidden(role, "delete applications")
            }
        }
        Request::Commit { write, seal } => {
            if role.may_mutate() {
                commit(node, *write, &seal).await
            } else {
                forbidden(role, "write applications")
            }
        }
        Request::Revoke { serial, entry } => {
            if role.may_mutate() {
                revoke(node, serial, entry).await
            } else {
                forbidden(role, "revoke certificates")
            }
        }
        Request::SealedBy { serial } => Response::SealedBy {
            apps: node.state.read(|r| {
                r.apps
                    .entries()
                    .filter(|(_, entry)| {
                        Authority::sealed_with(*entry).is_some_and(|s| s == serial)
                    })
                    .map(|(name, entry)| (name.clone(), entry.version.clone()))
                    .collect()
            }),
        },
        Request::GetApps => Response::Apps {
            apps: node.app_views(),
        },
        Request::GetWorkloads => Response::Workloads {
            workloads: node.workload_views(),
        },
        Request::GetNodes => Response::Nodes {
            nodes: node.node_views(),
        },
        Request::DescribeApp { name } => match node.describe_app(&name) {
            Some(app) => Response::App { app },
            None => error(
                ErrorKind::NotFound,
                format!("application {name:?} not found"),
            ),
        },
        Request::DescribeNode { name } => match node.describe_node(&name) {
            Some(node) => Response::Node { node },
            None => error(ErrorKind::NotFound, format!("node {name:?} not found")),
        },
        Request::LearnerCall { workload, from } => {
            let response = if matches!(role, Role::Node { .. }) {
                let body = crate::wire::read_body(&mut recv).await?;
                match node.serve_learner_call(&workload, from, body).await {
                    Ok(answer) => {
                        write_frame(&mut send, &Response::LearnerAnswer).await?;
                        crate::wire::write_body(&mut send, &answer).await?;
                        let _ = send.finish();
                        return Ok(());
                    }
                    Err(message) => error(ErrorKind::NotFound, message),
                }
            } else {
                error(
                    ErrorKind::Forbidden,
                    format!(
                        "certificate {:?} may not call learner replicas: only cluster nodes may",
                        role.name()
                    ),
                )
            };
            write_frame(&mut send, &response).await?;
            let _ = send.finish();
            return Ok(());
        }
        Request::Logs {
            workload,
            follow,
            tail,
            local,
        } => {
            return crate::logs_api::stream_logs(send, node, &workload, follow, tail, local).await;
        }
        Request::Verdict { states } => {
            if matches!(role, Role::Node { .. }) {
                node.gossip.apply(states);
                Response::Ack
            } else {
                forbidden(role, "report members down")
            }
        }
        sync @ (Request::Push { .. }
        | Request::SyncFingerprint { .. }
        | Request::SyncMembers { .. }
        | Request::SyncDigest { .. }) => {
            if matches!(role, Role::Node { .. }) {
                crate::sync::answer(node, sync)
            } else {
                forbidden(role, "replicate cluster state")
            }
        }
    };
    write_frame(&mut send, &response).await?;
    let _ = send.finish();
    Ok(())
}

fn forbidden(role: &Role, what: &str) -> Response {
    error(
        ErrorKind::Forbidden,
        format!(
            "certificate {:?} may not {what}: only the cluster's admin certificate may",
            role.name()
        ),
    )
}

async fn deploy(node: &Arc<Node>, file: &str, source: &str) -> Response {
    let app = match parse_application(source, file) {
        Ok(app) => app,
        Err(diagnostics) => return error(ErrorKind::Invalid, diagnostics.to_string()),
    };
    write_generation(node, app).await
}

/// `rollout undo`: deploys generation `to` (or the one before the current) again, as a new
/// generation, so it rolls out like any change.
async fn undo(node: &Arc<Node>, name: &str, to: Option<u64>) -> Response {
    let Some(stored) = node.state.read(|r| r.apps.get(name).cloned()) else {
        return error(
            ErrorKind::NotFound,
            format!("application {name:?} not found"),
        );
    };
    match history::undo_target(&stored, to) {
        Ok(app) => write_generation(node, app.clone()).await,
        Err(message) => error(ErrorKind::Invalid, message),
    }
}

/// Prepares the write of `app` as the next generation (nothing, if it is unchanged): the
/// history and each component's rollback target go with it, under the admin's seal.
async fn write_generation(node: &Arc<Node>, app: orchestrator::Application) -> Response {
    let previous = node.state.read(|r| r.apps.get(&app.name).cloned());
    let outcome = compare(previous.as_ref(), &app);
    if previous.as_ref().is_some_and(|p| p.app == app) {
        return Response::Deployed(outcome);
    }
    // A definition whose rollout is complete now, or was seen complete, is one a later
    // rollout may return to.
    let view = node.view();
    let completed = node.state.read(|r| activity::completed(r.activity.iter()));
    let name = app.name.clone();
    let complete = |component: &str, fingerprint: u64| {
        let key = (name.clone(), component.to_string());
        completed.contains(&(key.0.clone(), key.1.clone(), fingerprint))
            || view
                .rollouts
                .get(&key)
                .is_some_and(|d| d.complete() && d.target == fingerprint)
    };
    let stored = history::next(previous.as_ref(), app, now_ms(), complete);
    let write = PendingWrite {
        app: stored.app.name.clone(),
        version: node.state.next_version(now_ms()),
        value: Some(stored),
        outcome: Some(outcome),
    };
    seal_or_apply(node, write).await
}

/// Nothing is written yet: the admin seals `write` and commits it (`commit`). An agent that
/// checks no seals (`gossipd --unsigned-for-benchmarks`) applies it unsealed at once, as agents
/// did before applications were signed.
async fn seal_or_apply(node: &Arc<Node>, write: PendingWrite) -> Response {
    if node.state.read(|r| r.authority.is_some()) {
        return Response::Seal { write };
    }
    let entry = write.unsealed();
    apply(node, write, entry).await
}

/// Applies an admin-sealed application write (the second step of a deploy or a deletion) after
/// the same check every replica runs on every application write it receives.
/// Takes in an admin's sealed revocation and spreads it.
async fn revoke(node: &Arc<Node>, serial: String, entry: Entry<Revocation>) -> Response {
    if !is_serial(&serial) {
        return error(
            ErrorKind::Invalid,
            format!("{serial:?} is not a certificate serial (lowercase hex)"),
        );
    }
    let Some(revocation) = entry.value.clone() else {
        return error(ErrorKind::Invalid, "a revocation cannot be deleted");
    };
    let now = now_ms();
    if let Some(authority) = node.state.read(|r| r.authority.clone())
        && let Err(why) = authority.check(Map::Revocations, &serial, &entry, now)
    {
        return error(
            ErrorKind::Forbidden,
            format!("the revocation of {serial} is refused: {why}"),
        );
    }
    let updates = Updates {
        revocations: vec![(serial.clone(), entry)],
        ..Updates::default()
    };
    let changed = match node.state.change(true, |r| r.merge(&updates, now)).await {
        Ok(changed) => changed,
        Err(e) => return internal(e),
    };
    if !changed.is_empty() {
        tracing::warn!(name = %revocation.name, %serial, "certificate revoked");
        node.spread(changed);
        node.wake();
    }
    Response::Revoked {
        name: revocation.name,
        serial,
    }
}

/// Takes in an admin's sealed cordon, drain or uncordon of node `name`, and spreads it.
async fn maintain(node: &Arc<Node>, name: String, entry: Entry<Maintenance>) -> Response {
    let Some(maintenance) = entry.value else {
        return error(ErrorKind::Invalid, "a node's maintenance cannot be deleted");
    };
    let known = node.view().nodes.contains_key(&name);
    if !known {
        return error(ErrorKind::NotFound, format!("node {name:?} not found"));
    }
    let now = now_ms();
    if let Some(authority) = node.state.read(|r| r.authority.clone())
        && let Err(why) = authority.check(Map::Maintenance, &name, &entry, now)
    {
        return error(
            ErrorKind::Forbidden,
            format!("the {} of {name} is refused: {why}", maintenance.mode),
        );
    }
    let updates = Updates {
        maintenance: vec![(name.clone(), entry)],
        ..Updates::default()
    };
    if let Err(answer) = accept(node, &updates, &format!("node {name:?}")).await {
        return answer;
    }
    tracing::info!(node = %name, mode = %maintenance.mode, "maintenance");
    Response::Maintained {
        node: name,
        mode: maintenance.mode,
    }
}

async fn commit(node: &Arc<Node>, write: PendingWrite, seal: &Seal) -> Response {
    let entry = write.entry(seal);
    let now = now_ms();
    if let Some(authority) = node.state.read(|r| r.authority.clone())
        && let Err(why) = authority.check(Map::Apps, &write.app, &entry, now)
    {
        return error(
            ErrorKind::Forbidden,
            format!("the write of application {:?} is refused: {why}", write.app),
        );
    }
    apply(node, write, entry).await
}

/// Commits an application write that passed its checks, and spreads it.
async fn apply(node: &Arc<Node>, write: PendingWrite, entry: Entry<StoredApp>) -> Response {
    let updates = Updates {
        apps: vec![(write.app.clone(), entry)],
        ..Updates::default()
    };
    if let Err(answer) = accept(node, &updates, &format!("application {:?}", write.app)).await {
        return answer;
    }
    match write.outcome {
        Some(outcome) if write.value.is_some() => {
            tracing::info!(app = %write.app, generation = outcome.generation, "deployed");
            Response::Deployed(outcome)
        }
        _ => {
            tracing::info!(app = %write.app, "deleted");
            Response::Deleted { name: write.app }
        }
    }
}

/// Merges an admin's checked write, durably, and spreads it. A write that changes nothing lost
/// to a newer one of the same key (`what`) while it was being signed: the answer says so.
async fn accept(node: &Arc<Node>, updates: &Updates, what: &str) -> Result<(), Response> {
    let changed = node
        .state
        .change(true, |r| r.merge(updates, now_ms()))
        .await
        .map_err(internal)?;
    if changed.is_empty() {
        return Err(error(
            ErrorKind::Conflict,
            format!("{what} changed while this write was being signed; run the command again"),
        ));
    }
    node.spread(changed);
    node.wake();
    Ok(())
}

/// What a deploy of `app` changes relative to the stored version.
fn compare(previous: Option<&StoredApp>, app: &orchestrator::Application) -> DeployOutcome {
    let old = |name: &str| previous.and_then(|p| p.app.components.iter().find(|c| c.name == name));
    let (mut changed, mut unchanged) = (Vec::new(), Vec::new());
    for component in &app.components {
        match old(&component.name) {
            Some(before) if before.fingerprint() == component.fingerprint() => {
                unchanged.push(component.name.clone())
            }
            _ => changed.push(component.name.clone()),
        }
    }
    let removed = previous
        .map(|p| {
            p.app
                .components
                .iter()
                .filter(|c| !app.components.iter().any(|n| n.name == c.name))
                .map(|c| c.name.clone())
                .collect()
        })
        .unwrap_or_default();
    let generation = match previous {
        Some(p) if p.app == *app => p.generation,
        Some(p) => p.generation + 1,
        None => 1,
    };
    DeployOutcome {
        app: app.name.clone(),
        generation,
        changed,
        unchanged,
        removed,
    }
}

async fn delete(node: &Arc<Node>, name: &str) -> Response {
    if node.state.read(|r| r.apps.get(name).is_none()) {
        return error(
            ErrorKind::NotFound,
            format!("application {name:?} not found"),
        );
    }
    let write = PendingWrite {
        app: name.to_string(),
        version: node.state.next_version(now_ms()),
        value: None,
        outcome: None,
    };
    seal_or_apply(node, write).await
}
