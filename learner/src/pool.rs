//! ReLU after 2x2 max pooling with stride 2, as one backend operation with its own backward
//! pass.
//!
//! The paper's CNN pools twice per step. Through burn's general `max_pool2d` the flex backend
//! runs a 3-D pooling kernel that also writes an index tensor, and the ReLU after it is two more
//! passes forward and backward: together about a fifth of a training step on one core. A 2x2
//! window with stride 2 needs none of that. The forward pass takes the largest of four values
//! and clamps it at zero; the backward pass finds the same winner again from the saved input
//! (so no index tensor lives between the passes) and routes the gradient to it when the output
//! was positive, so the gradient matches `relu(max_pool2d(x))`
//! exactly, ties included (the first maximum in row-major window order wins, as in burn and
//! PyTorch).
//!
//! Flex runs the kernels below; other backends use the default bodies, composed from burn's own
//! operations, which are also the reference the tests compare against.

// burn 0.22 deprecates the ndarray backend, which the learner still offers as `--backend ndarray`.
#![allow(deprecated)]

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, NdArray, backend_extension};
use burn::prelude::*;
use burn::tensor::{IntDType, TensorData};

use crate::flex::{contiguous_f32, dims4};

const WINDOW: [usize; 2] = [2, 2];

#[backend_extension(Flex, NdArray, Autodiff)]
pub trait PoolOps: Backend {
    /// `relu(max_pool2d(x, 2x2, stride 2))` for `x` of shape `[batch, channels, height, width]`;
    /// an odd last row or column is dropped, as burn's pooling without ceil mode does.
    fn relu_max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::relu(Self::max_pool2d(x, WINDOW, WINDOW, [0, 0], [1, 1], false))
    }

    /// The gradient with respect to `x`, given the gradient of the output.
    fn relu_max_pool2x2_backward(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let pooled = Self::max_pool2d_with_indices(
            x.clone(),
            WINDOW,
            WINDOW,
            [0, 0],
            [1, 1],
            false,
            IntDType::I64,
        );
        let pooled_grad = Self::relu_backward(pooled.output, output_grad);
        Self::max_pool2d_with_indices_backward(
            x,
            WINDOW,
            WINDOW,
            [0, 0],
            [1, 1],
            false,
            pooled_grad,
            pooled.indices,
        )
        .x_grad
    }
}

impl PoolOps for NdArray {}

impl PoolOps for Flex {
    fn relu_max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let [batch, channels, height, width] = dims4(&x);
        let x = contiguous_f32(x);
        let input = x.as_slice::<f32>().expect("contiguous f32 tensor");
        let (out_h, out_w) = (height / 2, width / 2);
        let mut output = vec![0.0f32; batch * channels * out_h * out_w];
        for (plane, out) in input
            .chunks_exact(height * width)
            .zip(output.chunks_exact_mut(out_h * out_w))
        {
            for (i, out_row) in out.chunks_exact_mut(out_w).enumerate() {
                let top = &plane[2 * i * width..][..2 * out_w];
                let bottom = &plane[(2 * i + 1) * width..][..2 * out_w];
                for ((value, top), bottom) in out_row
                    .iter_mut()
                    .zip(top.chunks_exact(2))
                    .zip(bottom.chunks_exact(2))
                {
                    *value = top[0].max(top[1]).max(bottom[0]).max(bottom[1]).max(0.0);
                }
            }
        }
        let shape = [batch, channels, out_h, out_w];
        burn_flex::FlexTensor::from_data(TensorData::new(output, shape))
    }

    fn relu_max_pool2x2_backward(
        x: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let [batch, channels, height, width] = dims4(&x);
        let x = contiguous_f32(x);
        let output_grad = contiguous_f32(output_grad);
        let input = x.as_slice::<f32>().expect("contiguous f32 tensor");
        let grad = output_grad
            .as_slice::<f32>()
            .expect("contiguous f32 tensor");
        let (out_h, out_w) = (height / 2, width / 2);
        let mut input_grad = vec![0.0f32; input.len()];
        for ((plane, plane_grad), out_grad) in input
            .chunks_exact(height * width)
            .zip(input_grad.chunks_exact_mut(height * width))
            .zip(grad.chunks_exact(out_h * out_w))
        {
            for (i, grad_row) in out_grad.chunks_exact(out_w).enumerate() {
                let top = &plane[2 * i * width..][..2 * out_w];
                let bottom = &plane[(2 * i + 1) * width..][..2 * out_w];
                let (top_grad, rest) = plane_grad[2 * i * width..].split_at_mut(width);
                let top_grad = &mut top_grad[..2 * out_w];
                let bottom_grad = &mut rest[..2 * out_w];
                // Plain comparisons turned into bit masks, no `f32::max` (whose NaN rules keep
                // the loop scalar) and no branches: which of the four wins is data, and a
                // branch per window, mispredicted half the time, cost a seventh of a step.
                let windows = grad_row.len();
                let (top, bottom) = (&top[..2 * windows], &bottom[..2 * windows]);
                let top_grad = &mut top_grad[..2 * windows];
                let bottom_grad = &mut bottom_grad[..2 * windows];
                for j in 0..windows {
                    let (a, b) = (top[2 * j], top[2 * j + 1]);
                    let (c, d) = (bottom[2 * j], bottom[2 * j + 1]);
                    let right_on_top = b > a;
                    let right_below = d > c;
                    let top_max = if right_on_top { b } else { a };
                    let bottom_max = if right_below { d } else { c };
                    let top_wins = top_max >= bottom_max;
                    let max = if top_wins { top_max } else { bottom_max };
                    let g = grad_row[j].to_bits() & ones_if(max > 0.0);
                    let top_g = g & ones_if(top_wins);
                    let bottom_g = g & !ones_if(top_wins);
                    top_grad[2 * j] = f32::from_bits(top_g & !ones_if(right_on_top));
                    top_grad[2 * j + 1] = f32::from_bits(top_g & ones_if(right_on_top));
                    bottom_grad[2 * j] = f32::from_bits(bottom_g & !ones_if(right_below));
                    bottom_grad[2 * j + 1] = f32::from_bits(bottom_g & ones_if(right_below));
                }
            }
        }
        burn_flex::FlexTensor::from_data(TensorData::new(
            input_grad,
            [batch, channels, height, width],
        ))
    }
}

impl<B: Backend + PoolOps, C: CheckpointStrategy> PoolOps for Autodiff<B, C> {
    fn relu_max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ReluMaxPool2x2;

        impl<B: Backend + PoolOps> Backward<B, 1> for ReluMaxPool2x2 {
            /// The input: the backward pass finds each window's winner in it again.
            type State = FloatTensor<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let x = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::relu_max_pool2x2_backward(x, grad)
                });
            }
        }

        let node = x.node();
        let x = x.into_primitive();
        match ReluMaxPool2x2
            .prepare::<C>([node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let output = B::relu_max_pool2x2(x.clone());
                prep.finish(x, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::relu_max_pool2x2(x)),
        }
    }

    fn relu_max_pool2x2_backward(
        _x: FloatTensor<Self>,
        _output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        unimplemented!("second derivatives of pooling are not needed for training")
    }
}

/// All bits set when `condition` holds, none otherwise.
fn ones_if(condition: bool) -> u32 {
    0u32.wrapping_sub(u32::from(condition))
}

/// `relu(max_pool2d(x, 2x2, stride 2))` on any device, trainable.
pub fn relu_max_pool2x2(x: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as PoolOps>::relu_max_pool2x2(x.into_dispatch()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    /// The reference: burn's own pooling and ReLU, through burn's own autodiff.
    fn reference(x: Tensor<4>) -> Tensor<4> {
        let pool = burn::nn::pool::MaxPool2dConfig::new([2, 2])
            .with_strides([2, 2])
            .init();
        burn::tensor::activation::relu(pool.forward(x))
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap()
    }

    /// Output and input gradient of `op` applied to `x`, with a fixed upstream gradient.
    fn run(
        op: fn(Tensor<4>) -> Tensor<4>,
        x: &Tensor<4>,
        upstream: &Tensor<4>,
    ) -> (Vec<f32>, Vec<f32>) {
        let device = x.device().autodiff();
        let input = Tensor::<4>::from_data(x.to_data(), &device).require_grad();
        let output = op(input.clone());
        let weights = Tensor::<4>::from_data(upstream.to_data(), &device);
        let grads = (output.clone() * weights).sum().backward();
        let grad = input.grad(&grads).expect("input gradient");
        (values(output), values(grad))
    }

    fn check(device: Device, shape: [usize; 4]) {
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let [b, c, h, w] = shape;
        let upstream = Tensor::<4>::random(
            [b, c, h / 2, w / 2],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let (output, grad) = run(relu_max_pool2x2, &x, &upstream);
        let (want_output, want_grad) = run(reference, &x, &upstream);
        assert_eq!(output, want_output);
        assert_eq!(grad, want_grad);
        assert!(output.contains(&0.0) && output.iter().any(|&v| v > 0.0));
    }

    #[test]
    fn flex_matches_burns_pooling_and_relu_forward_and_backward() {
        check(Device::flex(), [3, 4, 8, 6]);
        check(Device::flex(), [2, 3, 7, 5]);
    }

    #[test]
    fn ndarray_matches_burns_pooling_and_relu_forward_and_backward() {
        check(Device::ndarray(), [3, 4, 8, 6]);
    }

    #[test]
    fn ties_and_zeros_route_the_gradient_like_burn() {
        let device = Device::flex();
        // Windows: a three-way tie for the maximum, all negative, a zero maximum, one clear
        // winner, and a tie between the top right and bottom left (the top right comes first).
        let x = Tensor::<4>::from_floats(
            [[[
                [1.0, 1.0, -1.0, -2.0, 0.0, -1.0, 0.5, 3.0, 0.0, 2.0],
                [1.0, 0.5, -3.0, -4.0, 0.0, 0.0, 2.0, 1.0, 2.0, 1.0],
            ]]],
            &device,
        );
        let upstream = Tensor::<4>::from_floats([[[[10.0, 20.0, 30.0, 40.0, 50.0]]]], &device);
        let (output, grad) = run(relu_max_pool2x2, &x, &upstream);
        let (want_output, want_grad) = run(reference, &x, &upstream);
        assert_eq!(output, vec![1.0, 0.0, 0.0, 3.0, 2.0]);
        assert_eq!(
            grad[9], 50.0,
            "the top right of the last window takes its gradient"
        );
        assert_eq!(output, want_output);
        assert_eq!(grad, want_grad);
    }
}
