//! Models as flat parameter vectors: aggregation is arithmetic on `Vec<f32>`, and messages carry
//! plain floats. The layout is the module's field order, the same on every node.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

struct Flatten {
    out: Vec<f32>,
}

impl ModuleVisitor for Flatten {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let data = param.val().into_data();
        let values = data
            .try_into_vec_as::<f32>()
            .expect("parameters are floats");
        self.out.extend_from_slice(&values);
    }
}

/// Every parameter of `module`, concatenated in field order.
pub fn flatten<M: Module>(module: &M) -> Vec<f32> {
    let mut visitor = Flatten {
        out: Vec::with_capacity(module.num_params()),
    };
    module.visit(&mut visitor);
    visitor.out
}

struct TensorSizes {
    sizes: Vec<usize>,
}

impl ModuleVisitor for TensorSizes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.sizes.push(param.shape().num_elements());
    }
}

/// The length of each parameter tensor in the flat layout, in order (per-tensor rules such as
/// variance correction need the boundaries).
pub fn layout<M: Module>(module: &M) -> Vec<usize> {
    let mut visitor = TensorSizes { sizes: Vec::new() };
    module.visit(&mut visitor);
    visitor.sizes
}

struct Unflatten<'a> {
    source: &'a [f32],
    position: usize,
}

impl ModuleMapper for Unflatten<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        // `Param::map` keeps the parameter id, so optimizer state stays attached.
        param.map(|tensor| {
            let (shape, device, trainable) =
                (tensor.shape(), tensor.device(), tensor.is_require_grad());
            let len = shape.num_elements();
            let values = self.source[self.position..self.position + len].to_vec();
            self.position += len;
            Tensor::<D>::from_data(TensorData::new(values, shape), &device)
                .set_require_grad(trainable)
        })
    }
}

/// `module` with its parameters replaced by `flat`, which must have the module's layout.
struct NumberParams {
    next: u64,
}

impl ModuleMapper for NumberParams {
    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.id = burn::module::ParamId::from(self.next);
        self.next += 1;
        param
    }
}

/// Gives the parameters ids 0, 1, 2... in layout order instead of random ones, so optimizer
/// state saved by one process (keyed by parameter id) applies to the same model in another.
pub fn number_params<M: Module>(module: M) -> M {
    module.map(&mut NumberParams { next: 0 })
}

pub fn unflatten<M: Module>(module: M, flat: &[f32]) -> M {
    assert_eq!(
        flat.len(),
        module.num_params(),
        "flat vector length does not match the module"
    );
    let mut mapper = Unflatten {
        source: flat,
        position: 0,
    };
    module.map(&mut mapper)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Model, ModelKind};

    #[test]
    fn flatten_and_unflatten_round_trip_in_layout_order() {
        let device = Device::flex();
        for kind in [ModelKind::Mlp, ModelKind::Cnn] {
            let model = Model::new(kind, &device);
            let sizes = layout(&model);
            assert_eq!(sizes.iter().sum::<usize>(), model.num_params());
            let values: Vec<f32> = (0..model.num_params()).map(|i| i as f32 * 1e-3).collect();
            let model = unflatten(model, &values);
            assert_eq!(flatten(&model), values, "{kind}");
        }
    }
}
