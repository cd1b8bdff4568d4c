//! Properties over generated histories: merging is commutative, associative and idempotent,
//! delivery order never matters, and one push-pull anti-entropy exchange makes two replicas
//! equal.
//!
//! Two sources of replicas are used. Simulated clusters (three nodes, each with its own clock
//! and a wall clock that jumps around, gossiping now and then) produce the histories a correct
//! deployment produces. Raw entries drawn from a tiny version space also produce the conflicts
//! a correct clock never would (one version, two values), to exercise the tie-break.

use proptest::prelude::*;

use super::*;

const NODES: [&str; 3] = ["n0", "n1", "n2"];
const KEYS: [&str; 4] = ["k0", "k1", "k2", "k3"];
/// Small enough that wall times repeat and run backwards often.
const WALL_MS: std::ops::Range<u64> = 0..40;

type Write = (String, Entry<u8>);

#[derive(Debug, Clone)]
enum Op {
    Put {
        node: usize,
        key: usize,
        value: u8,
        wall_ms: u64,
    },
    Delete {
        node: usize,
        key: usize,
        wall_ms: u64,
    },
    /// `to` receives everything `from` holds, as one gossip message would deliver it.
    Sync {
        from: usize,
        to: usize,
        wall_ms: u64,
    },
}

/// Three replicas, and every write ever made to any of them.
#[derive(Debug, Clone)]
struct Scenario {
    replicas: [LwwMap<u8>; 3],
    writes: Vec<Write>,
}

fn op() -> impl Strategy<Value = Op> {
    let node = || 0..NODES.len();
    prop_oneof![
        4 => (node(), 0..KEYS.len(), 0..4u8, WALL_MS)
            .prop_map(|(node, key, value, wall_ms)| Op::Put { node, key, value, wall_ms }),
        2 => (node(), 0..KEYS.len(), WALL_MS)
            .prop_map(|(node, key, wall_ms)| Op::Delete { node, key, wall_ms }),
        1 => (node(), node(), WALL_MS).prop_map(|(from, to, wall_ms)| Op::Sync { from, to, wall_ms }),
    ]
}

fn simulate(ops: Vec<Op>) -> Scenario {
    let mut clocks = NODES.map(Clock::new);
    let mut replicas: [LwwMap<u8>; 3] = Default::default();
    let mut writes = Vec::new();
    for op in ops {
        match op {
            Op::Put {
                node,
                key,
                value,
                wall_ms,
            } => {
                let version = clocks[node].tick(wall_ms);
                replicas[node].put(KEYS[key], value, version.clone());
                writes.push((KEYS[key].to_owned(), Entry::live(value, version)));
            }
            Op::Delete { node, key, wall_ms } => {
                let version = clocks[node].tick(wall_ms);
                replicas[node].delete(KEYS[key], version.clone());
                writes.push((KEYS[key].to_owned(), Entry::tombstone(version)));
            }
            Op::Sync { from, to, wall_ms } => {
                let message = replicas[from].clone();
                let accepted = message
                    .newest_version()
                    .is_none_or(|newest| clocks[to].observe(newest, wall_ms).is_ok());
                if accepted {
                    replicas[to].merge(&message);
                }
            }
        }
    }
    Scenario { replicas, writes }
}

fn cluster() -> impl Strategy<Value = Scenario> {
    prop::collection::vec(op(), 0..40).prop_map(simulate)
}

/// Entries from a version space so small that equal versions with different values are
/// common, dealt round-robin to three replicas.
fn conflicting() -> impl Strategy<Value = Scenario> {
    let write = (
        0..KEYS.len(),
        0..3u64,
        0..2u32,
        prop::sample::select(&NODES[..2]),
        prop::option::of(0..3u8),
    )
        .prop_map(|(key, wall_ms, logical, node, value)| {
            let version = Timestamp {
                wall_ms,
                logical,
                node: node.to_owned(),
            };
            (
                KEYS[key].to_owned(),
                Entry {
                    version,
                    value,
                    seal: None,
                },
            )
        });
    prop::collection::vec(write, 0..24).prop_map(|writes| {
        let mut replicas: [LwwMap<u8>; 3] = Default::default();
        for (index, (key, entry)) in writes.iter().enumerate() {
            replicas[index % 3].merge_entry(key.clone(), entry.clone());
        }
        Scenario { replicas, writes }
    })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    prop_oneof![3 => cluster(), 1 => conflicting()]
}

fn merged(left: &LwwMap<u8>, right: &LwwMap<u8>) -> LwwMap<u8> {
    let mut result = left.clone();
    result.merge(right);
    result
}

fn applied(writes: &[Write]) -> LwwMap<u8> {
    let mut map = LwwMap::new();
    for (key, entry) in writes {
        map.merge_entry(key.clone(), entry.clone());
    }
    map
}

/// The exchange described in `digest`: A sends its digest, B answers with what A lacks and
/// what it wants, and A sends the wanted entries back.
fn push_pull(a: &mut LwwMap<u8>, b: &mut LwwMap<u8>) {
    let digest = a.digest();
    let for_a = b.newer_than(&digest);
    let wanted = b.wanted_from(&digest);
    for (key, entry) in for_a {
        a.merge_entry(key, entry);
    }
    for (key, entry) in a.entries_for(&wanted) {
        b.merge_entry(key, entry);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn merge_is_commutative(scenario in scenario()) {
        let [a, b, c] = &scenario.replicas;
        prop_assert_eq!(merged(a, b), merged(b, a));
        prop_assert_eq!(merged(b, c), merged(c, b));
    }

    #[test]
    fn merge_is_associative(scenario in scenario()) {
        let [a, b, c] = &scenario.replicas;
        prop_assert_eq!(merged(&merged(a, b), c), merged(a, &merged(b, c)));
    }

    #[test]
    fn merge_is_idempotent(scenario in scenario()) {
        let [a, b, _] = &scenario.replicas;
        let mut same = a.clone();
        prop_assert!(!same.merge(a));
        prop_assert_eq!(&same, a);
        let mut both = merged(a, b);
        prop_assert!(!both.merge(b));
        prop_assert_eq!(both, merged(a, b));
    }

    #[test]
    fn merge_reports_exactly_whether_the_map_changed(scenario in scenario()) {
        let [a, b, _] = &scenario.replicas;
        let mut target = a.clone();
        let changed = target.merge(b);
        prop_assert_eq!(changed, &target != a);
        let mut target = LwwMap::new();
        for (key, entry) in scenario.writes {
            let before = target.clone();
            let changed = target.merge_entry(key, entry);
            prop_assert_eq!(changed, target != before);
        }
    }

    #[test]
    fn delivery_order_does_not_matter(
        (scenario, shuffled) in scenario().prop_flat_map(|scenario| {
            let writes = scenario.writes.clone();
            (Just(scenario), Just(writes).prop_shuffle())
        })
    ) {
        let in_order = applied(&scenario.writes);
        prop_assert_eq!(&applied(&shuffled), &in_order);
        let [a, b, c] = &scenario.replicas;
        prop_assert_eq!(&merged(&merged(a, b), c), &in_order);
    }

    /// Only over cluster histories: digests compare versions alone, so a conflict (one version,
    /// two values) is invisible to them, and converging it is the tie-break's job on push.
    #[test]
    fn one_push_pull_exchange_converges_two_replicas(scenario in cluster(), expire_at in 0..45u64) {
        let [a, b, _] = scenario.replicas;
        let union = merged(&a, &b);
        let (mut a, mut b) = (a, b);
        push_pull(&mut a, &mut b);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.fingerprint(), b.fingerprint());
        prop_assert_eq!(&a, &union);
        prop_assert!(b.newer_than(&a.digest()).is_empty());
        prop_assert!(b.wanted_from(&a.digest()).is_empty());

        // Replicas that expired tombstones at different times still end up equal.
        a.expire_tombstones(expire_at);
        push_pull(&mut b, &mut a);
        prop_assert_eq!(&a, &b);
    }

    #[test]
    fn fingerprints_match_exactly_when_digests_do(scenario in scenario()) {
        let [a, b, c] = &scenario.replicas;
        for (left, right) in [(a, b), (b, c), (a, c), (a, a)] {
            prop_assert_eq!(left.fingerprint() == right.fingerprint(), left.digest() == right.digest());
            prop_assert_eq!(left.fingerprint(), left.digest().fingerprint());
        }
    }

    #[test]
    fn expiry_drops_old_tombstones_and_nothing_else(scenario in scenario(), cutoff in 0..45u64) {
        for replica in &scenario.replicas {
            let mut expired = replica.clone();
            let removed = expired.expire_tombstones(cutoff);
            prop_assert_eq!(removed, replica.entries().count() - expired.entries().count());
            prop_assert!(expired.iter().eq(replica.iter()));
            prop_assert!(expired
                .entries()
                .all(|(_, entry)| !entry.is_tombstone() || entry.version.wall_ms >= cutoff));
        }
    }

    #[test]
    fn every_tick_follows_everything_issued_or_observed(
        events in prop::collection::vec((any::<bool>(), 0..200u64, 0..3u32, prop::sample::select(&NODES[..])), 1..60)
    ) {
        let mut clock = Clock::new("n0");
        let mut seen: Option<Timestamp> = None;
        for (is_tick, wall_ms, logical, node) in events {
            if is_tick {
                let issued = clock.tick(wall_ms);
                prop_assert!(seen.as_ref().is_none_or(|seen| issued > *seen));
                seen = Some(issued);
            } else {
                let remote = Timestamp { wall_ms: wall_ms + 10, logical, node: node.to_owned() };
                prop_assert!(clock.observe(&remote, wall_ms).is_ok());
                prop_assert!(clock.last() > &remote);
                seen = seen.max(Some(remote));
            }
        }
    }
}
