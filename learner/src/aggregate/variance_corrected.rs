//! Variance-corrected averaging (Tian et al. 2024, "Vanishing Variance Problem in Fully
//! Decentralized Neural-Network Systems", Algorithm 3).

use super::{AggregationInput, Aggregator, mean_of};

/// Averaging shrinks the spread of weights; per parameter tensor, rescale the average around its
/// mean so its variance equals the mean variance of the models averaged.
#[derive(Debug, Clone, Copy, Default)]
pub struct VarianceCorrected;

const EPSILON: f64 = 1e-6;

impl Aggregator for VarianceCorrected {
    fn aggregate(&self, input: &AggregationInput<'_>) -> Vec<f32> {
        let models = input.latest_models();
        let mut average = mean_of(models.iter().map(Vec::as_slice));
        let mut start = 0;
        for &len in input.layout {
            let range = start..start + len;
            start += len;
            let target = models
                .iter()
                .map(|model| mean_and_variance(&model[range.clone()]).1)
                .sum::<f64>()
                / models.len() as f64;
            let segment = &mut average[range];
            let (mean, variance) = mean_and_variance(segment);
            let scale = (target / (variance + EPSILON)).sqrt();
            for value in segment.iter_mut() {
                *value = ((f64::from(*value) - mean) * scale + mean) as f32;
            }
        }
        average
    }

    fn tensors_per_message(&self) -> u64 {
        1
    }
}

/// Population mean and variance.
fn mean_and_variance(values: &[f32]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().map(|v| f64::from(*v)).sum::<f64>() / n;
    let variance = values
        .iter()
        .map(|v| (f64::from(*v) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, variance)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_close, message};
    use super::super::{AggregationInput, SenderWindow};
    use super::*;

    #[test]
    fn restores_the_mean_variance_per_tensor_by_hand() {
        // Tensor 1 (two values): own [1, 3], peer [3, 1]; average [2, 2] has no variance, so it
        // stays [2, 2] (scaled zero deviations). Tensor 2 (two values): own [0, 4], peer [0, 2];
        // average [0, 3], variance 2.25; models' variances 4 and 1, mean 2.5;
        // scale = sqrt(2.5 / (2.25 + 1e-6)); mean 1.5.
        let peer = message(1, 3, &[3.0, 1.0, 0.0, 2.0], &[0.0; 4]);
        let own = message(0, 3, &[0.0; 4], &[0.0; 4]);
        let senders = [
            SenderWindow::new(&own, &own),
            SenderWindow::new(&peer, &peer),
        ];
        let input = AggregationInput {
            own_id: 0,
            own_weights: &[1.0, 3.0, 0.0, 4.0],
            senders: &senders,
            epoch: 10,
            layout: &[2, 2],
        };
        let scale = (2.5f64 / (2.25 + 1e-6)).sqrt() as f32;
        let expected = [2.0, 2.0, 1.5 - 1.5 * scale, 1.5 + 1.5 * scale];
        assert_close(&VarianceCorrected.aggregate(&input), &expected);
    }
}
