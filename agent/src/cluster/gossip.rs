//! The async shell around [`Membership`]: it moves packets and timer events in and out of the
//! state machine and publishes the member list. It decides nothing itself, and runs on a
//! thread of its own (see [`Gossip::spawn`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::api::{Request, Response};
use crate::cluster::counters::ClusterCounters;
use crate::cluster::health::LocalHealth;
use crate::cluster::hints::Digests;
use crate::cluster::membership::{
    DeathNotice, Effects, Liveness, MemberState, Membership, MembershipError, NodeId,
};
use crate::cluster::transport::{Inbound, Peers};

/// Every other member this agent knows, by name.
pub type Members = BTreeMap<String, (NodeId, Liveness)>;

/// While alone, ask the seeds to let us in this often.
const REANNOUNCE: Duration = Duration::from_secs(1);

pub struct Gossip {
    join: mpsc::Sender<Vec<SocketAddr>>,
    leave: mpsc::Sender<oneshot::Sender<()>>,
    apply: mpsc::Sender<Vec<MemberState>>,
    pub members: watch::Receiver<Members>,
    /// The full member list and its digest, for membership anti-entropy.
    pub view: watch::Receiver<MembershipView>,
    /// The last member whose packet showed a different state or member view (see `hints`).
    diverged: Arc<Mutex<Option<SocketAddr>>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MembershipView {
    pub digest: u64,
    pub states: Arc<Vec<MemberState>>,
}

impl Gossip {
    /// Starts the membership loop. `changed` is notified whenever the member list changes;
    /// `state_fingerprint` is the replicated state's, stamped on every packet sent.
    /// Nobody learns of this agent until [`Gossip::join`].
    pub fn spawn(
        membership: Membership,
        peers: Arc<Peers>,
        inbound: mpsc::Receiver<Inbound>,
        changed: Arc<Notify>,
        state_fingerprint: Arc<AtomicU64>,
    ) -> Self {
        let (join, join_rx) = mpsc::channel(1);
        let (leave, leave_rx) = mpsc::channel(1);
        let (apply, apply_rx) = mpsc::channel(16);
        let (members_tx, members) = watch::channel(Members::new());
        let (view_tx, view) = watch::channel(MembershipView::default());
        let diverged = Arc::new(Mutex::new(None));
        let shell = Shell {
            state_fingerprint,
            diverged: diverged.clone(),
            quiet_since: tokio::time::Instant::now(),
            membership,
            peers,
            members: members_tx,
            view: view_tx,
            changed,
            health: LocalHealth::default(),
            timers: mpsc::unbounded_channel(),
            failed_checks: mpsc::unbounded_channel(),
        };
        // The failure detector gets a thread and an event loop of its own, so its timers
        // and packets keep their deadlines while reconciling, merging and serving keep the
        // agent's main runtime busy (a burst). What it sends goes out through quinn, whose
        // connections can be driven from any runtime.
        std::thread::Builder::new()
            .name("membership".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("membership runtime");
                runtime.block_on(shell.run(inbound, join_rx, leave_rx, apply_rx));
            })
            .expect("membership thread");
        Gossip {
            join,
            leave,
            apply,
            members,
            view,
            diverged,
        }
    }

    /// The member whose last packet showed a different state or member view, if any since
    /// the last call: the peer anti-entropy should exchange with next.
    pub fn take_diverged(&self) -> Option<SocketAddr> {
        self.diverged.lock().expect("diverged lock").take()
    }

    /// Asks the seeds to let us in, again every second while no member answers. Called once
    /// the agent serves requests: members that learn of it dial it at once.
    pub async fn join(&self, seeds: Vec<SocketAddr>) {
        let _ = self.join.send(seeds).await;
    }

    /// Hands a peer's member list to the failure detector (dropped if it is busy: the next
    /// anti-entropy round brings another).
    pub fn apply(&self, states: Vec<MemberState>) {
        let _ = self.apply.try_send(states);
    }

    /// Announces our departure and waits briefly for it to go out.
    pub async fn leave(&self) {
        let (done, wait) = oneshot::channel();
        if self.leave.send(done).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), wait).await;
        }
    }
}

/// A failure-detector timer and the instant it was due, to tell how late it fired.
type TimerEvent = (tokio::time::Instant, foca::Timer<NodeId>);
/// A suspected member, at its SWIM incarnation, whose check failed.
type FailedCheck = (NodeId, u16);

struct Shell {
    membership: Membership,
    peers: Arc<Peers>,
    members: watch::Sender<Members>,
    view: watch::Sender<MembershipView>,
    changed: Arc<Notify>,
    state_fingerprint: Arc<AtomicU64>,
    diverged: Arc<Mutex<Option<SocketAddr>>>,
    /// When the member list last changed, to pace the periodic announce.
    quiet_since: tokio::time::Instant,
    health: LocalHealth,
    timers: (
        mpsc::UnboundedSender<TimerEvent>,
        mpsc::UnboundedReceiver<TimerEvent>,
    ),
    /// Suspected members whose check (see [`Shell::check`]) failed.
    failed_checks: (
        mpsc::UnboundedSender<FailedCheck>,
        mpsc::UnboundedReceiver<FailedCheck>,
    ),
}

impl Shell {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut join: mpsc::Receiver<Vec<SocketAddr>>,
        mut leave: mpsc::Receiver<oneshot::Sender<()>>,
        mut apply: mpsc::Receiver<Vec<MemberState>>,
    ) {
        let me = self.membership.me().addr;
        let mut seeds: Vec<SocketAddr> = Vec::new();
        let mut reannounce = tokio::time::interval(REANNOUNCE);
        loop {
            let step = tokio::select! {
                Some(addresses) = join.recv() => {
                    seeds = addresses.into_iter().filter(|s| *s != me).collect();
                    reannounce.reset_immediately();
                    continue;
                }
                Some((name, datagram)) = inbound.recv() => {
                    let Some((theirs, packet)) = Digests::unframe(&datagram) else {
                        tracing::debug!(peer = %name, "membership datagram without digests");
                        continue;
                    };
                    if self.digests().compare(theirs).any() {
                        self.note_divergence(&name);
                    }
                    self.membership.handle_packet(&name, &packet)
                }
                Some((due, timer)) = self.timers.1.recv() => {
                    self.health.timer_fired(due.elapsed());
                    self.membership.handle_timer(timer)
                }
                Some(states) = apply.recv() => self.membership.apply(states),
                Some((member, incarnation)) = self.failed_checks.1.recv() => {
                    self.membership.check_failed(&member, incarnation)
                }
                _ = reannounce.tick() => {
                    self.membership.pace_announces(self.quiet_since.elapsed());
                    if self.membership.active_members() > 0 {
                        continue;
                    }
                    let mut all = Effects::default();
                    for seed in &seeds {
                        match self.membership.announce(*seed) {
                            Ok(effects) => {
                                all.send.extend(effects.send);
                                all.timers.extend(effects.timers);
                                all.changed |= effects.changed;
                            }
                            Err(e) => tracing::debug!("announce to {seed}: {e}"),
                        }
                    }
                    Ok(all)
                }
                Some(done) = leave.recv() => {
                    let step = self.membership.leave();
                    self.apply(step);
                    // Give the departure datagrams a moment to leave the socket.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = done.send(());
                    return;
                }
            };
            self.apply(step);
        }
    }

    /// This agent's digests, as stamped on what it sends.
    fn digests(&self) -> Digests {
        Digests::of(
            self.state_fingerprint.load(Ordering::Relaxed),
            self.view.borrow().digest,
        )
    }

    /// Remembers a member whose packet showed a different state or view, for anti-entropy.
    fn note_divergence(&self, name: &str) {
        if let Some((id, _)) = self.members.borrow().get(name) {
            *self.diverged.lock().expect("diverged lock") = Some(id.addr);
        }
    }

    /// Tells a member we just declared down. One that is really gone does not answer; one
    /// that is alive after all (a slow moment, a lost packet too many) rejoins under a new
    /// identity at once, rather than when it next happens to send us something and SWIM
    /// answers it with "you are down" (which, in a large cluster, can take many seconds).
    fn tell_declared_down(&self, id: NodeId) {
        let peers = self.peers.clone();
        tokio::spawn(async move {
            let verdict = Request::SyncMembers {
                states: vec![MemberState {
                    id: id.clone(),
                    // SWIM never refutes Down, whatever the incarnation: the member rejoins.
                    incarnation: 0,
                    liveness: Liveness::Down,
                }],
            };
            if peers.request(id.addr, &verdict).await.is_ok() {
                tracing::debug!(member = %id.name, "a member declared down answered; it rejoins");
            }
        });
    }

    /// Tells every member of a death this agent declared (see [`DeathNotice`]);
    /// each applies it as it would a member list from anti-entropy.
    fn spread_death_notice(&self, notice: DeathNotice) {
        let request = Arc::new(Request::Verdict {
            states: notice.states,
        });
        for addr in notice.to {
            let peers = self.peers.clone();
            let request = request.clone();
            tokio::spawn(async move {
                if let Err(e) = peers.request(addr, &request).await {
                    tracing::debug!(%addr, "death notice not delivered (gossip carries it too): {e}");
                }
            });
        }
    }

    /// Checks a member another member suspects: a ping over our own connection to it, which
    /// QUIC retransmits if a packet is lost. Only the member itself answering in time counts.
    fn check(&self, member: NodeId, incarnation: u16) {
        let peers = self.peers.clone();
        let failed = self.failed_checks.0.clone();
        let timeout = self.membership.check_timeout();
        tokio::spawn(async move {
            let answer = tokio::time::timeout(timeout, peers.request(member.addr, &Request::Ping));
            match answer.await {
                Ok(Ok(Response::Pong { node, .. })) if node == member.name => {
                    tracing::debug!(member = %member.name, "a suspected member answered our check");
                }
                _ => {
                    let _ = failed.send((member, incarnation));
                }
            }
        });
    }

    fn apply(&mut self, step: Result<Effects, MembershipError>) {
        let effects = match step {
            Ok(effects) => effects,
            Err(e) => {
                tracing::debug!("{e}");
                return;
            }
        };
        for (member, incarnation) in effects.checks {
            self.check(member, incarnation);
        }
        if let Some(notice) = effects.notice {
            self.spread_death_notice(notice);
        }
        let digests = self.digests();
        for (addr, packet) in effects.send {
            self.peers.send_datagram(addr, digests.frame(&packet));
        }
        let counters = &self.peers.counters;
        for (counter, amount) in [
            (&counters.acks, effects.acks - effects.indirect_acks),
            (&counters.indirect_acks, effects.indirect_acks),
            (&counters.probes_failed, effects.probes_failed),
            (&counters.suspected, effects.suspected),
            (&counters.declared_down, effects.declared),
        ] {
            ClusterCounters::add(counter, amount.into());
        }
        let before = self.health.score();
        for _ in 0..effects.probes_failed {
            self.health.probe_failed();
        }
        for _ in 0..effects.acks {
            self.health.acked();
        }
        if self.health.score() != before {
            tracing::debug!(
                score = self.health.score(),
                "local health changed; failure-detector timers stretch by 1 + score"
            );
        }
        for (after, timer) in effects.timers {
            // Lifeguard: the probe period and probe timeout stretch while this agent is the
            // unhealthy one. Suspicion is left to dynamic suspicion (see `health`).
            let after = match timer {
                foca::Timer::ProbeRandomMember(_) | foca::Timer::SendIndirectProbe { .. } => {
                    self.health.scale(after)
                }
                _ => after,
            };
            let due = tokio::time::Instant::now() + after;
            let timers = self.timers.0.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(due).await;
                let _ = timers.send((due, timer));
            });
        }
        // foca reports joins and deaths but not suspicion, so compare the whole list.
        let members = self.membership.members();
        let previous = self.members.borrow().clone();
        for (name, (id, liveness)) in &members {
            let before = previous.get(name);
            let was_down = before.is_some_and(|(_, l)| *l == Liveness::Down);
            let restarted = before.is_some_and(|(old, _)| old.incarnation != id.incarnation);
            if (*liveness == Liveness::Down && !was_down) || restarted {
                self.peers.forget(id.addr);
            }
            if *liveness == Liveness::Down && before.is_some_and(|(_, l)| *l != Liveness::Down) {
                self.tell_declared_down(id.clone());
            }
        }
        let modified = self.members.send_if_modified(|current| {
            if *current == members {
                false
            } else {
                *current = members;
                true
            }
        });
        if modified {
            self.quiet_since = tokio::time::Instant::now();
            let members = self.members.borrow();
            let alive = members
                .values()
                .filter(|(_, liveness)| *liveness == Liveness::Alive)
                .count();
            tracing::debug!(alive, known = members.len(), "member list changed");
        }
        if modified || effects.changed {
            self.changed.notify_one();
        }
        let digest = self.membership.digest();
        if digest != self.view.borrow().digest {
            self.view.send_replace(MembershipView {
                digest,
                states: Arc::new(self.membership.states()),
            });
        }
    }
}
