//! The loops that keep replicated state in step between agents.
//!
//! [`spread`] is the shell of [`crate::cluster::dissemination`]: every [`ROUND`] it sends the
//! pending rumours, in one batch, to a few random members, with a bound on pushes in flight.
//! [`run`] is anti-entropy: it repairs whatever the rumours missed (a peer that was down, a
//! partition, a lost stream) with one peer at a time, the one whose membership packets last
//! showed a different state or view ([`crate::cluster::repair`]), and otherwise only in a slow
//! backstop round. A round costs one fingerprint exchange when the pair already agrees, and a
//! digest exchange plus the missing entries when it does not.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{Semaphore, mpsc};

use crate::api::{Request, Response};
use crate::cluster::counters::Channel;
use crate::cluster::dissemination::known_entries;
use crate::cluster::repair::RepairSchedule;
use crate::cluster::replication::Updates;
use crate::logs::now_ms;
use crate::node::Node;

/// How often an agent may start an anti-entropy round with a peer that showed a difference.
/// Rumours carry changes at once; this only bounds how long a missed one stays missed. With
/// no difference shown, a round runs only every `repair::BACKSTOP_EVERY` periods (30 s).
pub const ANTI_ENTROPY_PERIOD: Duration = Duration::from_secs(2);
/// At most one member-list swap per agent this often: lists are kilobytes, and SWIM's own
/// gossip settles most differences; the swap only has to catch the verdicts it missed.
const MEMBER_LISTS_EVERY: Duration = Duration::from_secs(10);
/// How often expired deletions are forgotten.
const TOMBSTONE_SWEEP: Duration = Duration::from_secs(600);

/// How often an agent sends its pending rumours.
pub const ROUND: Duration = Duration::from_millis(100);
/// Pushes in flight at once, per agent. When a round's would exceed it (its peers answer
/// slowly, or it is itself starved), the round is skipped and its rumours wait for the next:
/// an overloaded cluster sends fewer, larger batches instead of piling up tasks.
const MAX_PUSHES_IN_FLIGHT: usize = 6;

/// Sends the pending rumours, a batch to a few random members every [`ROUND`].
pub async fn spread(node: Arc<Node>) {
    let seed = xxhash_rust::xxh3::xxh3_64(node.name().as_bytes()) ^ now_ms();
    let mut rng = StdRng::seed_from_u64(seed);
    let slots = Arc::new(Semaphore::new(MAX_PUSHES_IN_FLIGHT));
    let fanout = node.rumours.lock().expect("rumours lock").config().fanout;
    let mut tick = tokio::time::interval(ROUND);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if slots.available_permits() < fanout {
            tracing::debug!("pushes still in flight; rumours wait a round");
            continue;
        }
        let members = node.active_peers();
        let round = node
            .rumours
            .lock()
            .expect("rumours lock")
            .round(&members, &mut rng);
        let Some(round) = round else { continue };
        let request = Arc::new(Request::Push {
            updates: round.updates,
        });
        for target in round.targets {
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                break;
            };
            let request = request.clone();
            let node = node.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match node
                    .peers
                    .exchange(Channel::Dissemination, target, &request)
                    .await
                {
                    Ok(Response::Pushed { known }) => {
                        if let Request::Push { updates } = request.as_ref() {
                            let mut rumours = node.rumours.lock().expect("rumours lock");
                            rumours.feedback(updates, &known);
                        }
                    }
                    Ok(other) => tracing::debug!(%target, "push answered {other:?}"),
                    Err(e) => tracing::debug!(%target, "push: {e}"),
                }
            });
        }
    }
}

pub async fn run(node: Arc<Node>) {
    let mut schedule = RepairSchedule::default();
    let mut last_sweep = tokio::time::Instant::now();
    let mut members = node.gossip.members.clone();
    let mut known: BTreeSet<SocketAddr> = BTreeSet::new();
    let (newcomers, arrivals) = mpsc::unbounded_channel();
    tokio::spawn(greet_newcomers(node.clone(), arrivals));
    let mut tick = tokio::time::interval(ANTI_ENTROPY_PERIOD);
    loop {
        tokio::select! {
            Ok(()) = members.changed() => {
                let active: BTreeSet<SocketAddr> = node.active_peers().into_iter().collect();
                for &peer in active.difference(&known) {
                    let _ = newcomers.send(peer);
                }
                known = active;
                continue;
            }
            _ = tick.tick() => {}
        }
        let peers = node.active_peers();
        if let Some(peer) = schedule.next(&peers, node.gossip.take_diverged())
            && let Err(e) = exchange(&node, peer).await
        {
            tracing::debug!(%peer, "anti-entropy: {e}");
        }
        if last_sweep.elapsed() > TOMBSTONE_SWEEP {
            last_sweep = tokio::time::Instant::now();
            if let Err(e) = node.state.expire_tombstones(now_ms()) {
                tracing::warn!("tombstone sweep: {e}");
            }
        }
    }
}

/// Exchanges at once with each member that appears while we lack its record, so a joining
/// agent learns the cluster's state (and the cluster its record) in a round trip or two
/// instead of an anti-entropy period. One exchange at a time, looking again before each:
/// when fifty agents start together each sees dozens of newcomers within a second, and the
/// first exchange or two bring most of their records.
async fn greet_newcomers(node: Arc<Node>, mut arrivals: mpsc::UnboundedReceiver<SocketAddr>) {
    while let Some(peer) = arrivals.recv().await {
        let recorded = node
            .state
            .read(|r| r.nodes.iter().any(|(_, n)| n.address == peer));
        if recorded || !node.active_peers().contains(&peer) {
            continue;
        }
        if let Err(e) = exchange(&node, peer).await {
            tracing::debug!(%peer, "anti-entropy with a new member: {e}");
        }
    }
}

async fn exchange(node: &Arc<Node>, peer: SocketAddr) -> RoundResult {
    let fingerprint = node.state.read(|r| r.fingerprint());
    let members = node.gossip.view.borrow().digest;
    let (state_in_sync, members_in_sync) = match node
        .peers
        .exchange(
            Channel::AntiEntropy,
            peer,
            &Request::SyncFingerprint {
                fingerprint,
                members,
            },
        )
        .await?
    {
        Response::InSync {
            in_sync,
            members_in_sync,
        } => (in_sync, members_in_sync),
        other => return Err(format!("unexpected answer {other:?}").into()),
    };
    tracing::debug!(%peer, state_in_sync, members_in_sync, "anti-entropy round");
    if !members_in_sync && node.may_swap_member_lists(MEMBER_LISTS_EVERY) {
        let states = node.gossip.view.borrow().states.as_ref().clone();
        match node
            .peers
            .exchange(Channel::AntiEntropy, peer, &Request::SyncMembers { states })
            .await?
        {
            Response::Members { states } => node.gossip.apply(states),
            other => return Err(format!("unexpected answer {other:?}").into()),
        }
    }
    if state_in_sync {
        return Ok(());
    }
    let digest = node.state.read(|r| r.digest());
    let (updates, wanted) = match node
        .peers
        .exchange(Channel::AntiEntropy, peer, &Request::SyncDigest { digest })
        .await?
    {
        Response::SyncReply { updates, wanted } => (updates, wanted),
        other => return Err(format!("unexpected answer {other:?}").into()),
    };
    let changed = node.state.merge(&updates, now_ms())?;
    if !changed.is_empty() {
        node.wake();
    }
    if !wanted.is_empty() {
        let updates = node.state.read(|r| r.entries_for(&wanted));
        node.peers
            .exchange(Channel::AntiEntropy, peer, &Request::Push { updates })
            .await?;
    }
    Ok(())
}

/// Serving side of the sync protocol (peers with node certificates only).
pub fn answer(node: &Node, request: Request) -> Response {
    match request {
        Request::Push { updates } => merge(node, updates),
        Request::SyncFingerprint {
            fingerprint,
            members,
        } => Response::InSync {
            in_sync: node.state.read(|r| r.fingerprint()) == fingerprint,
            members_in_sync: node.gossip.view.borrow().digest == members,
        },
        Request::SyncMembers { states } => {
            let mine = node.gossip.view.borrow().states.as_ref().clone();
            node.gossip.apply(states);
            Response::Members { states: mine }
        }
        Request::SyncDigest { digest } => {
            let (updates, wanted) = node.state.read(|r| r.answer(&digest));
            Response::SyncReply { updates, wanted }
        }
        _ => unreachable!("only sync requests are routed here"),
    }
}

fn merge(node: &Node, updates: Updates) -> Response {
    match node.state.merge(&updates, now_ms()) {
        Ok(changed) => {
            let known = known_entries(&updates, &changed);
            if !changed.is_empty() {
                node.wake();
                // New to us, so probably to others: pass it on.
                node.spread(changed);
            }
            Response::Pushed { known }
        }
        Err(e) => Response::Error {
            kind: crate::api::ErrorKind::Internal,
            message: e.to_string(),
        },
    }
}

/// Failures of this best-effort loop are only logged, so one boxed error type serves.
type RoundResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
