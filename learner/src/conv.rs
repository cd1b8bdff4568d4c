//! 3x3 convolution with stride 1 and "same" padding, as one backend operation with its own
//! backward pass.
//!
//! burn's generic backward pass computes a convolution's weight gradient as another
//! convolution, of the input with the output gradient as a batch-wide kernel: with burn-flex
//! that means swapping the batch and channel axes of both (two full copies) and an im2col
//! matrix as large as the batch, and it left the CNN's backward pass four times slower than
//! PyTorch's. Here the weight gradient is the textbook product instead: per image, the output
//! gradient `[out, pixels]` times the input's 3x3 patches `[pixels, in x 9]`, accumulated by
//! `gemm` in place, with the bias gradient summed on the way. The input gradient is the forward
//! convolution of the output gradient with the flipped, transposed kernel, so it runs on the
//! backend's forward path.
//!
//! Flex runs the kernels below; other backends use the default bodies (burn's own convolution
//! and its backward pass), which are also the reference the tests compare against.

// burn 0.22 deprecates the ndarray backend, which the learner still offers as `--backend ndarray`.
#![allow(deprecated)]

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::{ConvOptions, ModuleOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, Backend, Dispatch, Flex, NdArray, TensorMetadata, backend_extension,
};
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::TensorData;
use burn_flex::FlexTensor;

use crate::flex::{contiguous_f32, dims4};

fn same_padding() -> ConvOptions<2> {
    ConvOptions::new([1, 1], [1, 1], [1, 1], 1)
}

#[backend_extension(Flex, NdArray, Autodiff)]
pub trait Conv3x3Ops: Backend {
    /// `x [batch, in, h, w]` convolved with `weight [out, in, 3, 3]`, plus `bias [out]`.
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::conv2d(x, weight, Some(bias), same_padding())
    }

    /// The gradient with respect to `x` (whose shape it takes from `x`).
    fn conv3x3_input_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::conv2d_x_backward(x, weight, output_grad, same_padding())
    }

    /// The gradients with respect to the weight and the bias.
    fn conv3x3_params_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let [_, out_channels, _, _] = output_grad.shape().dims::<4>();
        let summed = [3, 2, 0]
            .into_iter()
            .fold(output_grad.clone(), Self::float_sum_dim);
        let bias_grad = Self::float_reshape(summed, [out_channels].into());
        let weight_grad = Self::conv2d_weight_backward(x, weight, output_grad, same_padding());
        (weight_grad, bias_grad)
    }
}

impl Conv3x3Ops for NdArray {}

impl Conv3x3Ops for Flex {
    fn conv3x3_input_grad(
        _x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let [out_channels, in_channels, 3, 3] = dims4(&weight) else {
            panic!("conv3x3: kernel must be 3x3");
        };
        let weight = contiguous_f32(weight);
        let weight = weight.as_slice::<f32>().expect("contiguous f32 tensor");
        // flipped[i][o][2 - r][2 - c] = weight[o][i][r][c]
        let mut flipped = vec![0.0f32; weight.len()];
        for o in 0..out_channels {
            for i in 0..in_channels {
                let from = &weight[(o * in_channels + i) * 9..][..9];
                let to = &mut flipped[(i * out_channels + o) * 9..][..9];
                for (t, f) in to.iter_mut().zip(from.iter().rev()) {
                    *t = *f;
                }
            }
        }
        let flipped =
            FlexTensor::from_data(TensorData::new(flipped, [in_channels, out_channels, 3, 3]));
        Self::conv2d(output_grad, flipped, None, same_padding())
    }

    fn conv3x3_params_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let [batch, in_channels, height, width] = dims4(&x);
        let [out_channels, ..] = dims4(&weight);
        let x = contiguous_f32(x);
        let output_grad = contiguous_f32(output_grad);
        let x = x.as_slice::<f32>().expect("contiguous f32 tensor");
        let output_grad = output_grad
            .as_slice::<f32>()
            .expect("contiguous f32 tensor");
        let pixels = height * width;
        let patch = in_channels * 9;
        let mut patches = vec![0.0f32; patch * pixels];
        let mut weight_grad = vec![0.0f32; out_channels * patch];
        let mut bias_grad = vec![0.0f32; out_channels];
        for image in 0..batch {
            let input = &x[image * in_channels * pixels..][..in_channels * pixels];
            let grad = &output_grad[image * out_channels * pixels..][..out_channels * pixels];
            im2col_3x3(input, in_channels, height, width, &mut patches);
            // weight_grad[out, patch] += grad[out, pixels] x patches[patch, pixels]^T
            // SAFETY: every pointer covers its matrix for the given dimensions and strides
            // (grad: out_channels x pixels, row stride `pixels`; patches read transposed:
            // pixels x patch, column stride `pixels`; weight_grad: out_channels x patch, row
            // stride `patch`), the destination aliases neither input, and no other thread
            // touches them.
            unsafe {
                gemm::gemm(
                    out_channels,
                    patch,
                    pixels,
                    weight_grad.as_mut_ptr(),
                    1,
                    patch as isize,
                    image > 0,
                    grad.as_ptr(),
                    1,
                    pixels as isize,
                    patches.as_ptr(),
                    pixels as isize,
                    1,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            for (sum, plane) in bias_grad.iter_mut().zip(grad.chunks_exact(pixels)) {
                *sum += plane.iter().sum::<f32>();
            }
        }
        (
            FlexTensor::from_data(TensorData::new(
                weight_grad,
                [out_channels, in_channels, 3, 3],
            )),
            FlexTensor::from_data(TensorData::new(bias_grad, [out_channels])),
        )
    }
}

/// The 3x3 neighbourhoods of one image `[channels, height, width]`, zero outside it, as
/// `patches[(channel, row offset, column offset)][pixel]`: each row of the result is the image
/// plane shifted by one offset, so it is built from whole-row copies.
fn im2col_3x3(image: &[f32], channels: usize, height: usize, width: usize, patches: &mut [f32]) {
    let pixels = height * width;
    debug_assert_eq!(patches.len(), channels * 9 * pixels);
    for (row, shifted) in patches.chunks_exact_mut(pixels).enumerate() {
        let (channel, dy, dx) = (row / 9, (row % 9) / 3, row % 3);
        let plane = &image[channel * pixels..][..pixels];
        for (y, out) in shifted.chunks_exact_mut(width).enumerate() {
            let source_y = (y + dy).wrapping_sub(1);
            if source_y >= height {
                out.fill(0.0);
                continue;
            }
            let source = &plane[source_y * width..][..width];
            match dx {
                0 => {
                    out[0] = 0.0;
                    out[1..].copy_from_slice(&source[..width - 1]);
                }
                1 => out.copy_from_slice(source),
                _ => {
                    out[..width - 1].copy_from_slice(&source[1..]);
                    out[width - 1] = 0.0;
                }
            }
        }
    }
}

impl<B: Backend + Conv3x3Ops, C: CheckpointStrategy> Conv3x3Ops for Autodiff<B, C> {
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Conv3x3;

        impl<B: Backend + Conv3x3Ops> Backward<B, 3> for Conv3x3 {
            /// The input and the weight.
            type State = (FloatTensor<B>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let [x_node, weight_node, bias_node] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x, weight) = ops.state;
                if let Some(node) = x_node {
                    let x_grad = B::conv3x3_input_grad(x.clone(), weight.clone(), grad.clone());
                    grads.register::<B>(node.id, x_grad);
                }
                if weight_node.is_some() || bias_node.is_some() {
                    let (weight_grad, bias_grad) = B::conv3x3_params_grad(x, weight, grad);
                    if let Some(node) = weight_node {
                        grads.register::<B>(node.id, weight_grad);
                    }
                    if let Some(node) = bias_node {
                        grads.register::<B>(node.id, bias_grad);
                    }
                }
            }
        }

        let nodes = [x.node(), weight.node(), bias.node()];
        let (x, weight, bias) = (
            x.into_primitive(),
            weight.into_primitive(),
            bias.into_primitive(),
        );
        match Conv3x3.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let output = B::conv3x3(x.clone(), weight.clone(), bias);
                prep.finish((x, weight), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv3x3(x, weight, bias)),
        }
    }

    fn conv3x3_input_grad(
        _x: FloatTensor<Self>,
        _weight: FloatTensor<Self>,
        _output_grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        unimplemented!("second derivatives of convolutions are not needed for training")
    }

    fn conv3x3_params_grad(
        _x: FloatTensor<Self>,
        _weight: FloatTensor<Self>,
        _output_grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        unimplemented!("second derivatives of convolutions are not needed for training")
    }
}

/// `conv` (a 3x3 kernel with stride 1, "same" padding and a bias) applied to `x`, trainable.
pub fn conv3x3(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let bias = conv.bias.as_ref().expect("conv3x3 needs a bias").val();
    Tensor::from_dispatch(<Dispatch as Conv3x3Ops>::conv3x3(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias.into_dispatch(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;

    /// Output and gradients (input, weight, bias) of `forward` on `x`, weighted by `upstream`.
    fn run(
        forward: fn(&Conv2d, Tensor<4>) -> Tensor<4>,
        conv: &Conv2d,
        x: &Tensor<4>,
        upstream: &Tensor<4>,
    ) -> [Vec<f32>; 4] {
        let device = x.device();
        let input = Tensor::<4>::from_data(x.to_data(), &device).require_grad();
        let output = forward(conv, input.clone());
        let grads = (output.clone() * upstream.clone()).sum().backward();
        let values =
            |t: Option<Tensor<4>>| -> Vec<f32> { t.unwrap().into_data().to_vec().unwrap() };
        let bias = conv.bias.as_ref().unwrap().val();
        [
            output.into_data().to_vec().unwrap(),
            values(input.grad(&grads)),
            values(conv.weight.val().grad(&grads)),
            bias.grad(&grads).unwrap().into_data().to_vec().unwrap(),
        ]
    }

    fn close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-4 * scale, "{what}[{i}]: {g} vs {w}");
        }
    }

    fn check(device: Device, shape: [usize; 4], out_channels: usize) {
        let device = device.autodiff();
        let [batch, in_channels, height, width] = shape;
        let conv = Conv2dConfig::new([in_channels, out_channels], [3, 3])
            .with_padding(PaddingConfig2d::Same)
            .init(&device);
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let upstream = Tensor::<4>::random(
            [batch, out_channels, height, width],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let got = run(conv3x3, &conv, &x, &upstream);
        let want = run(|c, x| c.forward(x), &conv, &x, &upstream);
        for (what, (g, w)) in ["output", "input grad", "weight grad", "bias grad"]
            .iter()
            .zip(got.iter().zip(&want))
        {
            close(g, w, what);
        }
    }

    #[test]
    fn flex_matches_burns_convolution_forward_and_backward() {
        check(Device::flex(), [3, 2, 7, 5], 4);
        check(Device::flex(), [2, 1, 6, 6], 3);
        check(Device::flex(), [4, 16, 14, 14], 32);
    }

    #[test]
    fn ndarray_matches_burns_convolution_forward_and_backward() {
        check(Device::ndarray(), [2, 2, 5, 4], 3);
    }

    #[test]
    fn patches_are_shifted_planes_with_zero_borders() {
        // One 2x3 channel: 1 2 3 / 4 5 6.
        let image = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut patches = vec![f32::NAN; 9 * 6];
        im2col_3x3(&image, 1, 2, 3, &mut patches);
        // Offset (-1, -1): each pixel sees its upper-left neighbour.
        assert_eq!(&patches[..6], &[0.0, 0.0, 0.0, 0.0, 1.0, 2.0]);
        // Offset (0, 0): the image itself.
        assert_eq!(&patches[4 * 6..5 * 6], &image);
        // Offset (+1, +1): the lower-right neighbour.
        assert_eq!(&patches[8 * 6..], &[5.0, 6.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
