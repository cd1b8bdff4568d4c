//! Rolling updates decided without a coordinator: every agent computes the same step from the
//! same view of the replicated state, so no leader is needed to pace a rollout.
//!
//! A component's replicas are slots `0..desired`, plus up to `max_surge` surge slots after
//! them while a rollout is in progress. [`step`] says which definition (by fingerprint) each
//! slot should run now; the node a slot is placed on replaces what it runs when that differs.
//! [`target`] says which definition a rollout is heading for: the new one, or, once the
//! progress deadline has passed without the new one becoming fully available, the last one
//! that was (automatic rollback).
//!
//! The rules, as in Kubernetes' Deployment controller:
//! - a slot that is down, or runs the old definition without being available, is switched at
//!   once (that costs no availability);
//! - an available old slot is switched only while at least `desired - max_unavailable` slots
//!   stay available, counting surge slots that run the new definition;
//! - a replica is available once it has been ready for `min_ready_seconds`;
//! - lower slots go first, so every agent picks the same ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `rollout` trait: how fast a changed component may be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPolicy {
    /// Replicas that may be unavailable during the update (default 1).
    pub max_unavailable: u32,
    /// Replicas that may run above the desired count (default 0 for processes, 1 for
    /// containers).
    pub max_surge: u32,
    /// Seconds a new replica must have been ready before it counts as available (default 0).
    pub min_ready_seconds: u32,
    /// Seconds a rollout may take before it is rolled back (default 120).
    pub progress_deadline_seconds: u32,
}

impl RolloutPolicy {
    /// The defaults for a component; `surge` is its type's default `max_surge`.
    pub fn with_surge(surge: u32) -> Self {
        RolloutPolicy {
            max_unavailable: 1,
            max_surge: surge,
            min_ready_seconds: 0,
            progress_deadline_seconds: 120,
        }
    }
}

/// The `rollout` trait as written: `maxUnavailable` and `maxSurge` as counts or as
/// percentages of the desired replicas (Kubernetes' `IntOrString`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<Share>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<Share>,
    pub min_ready_seconds: u32,
    pub progress_deadline_seconds: u32,
}

/// A number of replicas, or a percentage of the desired ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Share {
    Count(u32),
    Percent(u32),
}

impl Share {
    /// Of `desired`: percentages round down for `maxUnavailable` and up for `maxSurge`, as
    /// in Kubernetes.
    fn of(self, desired: u32, round_up: bool) -> u32 {
        match self {
            Share::Count(count) => count,
            Share::Percent(percent) => {
                let scaled = u64::from(desired) * u64::from(percent);
                let share = if round_up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                };
                u32::try_from(share).unwrap_or(u32::MAX)
            }
        }
    }
}

impl RolloutSpec {
    /// The policy for `desired` replicas of a component whose type surges by
    /// `default_surge`. When both limits come to zero (small percentages of few replicas),
    /// one replica may be unavailable, as Kubernetes does, so that a rollout can move.
    pub fn policy(&self, desired: u32, default_surge: u32) -> RolloutPolicy {
        let mut max_unavailable = self.max_unavailable.map_or(1, |s| s.of(desired, false));
        let max_surge = self
            .max_surge
            .map_or(default_surge, |s| s.of(desired, true));
        if max_unavailable == 0 && max_surge == 0 {
            max_unavailable = 1;
        }
        RolloutPolicy {
            max_unavailable,
            max_surge,
            min_ready_seconds: self.min_ready_seconds,
            progress_deadline_seconds: self.progress_deadline_seconds,
        }
    }
}

/// What one slot runs, as the cluster reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The definition it runs.
    pub fingerprint: u64,
    /// Since when (wall-clock milliseconds) it has been ready; `None` while it is not.
    pub ready_since_ms: Option<u64>,
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Some slots still run another definition, or are not available yet.
    Progressing { available: u32 },
    /// Every slot runs the target and is available; no surge slot remains.
    Complete,
}

/// What every slot should run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Slot -> fingerprint. Slots not listed run nothing (surge slots after a rollout).
    pub assign: BTreeMap<u32, u64>,
    pub phase: Phase,
}

/// The next step of moving `desired` slots to the definition `target`, given what each slot
/// runs (`observed`, by slot; missing slots run nothing) at `now_ms`.
pub fn step(
    desired: u32,
    policy: &RolloutPolicy,
    target: u64,
    observed: &BTreeMap<u32, Slot>,
    now_ms: u64,
) -> Step {
    let min_ready_ms = u64::from(policy.min_ready_seconds) * 1000;
    let available = |slot: &Slot| {
        slot.ready_since_ms
            .is_some_and(|since| now_ms.saturating_sub(since) >= min_ready_ms)
    };
    let mut assign = BTreeMap::new();
    // Available slots running an older definition, lowest first: the ones to switch.
    let mut serving_old = Vec::new();
    for index in 0..desired {
        match observed.get(&index) {
            Some(slot) if slot.fingerprint != target && available(slot) => {
                serving_old.push(index);
            }
            _ => {
                assign.insert(index, target);
            }
        }
    }
    let regular_done = (0..desired).all(|index| {
        observed
            .get(&index)
            .is_some_and(|slot| slot.fingerprint == target && available(slot))
    });
    if regular_done {
        return Step {
            assign,
            phase: Phase::Complete,
        };
    }
    // Surge slots run the target while old replicas still serve (or a surge replica already
    // runs): they are the first to be available on it when old replicas cannot be spared. A
    // first deploy, or one whose old replicas are all gone, has nothing to keep serving and
    // starts only the desired replicas, as a Kubernetes Deployment does.
    let surging = observed.keys().any(|index| *index >= desired);
    if !serving_old.is_empty() || surging {
        for index in desired..desired.saturating_add(policy.max_surge) {
            assign.insert(index, target);
        }
    }
    // Available after this step: slots that keep running what they run, and are available.
    let keeps = |index: u32, fingerprint: u64| {
        observed
            .get(&index)
            .is_some_and(|slot| slot.fingerprint == fingerprint && available(slot))
    };
    let mut still_available = serving_old.len() as u32
        + assign
            .iter()
            .filter(|(index, fingerprint)| keeps(**index, **fingerprint))
            .count() as u32;
    let floor = desired.saturating_sub(policy.max_unavailable);
    for index in serving_old {
        let fingerprint = observed[&index].fingerprint;
        if still_available > floor {
            assign.insert(index, target);
            still_available -= 1;
        } else {
            assign.insert(index, fingerprint);
        }
    }
    let available_now = observed
        .iter()
        .filter(|(index, slot)| assign.get(index) == Some(&slot.fingerprint) && available(slot))
        .count() as u32;
    Step {
        assign,
        phase: Phase::Progressing {
            available: available_now,
        },
    }
}

/// Why a rollout heads where it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heading {
    /// Towards the newly deployed definition.
    Forward,
    /// Back to the last definition that was fully available: the deadline passed first.
    RolledBack,
}

/// Which definition a rollout of `new` (deployed at `started_ms`) heads for at `now_ms`:
/// `new` until the deadline, and after it too once `new` was complete at least once
/// (`completed`); otherwise the last complete definition, `previous`, if there is one.
pub fn target(
    new: u64,
    previous: Option<u64>,
    policy: &RolloutPolicy,
    started_ms: u64,
    completed: bool,
    now_ms: u64,
) -> (u64, Heading) {
    let deadline = started_ms.saturating_add(u64::from(policy.progress_deadline_seconds) * 1000);
    match previous {
        Some(previous) if !completed && now_ms > deadline && previous != new => {
            (previous, Heading::RolledBack)
        }
        _ => (new, Heading::Forward),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OLD: u64 = 1;
    const NEW: u64 = 2;

    fn ready(fingerprint: u64) -> Slot {
        Slot {
            fingerprint,
            ready_since_ms: Some(0),
        }
    }

    fn starting(fingerprint: u64) -> Slot {
        Slot {
            fingerprint,
            ready_since_ms: None,
        }
    }

    fn slots(list: &[(u32, Slot)]) -> BTreeMap<u32, Slot> {
        list.iter().copied().collect()
    }

    fn policy(max_unavailable: u32, max_surge: u32) -> RolloutPolicy {
        RolloutPolicy {
            max_unavailable,
            max_surge,
            min_ready_seconds: 0,
            progress_deadline_seconds: 120,
        }
    }

    #[test]
    fn one_at_a_time_without_surge() {
        let all_old = slots(&[(0, ready(OLD)), (1, ready(OLD)), (2, ready(OLD))]);
        let first = step(3, &policy(1, 0), NEW, &all_old, 1000);
        assert_eq!(first.assign, BTreeMap::from([(0, NEW), (1, OLD), (2, OLD)]));
        // Slot 0 is being replaced: nothing more moves until it is ready.
        let replacing = slots(&[(0, starting(NEW)), (1, ready(OLD)), (2, ready(OLD))]);
        let waiting = step(3, &policy(1, 0), NEW, &replacing, 1000);
        assert_eq!(
            waiting.assign,
            BTreeMap::from([(0, NEW), (1, OLD), (2, OLD)])
        );
        let next = slots(&[(0, ready(NEW)), (1, ready(OLD)), (2, ready(OLD))]);
        assert_eq!(
            step(3, &policy(1, 0), NEW, &next, 1000).assign,
            BTreeMap::from([(0, NEW), (1, NEW), (2, OLD)])
        );
        let done = slots(&[(0, ready(NEW)), (1, ready(NEW)), (2, ready(NEW))]);
        assert_eq!(
            step(3, &policy(1, 0), NEW, &done, 1000).phase,
            Phase::Complete
        );
    }

    #[test]
    fn surge_first_when_none_may_be_unavailable() {
        let all_old = slots(&[(0, ready(OLD)), (1, ready(OLD))]);
        let first = step(2, &policy(0, 1), NEW, &all_old, 0);
        assert_eq!(first.assign, BTreeMap::from([(0, OLD), (1, OLD), (2, NEW)]));
        let surged = slots(&[(0, ready(OLD)), (1, ready(OLD)), (2, ready(NEW))]);
        assert_eq!(
            step(2, &policy(0, 1), NEW, &surged, 0).assign,
            BTreeMap::from([(0, NEW), (1, OLD), (2, NEW)])
        );
        let finished = slots(&[(0, ready(NEW)), (1, ready(NEW)), (2, ready(NEW))]);
        let last = step(2, &policy(0, 1), NEW, &finished, 0);
        assert_eq!(last.phase, Phase::Complete);
        assert_eq!(
            last.assign,
            BTreeMap::from([(0, NEW), (1, NEW)]),
            "the surge slot goes"
        );
    }

    #[test]
    fn a_first_deploy_starts_no_surge_replica() {
        let nothing = slots(&[]);
        let first = step(2, &policy(1, 1), NEW, &nothing, 0);
        assert_eq!(first.assign, BTreeMap::from([(0, NEW), (1, NEW)]));
        // Old replicas that all crashed are replaced in place, without a surge either.
        let crashed = slots(&[(0, starting(OLD)), (1, starting(OLD))]);
        let step1 = step(2, &policy(1, 1), NEW, &crashed, 0);
        assert_eq!(step1.assign, BTreeMap::from([(0, NEW), (1, NEW)]));
        // A surge replica that already runs stays until the rollout completes.
        let surged = slots(&[(0, starting(NEW)), (1, ready(NEW)), (2, ready(NEW))]);
        let keeping = step(2, &policy(0, 1), NEW, &surged, 0);
        assert_eq!(
            keeping.assign,
            BTreeMap::from([(0, NEW), (1, NEW), (2, NEW)])
        );
    }

    #[test]
    fn down_slots_are_replaced_at_once_and_min_ready_counts() {
        // Slot 1's node died: it is replaced on the new definition without waiting.
        let lost = slots(&[(0, ready(OLD)), (2, ready(OLD))]);
        let step1 = step(3, &policy(1, 0), NEW, &lost, 0);
        assert_eq!(step1.assign, BTreeMap::from([(0, OLD), (1, NEW), (2, OLD)]));
        // Ready for 4 s of a 5 s minimum: not available yet, so nothing else moves.
        let mut p = policy(1, 0);
        p.min_ready_seconds = 5;
        let young = slots(&[
            (
                0,
                Slot {
                    fingerprint: NEW,
                    ready_since_ms: Some(10_000),
                },
            ),
            (1, ready(OLD)),
            (2, ready(OLD)),
        ]);
        assert_eq!(
            step(3, &p, NEW, &young, 14_000).assign,
            BTreeMap::from([(0, NEW), (1, OLD), (2, OLD)])
        );
        assert_eq!(
            step(3, &p, NEW, &young, 15_000).assign,
            BTreeMap::from([(0, NEW), (1, NEW), (2, OLD)])
        );
    }

    #[test]
    fn percentages_round_as_in_kubernetes() {
        let spec = RolloutSpec {
            max_unavailable: Some(Share::Percent(25)),
            max_surge: Some(Share::Percent(25)),
            min_ready_seconds: 0,
            progress_deadline_seconds: 120,
        };
        let p = spec.policy(10, 0);
        assert_eq!((p.max_unavailable, p.max_surge), (2, 3));
        let p = spec.policy(3, 0);
        assert_eq!((p.max_unavailable, p.max_surge), (0, 1));
        let none = RolloutSpec {
            max_unavailable: Some(Share::Percent(10)),
            max_surge: None,
            ..spec
        };
        let p = none.policy(3, 0);
        assert_eq!(
            (p.max_unavailable, p.max_surge),
            (1, 0),
            "never stuck at 0 and 0"
        );
        let defaults = RolloutSpec {
            max_unavailable: None,
            max_surge: None,
            ..spec
        };
        let p = defaults.policy(4, 1);
        assert_eq!((p.max_unavailable, p.max_surge), (1, 1));
    }

    #[test]
    fn the_deadline_rolls_back_unless_complete() {
        let p = policy(1, 0);
        assert_eq!(
            target(NEW, Some(OLD), &p, 0, false, 120_000),
            (NEW, Heading::Forward)
        );
        assert_eq!(
            target(NEW, Some(OLD), &p, 0, false, 120_001),
            (OLD, Heading::RolledBack)
        );
        assert_eq!(
            target(NEW, Some(OLD), &p, 0, true, 500_000),
            (NEW, Heading::Forward)
        );
        assert_eq!(
            target(NEW, None, &p, 0, false, 500_000),
            (NEW, Heading::Forward)
        );
    }

    /// A simulated cluster: each tick, a slot assigned another definition is replaced
    /// (starting, not ready), a starting replica becomes ready with probability `ready_odds`
    /// when its definition can become ready at all, and a node may lose a slot.
    #[derive(Debug, Clone)]
    struct Replica {
        fingerprint: u64,
        ready_since: Option<u64>,
    }

    fn available(replicas: &BTreeMap<u32, Replica>, p: &RolloutPolicy, now: u64) -> u32 {
        replicas
            .values()
            .filter(|r| {
                r.ready_since
                    .is_some_and(|t| now - t >= u64::from(p.min_ready_seconds) * 1000)
            })
            .count() as u32
    }

    fn view(replicas: &BTreeMap<u32, Replica>) -> BTreeMap<u32, Slot> {
        replicas
            .iter()
            .map(|(i, r)| {
                (
                    *i,
                    Slot {
                        fingerprint: r.fingerprint,
                        ready_since_ms: r.ready_since,
                    },
                )
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Safety and liveness of the planner under random readiness and node failures.
        #[test]
        fn steps_keep_the_floor_stay_under_the_ceiling_and_converge(
            desired in 1u32..8,
            max_unavailable in 0u32..4,
            max_surge in 0u32..3,
            min_ready_seconds in 0u32..3,
            new_becomes_ready in any::<bool>(),
            seed in any::<u64>(),
            failures in proptest::collection::vec((0u64..200, 0u32..8), 0..3),
            first_deploy in any::<bool>(),
        ) {
            // Kubernetes refuses maxUnavailable = maxSurge = 0: nothing could move.
            let max_surge = if max_unavailable == 0 { max_surge.max(1) } else { max_surge };
            let mut p = policy(max_unavailable, max_surge);
            p.min_ready_seconds = min_ready_seconds;
            p.progress_deadline_seconds = 60;
            let mut rng = seed;
            let mut coin = move || {
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
                rng % 3 != 0
            };
            // A first deploy starts from nothing and has no definition to return to.
            let mut replicas: BTreeMap<u32, Replica> = (0..desired)
                .filter(|_| !first_deploy)
                .map(|i| (i, Replica { fingerprint: OLD, ready_since: Some(0) }))
                .collect();
            let previous = (!first_deploy).then_some(OLD);
            let started = 1_000;
            let tick = 1_000;
            let mut finished_on = None;
            for t in 0..400u64 {
                let now = started + t * tick;
                for (at, slot) in &failures {
                    if *at == t { replicas.remove(slot); }
                }
                // Not complete yet: the loop ends when the rollout completes.
                let (goal, heading) = target(NEW, previous, &p, started, false, now);
                let before = available(&replicas, &p, now);
                let plan = step(desired, &p, goal, &view(&replicas), now);
                // Ceiling: never more slots than desired + surge.
                prop_assert!(plan.assign.len() as u32 <= desired + max_surge);
                prop_assert!(plan.assign.keys().all(|i| *i < desired + max_surge));
                // Nothing old to keep serving: no surge replica either.
                if first_deploy {
                    prop_assert!(plan.assign.len() as u32 <= desired);
                }
                // Apply: replaced slots start over; unassigned slots stop.
                replicas.retain(|i, _| plan.assign.contains_key(i));
                for (i, fingerprint) in &plan.assign {
                    let replaced = replicas.get(i).is_none_or(|r| r.fingerprint != *fingerprint);
                    if replaced {
                        replicas.insert(*i, Replica { fingerprint: *fingerprint, ready_since: None });
                    }
                }
                // Floor: a step takes away only what it may.
                let after = available(&replicas, &p, now);
                let floor = desired.saturating_sub(max_unavailable);
                prop_assert!(
                    after >= before.min(floor),
                    "available {} -> {} with floor {}", before, after, floor
                );
                if plan.phase == Phase::Complete {
                    finished_on = Some((goal, heading));
                    break;
                }
                // Time passes: starting replicas may become ready.
                for r in replicas.values_mut() {
                    let can = r.fingerprint == OLD || new_becomes_ready;
                    if r.ready_since.is_none() && can && coin() {
                        r.ready_since = Some(now + tick);
                    }
                }
            }
            if first_deploy && !new_becomes_ready {
                // Nothing to return to: it keeps trying, never complete.
                prop_assert!(finished_on.is_none());
                return Ok(());
            }
            let (goal, heading) = finished_on.expect("the rollout finished");
            if new_becomes_ready && failures.is_empty() && min_ready_seconds == 0 {
                // With room to move and a healthy new version, it goes forward... unless
                // unlucky coin flips push it past the deadline, which rolls it back.
                prop_assert!(goal == NEW || heading == Heading::RolledBack);
            }
            if !new_becomes_ready && !first_deploy {
                prop_assert_eq!((goal, heading), (OLD, Heading::RolledBack));
            }
            let done = view(&replicas);
            prop_assert_eq!(done.len() as u32, desired);
            prop_assert!(done.values().all(|s| s.fingerprint == goal));
        }
    }
}
