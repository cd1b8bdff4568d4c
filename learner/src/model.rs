//! The two classifiers: the Delta Sum paper's CNN and a small MLP.

use std::fmt;
use std::str::FromStr;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::conv::conv3x3;
use crate::data::{CLASSES, IMAGE_PIXELS, IMAGE_SIDE};
use crate::dropout::DropoutMasks;
use crate::pool::relu_max_pool2x2;

/// Which architecture a learner trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// conv3x3(16) - pool - drop .2 - conv3x3(32) - pool - drop .3 - dense 32 - drop .2 - dense 10.
    Cnn,
    /// 784 - 128 relu - 10: the cheap variant for tests and quick runs.
    Mlp,
}

impl FromStr for ModelKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "cnn" => Ok(ModelKind::Cnn),
            "mlp" => Ok(ModelKind::Mlp),
            other => Err(format!("model `{other}`: expected `cnn` or `mlp`")),
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelKind::Cnn => "cnn",
            ModelKind::Mlp => "mlp",
        })
    }
}

/// The paper's CNN: 55,338 parameters.
#[derive(Module, Debug)]
pub struct Cnn {
    conv1: Conv2d,
    conv2: Conv2d,
    dense1: Linear,
    dense2: Linear,
}

impl Cnn {
    const FLAT: usize = 32 * (IMAGE_SIDE / 4) * (IMAGE_SIDE / 4);

    pub fn new(device: &Device) -> Self {
        let conv = |channels| {
            Conv2dConfig::new(channels, [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device)
        };
        Self {
            conv1: conv([1, 16]),
            conv2: conv([16, 32]),
            dense1: LinearConfig::new(Self::FLAT, 32).init(device),
            dense2: LinearConfig::new(32, CLASSES).init(device),
        }
    }

    fn forward(&self, images: Tensor<2>, mut dropout: Option<&mut DropoutMasks>) -> Tensor<2> {
        let [batch, _] = images.dims();
        let x = images.reshape([batch, 1, IMAGE_SIDE, IMAGE_SIDE]);
        // Own kernels for the convolutions' backward pass and for ReLU after pooling (max and
        // ReLU commute): see `conv` and `pool`.
        let x = relu_max_pool2x2(conv3x3(&self.conv1, x));
        let x = maybe_drop(x, 0.2, &mut dropout);
        let x = relu_max_pool2x2(conv3x3(&self.conv2, x));
        let x = maybe_drop(x, 0.3, &mut dropout);
        let x = relu(self.dense1.forward(x.reshape([batch, Self::FLAT])));
        let x = maybe_drop(x, 0.2, &mut dropout);
        self.dense2.forward(x)
    }
}

fn maybe_drop<const D: usize>(
    x: Tensor<D>,
    prob: f64,
    dropout: &mut Option<&mut DropoutMasks>,
) -> Tensor<D> {
    match dropout {
        Some(masks) => masks.apply(x, prob),
        None => x,
    }
}

/// 784-128-10 with ReLU: 101,770 parameters.
#[derive(Module, Debug)]
pub struct Mlp {
    hidden: Linear,
    output: Linear,
}

impl Mlp {
    pub fn new(device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(IMAGE_PIXELS, 128).init(device),
            output: LinearConfig::new(128, CLASSES).init(device),
        }
    }

    fn forward(&self, images: Tensor<2>) -> Tensor<2> {
        self.output.forward(relu(self.hidden.forward(images)))
    }
}

/// A classifier of either architecture, so nodes hold one concrete type.
// One model per node, moved once per training step: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Model {
    Cnn(Cnn),
    Mlp(Mlp),
}

impl Model {
    pub fn new(kind: ModelKind, device: &Device) -> Self {
        match kind {
            ModelKind::Cnn => Model::Cnn(Cnn::new(device)),
            ModelKind::Mlp => Model::Mlp(Mlp::new(device)),
        }
    }

    /// Logits `[batch, 10]` for images `[batch, 784]`; dropout only when masks are given.
    pub fn forward(&self, images: Tensor<2>, dropout: Option<&mut DropoutMasks>) -> Tensor<2> {
        match self {
            Model::Cnn(cnn) => cnn.forward(images, dropout),
            Model::Mlp(mlp) => mlp.forward(images),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_the_paper_and_the_mlp() {
        let device = Device::flex();
        assert_eq!(Model::new(ModelKind::Cnn, &device).num_params(), 55_338);
        assert_eq!(Model::new(ModelKind::Mlp, &device).num_params(), 101_770);
    }

    #[test]
    fn both_models_map_a_batch_to_ten_logits() {
        let device = Device::flex();
        for kind in [ModelKind::Cnn, ModelKind::Mlp] {
            let images = Tensor::<2>::zeros([3, IMAGE_PIXELS], &device);
            let mut masks = DropoutMasks::new(0);
            let logits = Model::new(kind, &device).forward(images, Some(&mut masks));
            assert_eq!(logits.dims(), [3, CLASSES], "{kind}");
        }
    }

    #[test]
    fn kinds_parse_and_print() {
        for kind in [ModelKind::Cnn, ModelKind::Mlp] {
            assert_eq!(kind.to_string().parse::<ModelKind>().unwrap(), kind);
        }
        assert!(
            "resnet"
                .parse::<ModelKind>()
                .unwrap_err()
                .contains("expected")
        );
    }
}
