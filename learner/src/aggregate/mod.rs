//! Aggregation rules: how a learner turns the messages of one window into new weights.
//!
//! Each rule is a pure function over flat parameter vectors behind [`Aggregator`]; adding a rule
//! is one file plus one [`Method`] variant.

mod average;
mod delta_sum;
mod variance_corrected;

use std::fmt;
use std::str::FromStr;

pub use average::Average;
pub use delta_sum::{DeltaSum, lambda};
pub use variance_corrected::VarianceCorrected;

use crate::message::{ModelMessage, SenderId};

/// What one sender contributed during the window: the first and the last of its messages that
/// arrived (the same message when only one did).
#[derive(Debug, Clone, Copy)]
pub struct SenderWindow<'a> {
    pub first: &'a ModelMessage,
    pub last: &'a ModelMessage,
}

impl<'a> SenderWindow<'a> {
    pub fn new(first: &'a ModelMessage, last: &'a ModelMessage) -> Self {
        Self { first, last }
    }

    /// Whether the sender was heard once in the window (first and last are one message).
    pub fn is_single(&self) -> bool {
        std::ptr::eq(self.first, self.last) || self.first.timestamp == self.last.timestamp
    }
}

/// Everything a rule may look at when a window closes.
#[derive(Debug, Clone, Copy)]
pub struct AggregationInput<'a> {
    /// The aggregating node and its current weights.
    pub own_id: SenderId,
    pub own_weights: &'a [f32],
    /// Senders heard in the window, the node itself included, in the order first heard.
    pub senders: &'a [SenderWindow<'a>],
    /// The node's local epoch count `t`.
    pub epoch: u64,
    /// Lengths of the parameter tensors in the flat layout.
    pub layout: &'a [usize],
}

impl AggregationInput<'_> {
    /// The latest full model of every heard sender other than this node, then this node's
    /// current weights: the model set of the averaging baselines.
    pub fn latest_models(&self) -> Vec<Vec<f32>> {
        self.senders
            .iter()
            .filter(|window| window.last.sender != self.own_id)
            .map(|window| window.last.model())
            .chain(std::iter::once(self.own_weights.to_vec()))
            .collect()
    }
}

/// An aggregation rule.
pub trait Aggregator: Send + Sync + fmt::Debug {
    /// New weights for the node, from the window's messages.
    fn aggregate(&self, input: &AggregationInput<'_>) -> Vec<f32>;

    /// How many full parameter tensors one message carries on the wire under this rule.
    fn tensors_per_message(&self) -> u64;
}

/// The rules a run can choose by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Average the bases, sum the deltas (the intended rule).
    DeltaSum,
    /// Delta Sum with the authors' in-place quirk (the first sender's base is overwritten by the
    /// running average before its delta is taken).
    DeltaSumInPlace,
    /// Mean of the latest models.
    Average,
    /// Mean of the latest models, rescaled per tensor to the models' mean variance.
    VarianceCorrected,
}

impl Method {
    pub const ALL: [Method; 4] = [
        Method::DeltaSum,
        Method::DeltaSumInPlace,
        Method::Average,
        Method::VarianceCorrected,
    ];

    pub fn aggregator(self) -> Box<dyn Aggregator> {
        match self {
            Method::DeltaSum => Box::new(DeltaSum {
                in_place_quirk: false,
            }),
            Method::DeltaSumInPlace => Box::new(DeltaSum {
                in_place_quirk: true,
            }),
            Method::Average => Box::new(Average),
            Method::VarianceCorrected => Box::new(VarianceCorrected),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::DeltaSum => "delta-sum",
            Method::DeltaSumInPlace => "delta-sum-in-place",
            Method::Average => "average",
            Method::VarianceCorrected => "variance-corrected",
        }
    }
}

impl FromStr for Method {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Method::ALL
            .into_iter()
            .find(|method| method.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
                format!("aggregation `{text}`: expected one of {}", names.join(", "))
            })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Element-wise mean of equally long vectors, accumulated in f64.
pub(crate) fn mean_of<'a>(vectors: impl IntoIterator<Item = &'a [f32]>) -> Vec<f32> {
    let mut sum: Vec<f64> = Vec::new();
    let mut count = 0usize;
    for vector in vectors {
        if sum.is_empty() {
            sum = vec![0.0; vector.len()];
        }
        for (acc, value) in sum.iter_mut().zip(vector) {
            *acc += f64::from(*value);
        }
        count += 1;
    }
    sum.into_iter()
        .map(|s| (s / count.max(1) as f64) as f32)
        .collect()
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    use crate::message::ModelMessage;

    pub fn message(sender: u32, timestamp: u64, base: &[f32], delta: &[f32]) -> ModelMessage {
        ModelMessage {
            sender,
            timestamp,
            base: Arc::from(base),
            delta: Arc::from(delta),
        }
    }

    pub fn assert_close(actual: &[f32], expected: &[f32]) {
        assert_eq!(actual.len(), expected.len());
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() < 1e-5, "{actual:?} != {expected:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_by_name_and_reject_others_with_the_choices() {
        for method in Method::ALL {
            assert_eq!(method.name().parse::<Method>().unwrap(), method);
        }
        let error = "fedavg".parse::<Method>().unwrap_err();
        assert!(error.contains("delta-sum, delta-sum-in-place, average, variance-corrected"));
    }
}
