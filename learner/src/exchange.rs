//! Which messages to fetch from which neighbour, given the neighbours' digests.
//!
//! In the paper's design every gossip exchange carries the latest message of every sender the
//! responder knows. Digests (a few bytes per sender) already avoid resending what the receiver
//! holds ([`Fetch::Lacking`]). [`Fetch::Intake`] goes further: a learner that takes in `k`
//! foreign models per epoch fetches only those `k`, chosen in the order it would take them in,
//! so every model that crosses the network is used; what it fetched it also relays, which is
//! how models still travel several hops.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::gossip::Digest;
use crate::message::SenderId;
use crate::node::LearnerNode;

/// How much an exchange fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fetch {
    /// Every message newer than what the fetcher's store holds.
    #[default]
    Lacking,
    /// Only the messages the learner will take in this epoch (its intake).
    Intake,
}

impl FromStr for Fetch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lacking" => Ok(Fetch::Lacking),
            "intake" => Ok(Fetch::Intake),
            other => Err(format!(
                "unknown fetch policy {other:?}; expected lacking or intake"
            )),
        }
    }
}

impl fmt::Display for Fetch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fetch::Lacking => "lacking",
            Fetch::Intake => "intake",
        })
    }
}

/// The senders to fetch from each neighbour (by position in `offers`), neighbours in order.
///
/// `held` is the fetcher's own store digest, `offers` each neighbour's digest, nearest
/// neighbour first. A sender is fetched from the neighbour offering its newest message (the
/// nearest one on ties), never twice.
pub fn plan_fetches(
    policy: Fetch,
    learner: &LearnerNode,
    intake: Option<usize>,
    held: &Digest,
    offers: &[Digest],
) -> Vec<(usize, Vec<SenderId>)> {
    let mut best: BTreeMap<SenderId, (u64, usize)> = BTreeMap::new();
    for (neighbour, digest) in offers.iter().enumerate() {
        for &(sender, timestamp) in digest {
            let entry = best.entry(sender).or_insert((timestamp, neighbour));
            if timestamp > entry.0 {
                *entry = (timestamp, neighbour);
            }
        }
    }
    let held: BTreeMap<SenderId, u64> = held.iter().copied().collect();
    let newer = |sender: &SenderId, timestamp: u64| {
        sender != &learner.config().id && held.get(sender).is_none_or(|&t| timestamp > t)
    };
    let chosen: Vec<SenderId> = match policy {
        Fetch::Lacking => best
            .iter()
            .filter(|(sender, (timestamp, _))| newer(sender, *timestamp))
            .map(|(sender, _)| *sender)
            .collect(),
        Fetch::Intake => {
            let mut order = learner.intake_order(
                best.iter()
                    .filter(|(sender, (timestamp, _))| newer(sender, *timestamp))
                    .map(|(sender, (timestamp, _))| (*sender, *timestamp)),
            );
            order.truncate(intake.unwrap_or(usize::MAX));
            order
        }
    };
    let mut per_neighbour: BTreeMap<usize, Vec<SenderId>> = BTreeMap::new();
    for sender in chosen {
        per_neighbour
            .entry(best[&sender].1)
            .or_default()
            .push(sender);
    }
    per_neighbour.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Method;
    use crate::node::NodeConfig;

    fn learner() -> LearnerNode {
        LearnerNode::new(
            NodeConfig {
                id: 0,
                method: Method::DeltaSum,
                window: 10,
                epochs: 100,
            },
            vec![1],
        )
    }

    #[test]
    fn lacking_fetches_every_newer_sender_once_from_the_freshest_neighbour() {
        let held = vec![(1, 5), (2, 9)];
        let offers = vec![vec![(0, 3), (1, 6), (2, 9)], vec![(1, 7), (3, 1)]];
        let plan = plan_fetches(Fetch::Lacking, &learner(), Some(1), &held, &offers);
        // Sender 0 is the fetcher itself; 2 is not newer; 1 is newest at neighbour 1.
        assert_eq!(plan, vec![(1, vec![1, 3])]);
    }

    #[test]
    fn intake_fetches_only_what_the_learner_takes_in_next() {
        let offers = vec![vec![(1, 2), (2, 2)], vec![(3, 2)]];
        let plan = plan_fetches(Fetch::Intake, &learner(), Some(2), &vec![], &offers);
        assert_eq!(plan, vec![(0, vec![1, 2])]);
        let everything = plan_fetches(Fetch::Intake, &learner(), None, &vec![], &offers);
        assert_eq!(everything, vec![(0, vec![1, 2]), (1, vec![3])]);
    }
}
