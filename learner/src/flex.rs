//! Host-side access to burn-flex tensors for the learner's own kernels (`pool`, `conv`).

use burn::backend::TensorMetadata;
use burn_flex::FlexTensor;

/// The dimensions of a 4-D tensor.
pub(crate) fn dims4<T: TensorMetadata>(tensor: &T) -> [usize; 4] {
    tensor.shape().dims::<4>()
}

/// The tensor with its elements in row-major order from offset 0, copied only when they are
/// not already.
pub(crate) fn contiguous_f32(tensor: FlexTensor) -> FlexTensor {
    if tensor.as_slice::<f32>().is_some() {
        tensor
    } else {
        tensor.to_contiguous()
    }
}
