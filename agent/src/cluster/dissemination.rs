//! How changes to the replicated state spread: epidemic push, coalesced and batched.
//!
//! Pushing every change to every member costs `members x changes` messages, each carrying one
//! change; under a burst (hundreds of replicas reporting at once) that is what drowns a small
//! agent. Instead, as memberlist and Lifeguard do for their own broadcasts, every change an
//! agent learns (written here, or new to it in a peer's push) becomes a *rumour* with a
//! transmission budget of `retransmit_mult x ceil(log10(members + 1))`. Every round (the
//! shell's tick, 100 ms in the agent) the agent sends everything pending to `fanout` random
//! members in one batch and charges each rumour one transmission per member it went to; a
//! rumour whose budget is spent is dropped. A later version of a key replaces the rumour of
//! an earlier one, so a key that changes ten times in a round costs one entry, not ten.
//!
//! So an agent sends at most `fanout` messages per round, whatever the load; each change
//! reaches every member with high probability after `O(log members)` rounds (with budget
//! `b` per agent the expected share left out is about `e^-b`), and anti-entropy (see
//! [`crate::sync`]) repairs the rest.
//!
//! The budget alone sends each change to every member about `b` times over. Feedback, as in
//! Demers et al.'s rumour mongering, cuts that: a member answers a batch by saying which
//! entries it already had, and each such answer takes [`Config::known_penalty`] more
//! transmissions off that rumour, so a rumour fades once most members know it and keeps its
//! budget while it is news. Everything here is pure: the shell passes the member
//! list and a random generator in, and gets targets and a batch out.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use orchestrator::state::Entry;
use rand::Rng;
use rand::seq::index::sample;

use crate::cluster::replication::{NodeRecord, Updates, WorkloadRecord};
use crate::maintenance::Maintenance;
use crate::rollout::activity::Activity;
use crate::store::StoredApp;

/// Tuning of the epidemic; the defaults follow memberlist's LAN profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Members each round's batch goes to.
    pub fanout: usize,
    /// Transmissions per rumour, per power of ten of the cluster's size.
    pub retransmit_mult: u32,
    /// At most this many entries per batch; the freshest rumours go first.
    pub max_batch_entries: usize,
    /// Transmissions a rumour loses each time a member answers that it already had it. On
    /// 200 agents, 1 sends 31% fewer copies and leaves 0.2% of agents to anti-entropy; 2 sends
    /// 52% fewer and leaves 1.4%, whose repair costs a digest exchange each, so 1.
    pub known_penalty: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fanout: 3,
            retransmit_mult: 3,
            max_batch_entries: 1024,
            known_penalty: 1,
        }
    }
}

impl Config {
    /// How many members an agent tells about each change it learns, in a cluster where it
    /// sees `members` others.
    pub fn budget(&self, members: usize) -> u32 {
        let decades = ((members + 1) as f64).log10().ceil().max(1.0) as u32;
        self.retransmit_mult * decades
    }
}

/// One round's output: the same batch for each of these members.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    pub targets: Vec<SocketAddr>,
    pub updates: Updates,
}

#[derive(Debug, Clone)]
struct Rumour<V> {
    entry: Entry<V>,
    /// Transmissions left.
    left: u32,
}

#[derive(Debug, Clone)]
struct Section<V>(BTreeMap<String, Rumour<V>>);

impl<V> Default for Section<V> {
    fn default() -> Self {
        Section(BTreeMap::new())
    }
}

impl<V: Clone> Section<V> {
    fn offer(&mut self, entries: Vec<(String, Entry<V>)>, budget: u32) {
        for (key, entry) in entries {
            let stale = self
                .0
                .get(&key)
                .is_some_and(|r| r.entry.version >= entry.version);
            if !stale {
                self.0.insert(
                    key,
                    Rumour {
                        entry,
                        left: budget,
                    },
                );
            }
        }
    }

    /// The rumours to send, as `(left, key)`, for choosing the freshest across sections.
    fn candidates(&self, section: u8) -> impl Iterator<Item = (u32, u8, &String)> {
        self.0.iter().map(move |(key, r)| (r.left, section, key))
    }

    /// A member already had `entry`: its rumour, if still at that version, loses `penalty`.
    fn known(&mut self, key: &str, entry: &Entry<V>, penalty: u32) {
        if let Some(rumour) = self.0.get_mut(key)
            && rumour.entry.version == entry.version
        {
            rumour.left = rumour.left.saturating_sub(penalty);
            if rumour.left == 0 {
                self.0.remove(key);
            }
        }
    }

    /// Takes one key into the batch, charging it `sends` transmissions.
    fn take(&mut self, key: &str, sends: u32) -> (String, Entry<V>) {
        let rumour = self.0.get_mut(key).expect("candidate keys exist");
        rumour.left = rumour.left.saturating_sub(sends);
        let out = (key.to_string(), rumour.entry.clone());
        if rumour.left == 0 {
            self.0.remove(key);
        }
        out
    }
}

/// The rumours one agent is spreading.
#[derive(Debug, Clone, Default)]
pub struct Dissemination {
    config: Config,
    apps: Section<StoredApp>,
    nodes: Section<NodeRecord>,
    workloads: Section<WorkloadRecord>,
    activity: Section<Activity>,
    maintenance: Section<Maintenance>,
}

impl Dissemination {
    pub fn new(config: Config) -> Self {
        Dissemination {
            config,
            ..Dissemination::default()
        }
    }

    pub fn config(&self) -> Config {
        self.config
    }

    /// Entries this agent just learned (its own writes, or what a peer's push changed here),
    /// to spread among `members` others.
    pub fn offer(&mut self, updates: Updates, members: usize) {
        let budget = self.config.budget(members);
        self.apps.offer(updates.apps, budget);
        self.nodes.offer(updates.nodes, budget);
        self.workloads.offer(updates.workloads, budget);
        self.activity.offer(updates.activity, budget);
        self.maintenance.offer(updates.maintenance, budget);
    }

    /// A member's answer to a batch this agent sent: `known[i]` says whether it already had
    /// the batch's `i`-th entry (apps, then nodes, then workloads, then activity, in the
    /// batch's order).
    pub fn feedback(&mut self, sent: &Updates, known: &[bool]) {
        let penalty = self.config.known_penalty;
        let mut known = known.iter().copied();
        for (key, entry) in &sent.apps {
            if known.next() == Some(true) {
                self.apps.known(key, entry, penalty);
            }
        }
        for (key, entry) in &sent.nodes {
            if known.next() == Some(true) {
                self.nodes.known(key, entry, penalty);
            }
        }
        for (key, entry) in &sent.workloads {
            if known.next() == Some(true) {
                self.workloads.known(key, entry, penalty);
            }
        }
        for (key, entry) in &sent.activity {
            if known.next() == Some(true) {
                self.activity.known(key, entry, penalty);
            }
        }
        for (key, entry) in &sent.maintenance {
            if known.next() == Some(true) {
                self.maintenance.known(key, entry, penalty);
            }
        }
    }

    /// Rumours still to send.
    pub fn pending(&self) -> usize {
        self.apps.0.len()
            + self.nodes.0.len()
            + self.workloads.0.len()
            + self.activity.0.len()
            + self.maintenance.0.len()
    }

    /// One round: up to `fanout` distinct members chosen at random from `members`, and the
    /// batch for all of them. `None` when there is nothing to send or nobody to send it to.
    pub fn round(&mut self, members: &[SocketAddr], rng: &mut impl Rng) -> Option<Round> {
        if self.pending() == 0 || members.is_empty() {
            return None;
        }
        let count = self.config.fanout.min(members.len());
        let targets: Vec<SocketAddr> = sample(rng, members.len(), count)
            .into_iter()
            .map(|i| members[i])
            .collect();
        let sends = targets.len() as u32;

        // The freshest rumours first (most transmissions left), then in key order. A burst
        // leaves thousands pending: choosing the batch is a linear selection over borrowed
        // keys, and only the chosen ones are copied.
        let mut candidates: Vec<(u32, u8, &String)> = self
            .apps
            .candidates(0)
            .chain(self.nodes.candidates(1))
            .chain(self.workloads.candidates(2))
            .chain(self.activity.candidates(3))
            .chain(self.maintenance.candidates(4))
            .collect();
        let max = self.config.max_batch_entries;
        if candidates.len() > max {
            let order = |a: &(u32, u8, &String), b: &(u32, u8, &String)| {
                b.0.cmp(&a.0).then_with(|| (a.1, a.2).cmp(&(b.1, b.2)))
            };
            if max > 0 {
                candidates.select_nth_unstable_by(max - 1, order);
            }
            candidates.truncate(max);
            candidates.sort_unstable_by(order);
        }
        let chosen: Vec<(u8, String)> = candidates
            .into_iter()
            .map(|(_, section, key)| (section, key.clone()))
            .collect();
        let mut updates = Updates::default();
        for (section, key) in chosen {
            match section {
                0 => updates.apps.push(self.apps.take(&key, sends)),
                1 => updates.nodes.push(self.nodes.take(&key, sends)),
                2 => updates.workloads.push(self.workloads.take(&key, sends)),
                3 => updates.activity.push(self.activity.take(&key, sends)),
                _ => updates.maintenance.push(self.maintenance.take(&key, sends)),
            }
        }
        Some(Round { targets, updates })
    }
}

/// The receiver's side of feedback: for each entry of `received` in order (apps, nodes,
/// workloads, activity), whether it was already known here, i.e. not among the entries the merge
/// `changed` (which keeps the received order).
pub fn known_entries(received: &Updates, changed: &Updates) -> Vec<bool> {
    fn section<V>(received: &[(String, Entry<V>)], changed: &[(String, Entry<V>)]) -> Vec<bool> {
        let mut changed = changed.iter().peekable();
        received
            .iter()
            .map(|(key, entry)| {
                let new = changed
                    .peek()
                    .is_some_and(|(k, e)| k == key && e.version == entry.version);
                if new {
                    changed.next();
                }
                !new
            })
            .collect()
    }
    let mut known = section(&received.apps, &changed.apps);
    known.extend(section(&received.nodes, &changed.nodes));
    known.extend(section(&received.workloads, &changed.workloads));
    known.extend(section(&received.activity, &changed.activity));
    known.extend(section(&received.maintenance, &changed.maintenance));
    known
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use orchestrator::WorkloadId;
    use orchestrator::state::Clock;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::api::WorkloadState;
    use crate::cluster::replication::Replica;

    fn addr(i: usize) -> SocketAddr {
        SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 7946))
    }

    fn record(replica: u32, restarts: u32) -> WorkloadRecord {
        WorkloadRecord {
            id: WorkloadId {
                app: "app".into(),
                component: "c".into(),
                replica,
            },
            node: "n".into(),
            state: WorkloadState::Running,
            restarts,
            message: String::new(),
            pid: None,
            fingerprint: 1,
            learner: None,
            since_ms: 0,
            last_exit: String::new(),
            address: None,
        }
    }

    /// `keys` workload entries, the i-th written `writes[i]` times on one clock.
    fn writes(clock: &mut Clock, keys: &[u32]) -> Updates {
        let mut updates = Updates::default();
        for (i, &times) in keys.iter().enumerate() {
            for t in 0..times {
                let version = clock.tick(1000 + t as u64);
                updates.workloads.push((
                    format!("app/c/{i}@n"),
                    Entry::live(record(i as u32, t), version),
                ));
            }
        }
        updates
    }

    #[test]
    fn the_budget_grows_with_the_decades_of_the_cluster() {
        let config = Config::default();
        assert_eq!(config.budget(0), 3);
        assert_eq!(config.budget(9), 3);
        assert_eq!(config.budget(10), 6);
        assert_eq!(config.budget(99), 6);
        assert_eq!(config.budget(999), 9);
        assert_eq!(config.budget(1000), 12);
    }

    #[test]
    fn nothing_to_say_or_nobody_to_tell_sends_nothing() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut d = Dissemination::new(Config::default());
        assert!(d.round(&[addr(1)], &mut rng).is_none());
        d.offer(writes(&mut Clock::new("n"), &[1]), 1);
        assert!(d.round(&[], &mut rng).is_none());
        assert_eq!(d.pending(), 1, "a rumour waits for members");
    }

    proptest! {
        /// A round goes to at most `fanout` distinct members, all of them from the list, and
        /// carries at most `max_batch_entries` entries, each key once, at its newest version.
        #[test]
        fn rounds_are_bounded_and_carry_the_newest_version(
            keys in prop::collection::vec(1u32..4, 1..40),
            members in 1usize..12,
            fanout in 1usize..5,
            max_batch in 1usize..50,
            seed in any::<u64>(),
        ) {
            let config = Config { fanout, retransmit_mult: 3, max_batch_entries: max_batch, ..Config::default() };
            let mut d = Dissemination::new(config);
            let mut clock = Clock::new("n");
            let updates = writes(&mut clock, &keys);
            let newest: BTreeMap<String, Entry<WorkloadRecord>> =
                updates.workloads.iter().cloned().collect();
            d.offer(updates, members);
            prop_assert_eq!(d.pending(), keys.len(), "one rumour per key");
            let list: Vec<SocketAddr> = (0..members).map(addr).collect();
            let mut rng = StdRng::seed_from_u64(seed);
            while let Some(round) = d.round(&list, &mut rng) {
                let targets: BTreeSet<_> = round.targets.iter().collect();
                prop_assert_eq!(targets.len(), round.targets.len());
                prop_assert_eq!(round.targets.len(), fanout.min(members));
                prop_assert!(round.targets.iter().all(|t| list.contains(t)));
                prop_assert!(round.updates.workloads.len() <= max_batch);
                let sent: BTreeSet<_> = round.updates.workloads.iter().map(|(k, _)| k).collect();
                prop_assert_eq!(sent.len(), round.updates.workloads.len());
                for (key, entry) in &round.updates.workloads {
                    prop_assert_eq!(Some(entry), newest.get(key));
                }
            }
        }

        /// Every rumour is sent to exactly its budget of members (rounded up to whole rounds),
        /// then dropped: nothing is retransmitted forever, nothing is dropped early.
        #[test]
        fn each_rumour_is_sent_to_its_budget_of_members(
            keys in 1usize..30,
            members in 1usize..40,
            seed in any::<u64>(),
        ) {
            let config = Config { fanout: 3, retransmit_mult: 3, max_batch_entries: 8, ..Config::default() };
            let mut d = Dissemination::new(config);
            d.offer(writes(&mut Clock::new("n"), &vec![1; keys]), members);
            let list: Vec<SocketAddr> = (0..members).map(addr).collect();
            let mut rng = StdRng::seed_from_u64(seed);
            let mut sent: BTreeMap<String, u32> = BTreeMap::new();
            while let Some(round) = d.round(&list, &mut rng) {
                for (key, _) in round.updates.workloads {
                    *sent.entry(key).or_default() += round.targets.len() as u32;
                }
            }
            let budget = config.budget(members);
            let per_round = config.fanout.min(members) as u32;
            let expected = budget.div_ceil(per_round) * per_round;
            prop_assert_eq!(sent.len(), keys);
            prop_assert!(sent.values().all(|&n| n == expected), "{sent:?} vs {expected}");
        }

        /// An older version never replaces a newer rumour, whatever order they arrive in.
        #[test]
        fn an_older_version_never_replaces_a_newer_rumour(times in 2u32..6, seed in any::<u64>()) {
            let mut clock = Clock::new("n");
            let mut updates = writes(&mut clock, &[times]);
            let newest = updates.workloads.last().cloned().unwrap();
            let mut rng = StdRng::seed_from_u64(seed);
            use rand::seq::SliceRandom;
            updates.workloads.shuffle(&mut rng);
            let mut d = Dissemination::new(Config::default());
            for entry in updates.workloads {
                d.offer(Updates { workloads: vec![entry], ..Updates::default() }, 5);
            }
            let round = d.round(&[addr(1)], &mut rng).unwrap();
            prop_assert_eq!(round.updates.workloads, vec![newest]);
        }
    }

    /// One write spread by rumours alone among `n` agents, once per seed, with or without
    /// feedback: `(agents that missed it over all runs, most rounds a run took, entries sent)`.
    fn epidemic(n: usize, seeds: u64, feedback: bool) -> (usize, usize, usize) {
        let list: Vec<SocketAddr> = (0..n).map(addr).collect();
        let index = |a: &SocketAddr| list.iter().position(|b| b == a).unwrap();
        let (mut missed, mut worst_rounds, mut sent) = (0, 0, 0);
        for seed in 0..seeds {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut agents: Vec<(Replica, Dissemination)> = (0..n)
                .map(|i| (Replica::new(&format!("n{i}")), Dissemination::default()))
                .collect();
            let write = agents[0].0.put_workload(record(0, 0), 1000);
            agents[0].1.offer(write, n - 1);
            let mut rounds = 0;
            loop {
                let mut deliveries = Vec::new();
                for (i, agent) in agents.iter_mut().enumerate() {
                    let others: Vec<SocketAddr> =
                        list.iter().copied().filter(|a| *a != list[i]).collect();
                    if let Some(round) = agent.1.round(&others, &mut rng) {
                        for target in round.targets {
                            deliveries.push((i, index(&target), round.updates.clone()));
                        }
                    }
                }
                if deliveries.is_empty() {
                    break;
                }
                rounds += 1;
                for (from, to, updates) in deliveries {
                    sent += updates.len();
                    let changed = agents[to].0.merge(&updates, 1000);
                    if feedback {
                        let known = known_entries(&updates, &changed);
                        agents[from].1.feedback(&updates, &known);
                    }
                    agents[to].1.offer(changed, n - 1);
                }
            }
            let reached = agents
                .iter()
                .filter(|(r, _)| r.workloads.len() == 1)
                .count();
            missed += n - reached;
            worst_rounds = worst_rounds.max(rounds);
        }
        (missed, worst_rounds, sent)
    }

    /// The epidemic itself: agents that pass on only what is new to them. With the default
    /// budget (9 at 200 agents) the share an epidemic leaves out is about `e^-9`, so over 20
    /// runs of 200 agents about half an agent in all misses the write (anti-entropy repairs
    /// it); every run dies out after a logarithmic number of rounds.
    #[test]
    fn one_write_reaches_nearly_every_agent_through_rumours_alone() {
        let (missed, worst_rounds, sent) = epidemic(200, 20, false);
        assert!(missed <= 4, "{missed} of 4000 agent-runs missed the write");
        // Budget 9 at fanout 3: each agent passes a rumour on for three rounds after hearing
        // it.
        assert!(worst_rounds <= 20, "{worst_rounds} rounds");
        // Every agent that heard it sends it to its whole budget: about 9 x 200 per run.
        assert!(sent >= 20 * 9 * 190, "{sent} entries sent");
    }

    /// Feedback: the same epidemic sends fewer copies, and still reaches nearly every agent
    /// (what it misses is anti-entropy's to repair).
    #[test]
    fn feedback_cuts_the_copies_and_keeps_the_reach() {
        let (missed_blind, _, sent_blind) = epidemic(200, 20, false);
        let (missed, worst_rounds, sent) = epidemic(200, 20, true);
        println!(
            "blind: {sent_blind} sent, {missed_blind} missed; feedback: {sent} sent, {missed} missed"
        );
        assert!(
            (sent as f64) < 0.8 * sent_blind as f64,
            "feedback sent {sent}, blind {sent_blind}"
        );
        assert!(missed <= 20, "{missed} of 4000 agent-runs missed the write");
        assert!(worst_rounds <= 20, "{worst_rounds} rounds");
    }

    #[test]
    fn known_entries_marks_what_the_merge_did_not_change() {
        let mut clock = Clock::new("n");
        let received = writes(&mut clock, &[1, 1, 1]);
        let changed = Updates {
            workloads: vec![received.workloads[1].clone()],
            ..Updates::default()
        };
        assert_eq!(known_entries(&received, &changed), vec![true, false, true]);
    }

    /// A known answer only fades the rumour of the version that was sent.
    #[test]
    fn feedback_fades_only_the_version_that_was_sent() {
        let mut clock = Clock::new("n");
        let first = writes(&mut clock, &[1]);
        let mut d = Dissemination::default();
        d.offer(first.clone(), 5);
        d.feedback(&first, &[true]);
        let mut rng = StdRng::seed_from_u64(1);
        let members: Vec<SocketAddr> = (0..5).map(addr).collect();
        // Budget 3, penalty 1: three "already had it" answers end the rumour.
        d.feedback(&first, &[true]);
        assert_eq!(d.pending(), 1);
        d.feedback(&first, &[true]);
        assert_eq!(d.pending(), 0);
        assert!(d.round(&members, &mut rng).is_none());
        let newer = writes(&mut clock, &[2]);
        let newest = Updates {
            workloads: vec![newer.workloads[1].clone()],
            ..Updates::default()
        };
        d.offer(newest.clone(), 5);
        d.feedback(&first, &[true]);
        assert_eq!(
            d.pending(),
            1,
            "an answer about an older version changes nothing"
        );
    }
}
