//! Dropout with masks drawn on the host from the node's own seeded generator.
//!
//! burn's `Dropout` draws from the backend's global generator: nodes training in parallel
//! threads would then interleave draws and no run could be repeated. A per-node generator makes
//! every node's training a pure function of its seed, and drawing 32 mask bits per `u32` is
//! cheaper than the backend's one-thread Bernoulli sampling.

use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Training-time dropout source; inference passes `None` instead and skips dropout.
#[derive(Debug)]
pub struct DropoutMasks {
    rng: StdRng,
}

impl DropoutMasks {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Zeroes each element with probability `prob` (rounded to 1/256) and scales the survivors
    /// by `1 / (1 - prob)`, so activations keep their expected value.
    pub fn apply<const D: usize>(&mut self, x: Tensor<D>, prob: f64) -> Tensor<D> {
        let shape = x.shape();
        let len = shape.num_elements();
        let threshold = (prob * 256.0).round().clamp(0.0, 256.0) as u32;
        let keep = 1.0 - threshold as f32 / 256.0;
        let scale = 1.0 / keep;
        let mut mask = Vec::with_capacity(len);
        while mask.len() < len {
            let bits = self.rng.next_u32();
            for byte in bits.to_le_bytes() {
                if mask.len() < len {
                    mask.push(if u32::from(byte) >= threshold {
                        scale
                    } else {
                        0.0
                    });
                }
            }
        }
        let mask = Tensor::<D>::from_data(TensorData::new(mask, shape), &x.device());
        x * mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_about_the_asked_share_and_keeps_the_mean() {
        let device = Device::flex();
        let x = Tensor::<2>::ones([100, 100], &device);
        let y: Vec<f32> = DropoutMasks::new(1)
            .apply(x, 0.3)
            .into_data()
            .try_to_vec()
            .unwrap();
        let zeros = y.iter().filter(|v| **v == 0.0).count() as f64 / y.len() as f64;
        assert!((zeros - 0.3).abs() < 0.02, "dropped {zeros}");
        let mean = y.iter().sum::<f32>() / y.len() as f32;
        assert!((mean - 1.0).abs() < 0.05, "mean {mean}");
    }

    #[test]
    fn the_same_seed_draws_the_same_masks() {
        let device = Device::flex();
        let draw = |seed| -> Vec<f32> {
            DropoutMasks::new(seed)
                .apply(Tensor::<1>::ones([64], &device), 0.5)
                .into_data()
                .try_to_vec()
                .unwrap()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }
}
