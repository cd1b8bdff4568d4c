//! The names a run is configured by: which gossip protocol, and when nodes are evaluated.

use std::fmt;
use std::str::FromStr;

/// Who hears whom, what a node takes in, and how time passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// The authors' protocol: a node receives only its own neighbours' latest messages (no
    /// relay), drains everything new after every epoch, and nodes run free in virtual time
    /// (unaligned epochs and windows, gossip delays).
    #[default]
    Paper,
    /// The paper's exchange (neighbours only, everything new) in lockstep epochs, delivered in
    /// the epoch they were made: the paper's protocol without its asynchrony.
    Lockstep,
    /// Lockstep epochs with every node's latest message relayed over several hops per epoch
    /// and one message taken in per epoch by default: what earlier versions simulated.
    Relay,
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "paper" => Ok(Protocol::Paper),
            "lockstep" => Ok(Protocol::Lockstep),
            "relay" => Ok(Protocol::Relay),
            other => Err(format!(
                "protocol `{other}`: expected paper, lockstep or relay"
            )),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Paper => "paper",
            Protocol::Lockstep => "lockstep",
            Protocol::Relay => "relay",
        })
    }
}

/// When nodes are evaluated on the test set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvalMode {
    /// After every window closes (on `--eval-samples` test examples until the last epoch),
    /// and on the full test set right after the last epoch's training: enough for both the
    /// final median and the paper's figure, at a fraction of the cost.
    #[default]
    Windows,
    /// As the reference: the full test set after every epoch, before aggregating, and again
    /// after every aggregation.
    Paper,
}

impl FromStr for EvalMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "windows" => Ok(EvalMode::Windows),
            "paper" => Ok(EvalMode::Paper),
            other => Err(format!("eval `{other}`: expected windows or paper")),
        }
    }
}

impl fmt::Display for EvalMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EvalMode::Windows => "windows",
            EvalMode::Paper => "paper",
        })
    }
}

/// Where in an epoch an evaluation was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Right after the epoch's training, before any aggregation (the reference's per-epoch rows).
    Trained,
    /// After the window closed (the reference's per-aggregation rows).
    Aggregated,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Trained => "trained",
            Phase::Aggregated => "aggregated",
        }
    }
}

impl FromStr for Phase {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "trained" => Ok(Phase::Trained),
            "aggregated" => Ok(Phase::Aggregated),
            other => Err(format!("phase `{other}`: expected trained or aggregated")),
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for protocol in [Protocol::Paper, Protocol::Lockstep, Protocol::Relay] {
            assert_eq!(protocol.to_string().parse::<Protocol>().unwrap(), protocol);
        }
        for eval in [EvalMode::Windows, EvalMode::Paper] {
            assert_eq!(eval.to_string().parse::<EvalMode>().unwrap(), eval);
        }
        for phase in [Phase::Trained, Phase::Aggregated] {
            assert_eq!(phase.to_string().parse::<Phase>().unwrap(), phase);
        }
        assert!(
            "gossip"
                .parse::<Protocol>()
                .unwrap_err()
                .contains("paper, lockstep or relay")
        );
    }
}
