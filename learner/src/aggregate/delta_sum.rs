//! Delta Sum (Goethals et al., 2025): average the bases, sum the deltas.

use super::{AggregationInput, Aggregator, mean_of};

/// The growing weight of the summed deltas, `0.15 + t / 1000`: late local training on a tiny
/// shard should not erase what arrived through gossip.
pub fn lambda(epoch: u64) -> f64 {
    0.15 + epoch as f64 / 1000.0
}

/// `w = mean_j b_j(first) + lambda(t) * sum_j [(b_j(last) - b_j(first)) + u_j(last)]` over the
/// senders heard in the window.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeltaSum {
    /// Reproduce the reference code's aliasing: the first sender's stored first base is the
    /// buffer the average is accumulated into, so that sender's delta is taken against the
    /// average base instead of its own: `(b(last) - base) + u(last)`. When that sender has a
    /// single message in the window, its first and last are one object, so `b(last)` was
    /// overwritten too and only `u(last)` remains.
    pub in_place_quirk: bool,
}

impl Aggregator for DeltaSum {
    fn aggregate(&self, input: &AggregationInput<'_>) -> Vec<f32> {
        if input.senders.is_empty() {
            return input.own_weights.to_vec();
        }
        let base = mean_of(input.senders.iter().map(|s| &*s.first.base));
        let lambda = lambda(input.epoch);
        let mut delta_sum = vec![0.0f64; base.len()];
        for (index, window) in input.senders.iter().enumerate() {
            let last = window.last;
            let overwritten = self.in_place_quirk && index == 0;
            if overwritten && window.is_single() {
                for (acc, u) in delta_sum.iter_mut().zip(last.delta.iter()) {
                    *acc += f64::from(*u);
                }
                continue;
            }
            let first_base: &[f32] = if overwritten {
                &base
            } else {
                &window.first.base
            };
            for (i, acc) in delta_sum.iter_mut().enumerate() {
                *acc += f64::from(last.base[i] - first_base[i]) + f64::from(last.delta[i]);
            }
        }
        base.iter()
            .zip(delta_sum)
            .map(|(b, d)| (f64::from(*b) + lambda * d) as f32)
            .collect()
    }

    fn tensors_per_message(&self) -> u64 {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{assert_close, message};
    use super::super::{AggregationInput, SenderWindow};
    use super::*;

    #[test]
    fn lambda_grows_from_the_papers_values() {
        assert!((lambda(10) - 0.16).abs() < 1e-12);
        assert!((lambda(200) - 0.35).abs() < 1e-12);
    }

    #[test]
    fn averages_bases_and_sums_window_deltas_by_hand() {
        // Node 0: first (b=[0,0], u=[1,0]), last (b=[1,0], u=[1,2]) -> delta [2,2].
        // Node 1: one message (b=[2,4], u=[0,2]) -> delta [0,2].
        let a_first = message(0, 1, &[0.0, 0.0], &[1.0, 0.0]);
        let a_last = message(0, 2, &[1.0, 0.0], &[1.0, 2.0]);
        let b = message(1, 7, &[2.0, 4.0], &[0.0, 2.0]);
        let senders = [
            SenderWindow::new(&a_first, &a_last),
            SenderWindow::new(&b, &b),
        ];
        let input = AggregationInput {
            own_id: 0,
            own_weights: &[2.0, 2.0],
            senders: &senders,
            epoch: 10,
            layout: &[2],
        };
        // base = [1, 2]; sum of deltas = [2, 4]; lambda(10) = 0.16.
        let plain = DeltaSum::default().aggregate(&input);
        assert_close(&plain, &[1.0 + 0.16 * 2.0, 2.0 + 0.16 * 4.0]);
        // The quirk takes node 0's delta against the average base [1, 2]:
        // (b_last - base) + u_last = ([1,0] - [1,2]) + [1,2] = [1, 0]; sum = [1, 2].
        let quirk = DeltaSum {
            in_place_quirk: true,
        }
        .aggregate(&input);
        assert_close(&quirk, &[1.0 + 0.16 * 1.0, 2.0 + 0.16 * 2.0]);
    }

    #[test]
    fn the_quirk_on_a_single_message_first_sender_keeps_only_its_last_delta() {
        // As the reference: the window's first key is a remote heard once (first and last are
        // one object), then the node itself with two messages.
        let remote = message(4, 9, &[2.0, 0.0], &[1.0, 1.0]);
        let own_first = message(0, 1, &[0.0, 2.0], &[0.5, 0.0]);
        let own_last = message(0, 2, &[0.5, 2.0], &[0.5, 1.0]);
        let senders = [
            SenderWindow::new(&remote, &remote),
            SenderWindow::new(&own_first, &own_last),
        ];
        let input = AggregationInput {
            own_id: 0,
            own_weights: &[1.0, 3.0],
            senders: &senders,
            epoch: 20,
            layout: &[2],
        };
        // base = mean([2,0], [0,2]) = [1, 1]; lambda(20) = 0.17.
        // Remote (quirk, single): u = [1, 1]. Own: ([0.5,2] - [0,2]) + [0.5,1] = [1, 1].
        let quirk = DeltaSum {
            in_place_quirk: true,
        }
        .aggregate(&input);
        assert_close(&quirk, &[1.0 + 0.17 * 2.0, 1.0 + 0.17 * 2.0]);
        // Not (b - base) + u = [2, 0]: the overwritten base is the message's own base too.
        // A single message's delta is then what the intended rule gives, (b - b) + u.
        let plain = DeltaSum::default().aggregate(&input);
        assert_close(&plain, &quirk);
        // Where the first sender has two messages the quirk takes its delta against the base:
        // remote first b=[2,0], last b=[4,0] u=[1,1]: quirk (b_last - base) + u = [4, 0].
        let remote_last = message(4, 10, &[4.0, 0.0], &[1.0, 1.0]);
        let senders = [
            SenderWindow::new(&remote, &remote_last),
            SenderWindow::new(&own_first, &own_last),
        ];
        let input = AggregationInput {
            senders: &senders,
            ..input
        };
        let quirk = DeltaSum {
            in_place_quirk: true,
        }
        .aggregate(&input);
        // delta sum = [4, 0] + [1, 1] = [5, 1].
        assert_close(&quirk, &[1.0 + 0.17 * 5.0, 1.0 + 0.17 * 1.0]);
        // The intended rule: ([4,0] - [2,0]) + [1,1] = [3, 1]; sum [4, 2].
        let plain = DeltaSum::default().aggregate(&input);
        assert_close(&plain, &[1.0 + 0.17 * 4.0, 1.0 + 0.17 * 2.0]);
    }

    #[test]
    fn identical_senders_without_progress_keep_the_base() {
        let m = message(3, 4, &[0.5, -1.0, 2.0], &[0.0, 0.0, 0.0]);
        let senders = [SenderWindow::new(&m, &m); 3];
        let input = AggregationInput {
            own_id: 3,
            own_weights: &[9.0, 9.0, 9.0],
            senders: &senders,
            epoch: 100,
            layout: &[3],
        };
        assert_close(&DeltaSum::default().aggregate(&input), &[0.5, -1.0, 2.0]);
    }
}
