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
//! [`crate::sync`]) repairs the rest. Everything here is pure: the shell passes the member
//! list and a random generator in, and gets targets and a batch out.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use orchestrator::state::Entry;
use rand::Rng;
use rand::seq::index::sample;

use crate::cluster::replication::{NodeRecord, Updates, WorkloadRecord};
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fanout: 3,
            retransmit_mult: 3,
            max_batch_entries: 1024,
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
    }

    /// Rumours still to send.
    pub fn pending(&self) -> usize {
        self.apps.0.len() + self.nodes.0.len() + self.workloads.0.len()
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

        // The freshest rumours first (most transmissions left), then in key order.
        let mut chosen: Vec<(u32, u8, String)> = self
            .apps
            .candidates(0)
            .chain(self.nodes.candidates(1))
            .chain(self.workloads.candidates(2))
            .map(|(left, section, key)| (left, section, key.clone()))
            .collect();
        if chosen.len() > self.config.max_batch_entries {
            chosen.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| (a.1, &a.2).cmp(&(b.1, &b.2))));
            chosen.truncate(self.config.max_batch_entries);
        }
        let mut updates = Updates::default();
        for (_, section, key) in chosen {
            match section {
                0 => updates.apps.push(self.apps.take(&key, sends)),
                1 => updates.nodes.push(self.nodes.take(&key, sends)),
                _ => updates.workloads.push(self.workloads.take(&key, sends)),
            }
        }
        Some(Round { targets, updates })
    }
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
            let config = Config { fanout, retransmit_mult: 3, max_batch_entries: max_batch };
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
            let config = Config { fanout: 3, retransmit_mult: 3, max_batch_entries: 8 };
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

    /// The epidemic itself: agents that pass on only what is new to them. With the default
    /// budget (9 at 200 agents) the share an epidemic leaves out is about `e^-9`, so over 20
    /// runs of 200 agents about half an agent in all misses the write (anti-entropy repairs
    /// it); every run dies out after a logarithmic number of rounds.
    #[test]
    fn one_write_reaches_nearly_every_agent_through_rumours_alone() {
        let n = 200;
        let list: Vec<SocketAddr> = (0..n).map(addr).collect();
        let index = |a: &SocketAddr| list.iter().position(|b| b == a).unwrap();
        let mut missed = 0;
        let mut worst_rounds = 0;
        for seed in 0..20u64 {
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
                            deliveries.push((index(&target), round.updates.clone()));
                        }
                    }
                }
                if deliveries.is_empty() {
                    break;
                }
                rounds += 1;
                for (to, updates) in deliveries {
                    let changed = agents[to].0.merge(updates, 1000);
                    agents[to].1.offer(changed, n - 1);
                }
            }
            let reached = agents
                .iter()
                .filter(|(r, _)| r.workloads.len() == 1)
                .count();
            assert!(
                reached >= n - 2,
                "seed {seed}: {reached} of {n} agents heard the write"
            );
            missed += n - reached;
            worst_rounds = worst_rounds.max(rounds);
        }
        assert!(
            missed <= 4,
            "{missed} of {} agent-runs missed the write",
            20 * n
        );
        // Budget 9 at fanout 3: each agent passes a rumour on for three rounds after hearing
        // it.
        assert!(worst_rounds <= 20, "{worst_rounds} rounds");
    }
}
