//! Plain model averaging, the gossip-learning baseline.

use super::{AggregationInput, Aggregator, mean_of};

/// The unweighted mean of every heard sender's latest model and the node's own weights.
#[derive(Debug, Clone, Copy, Default)]
pub struct Average;

impl Aggregator for Average {
    fn aggregate(&self, input: &AggregationInput<'_>) -> Vec<f32> {
        let models = input.latest_models();
        mean_of(models.iter().map(Vec::as_slice))
    }

    fn tensors_per_message(&self) -> u64 {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_close, message};
    use super::super::{AggregationInput, SenderWindow};
    use super::*;

    #[test]
    fn averages_latest_models_with_own_current_weights_by_hand() {
        let old = message(1, 1, &[100.0, 100.0], &[0.0, 0.0]);
        let latest = message(1, 2, &[1.0, 1.0], &[1.0, 3.0]); // model [2, 4]
        let other = message(2, 5, &[4.0, 0.0], &[0.0, 2.0]); // model [4, 2]
        let own = message(0, 9, &[50.0, 50.0], &[0.0, 0.0]); // ignored: own weights used
        let senders = [
            SenderWindow::new(&own, &own),
            SenderWindow::new(&old, &latest),
            SenderWindow::new(&other, &other),
        ];
        let input = AggregationInput {
            own_id: 0,
            own_weights: &[0.0, 3.0],
            senders: &senders,
            epoch: 10,
            layout: &[2],
        };
        assert_close(&Average.aggregate(&input), &[2.0, 3.0]);
    }
}
