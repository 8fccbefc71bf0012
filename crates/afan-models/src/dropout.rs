//! Burn's [`Dropout`] layer applied with its mask drawn through [`afan_core::draw`]: from the
//! training step's draw scope when the engine opened one (so data-parallel replicas and every
//! backend draw the same masks for a seed), from the backend's generator otherwise. The layer
//! itself stays Burn's (its probability and training flag, and the record layout with them).

use afan_core::draw::keep_mask;
use burn::nn::Dropout;
use burn::tensor::Tensor;

/// `layer`'s dropout of `x`: the identity at evaluation (the layer's training flag off, or a
/// device without autodiff) or at probability 0, as Burn's `Dropout::forward`.
pub fn apply<const D: usize>(layer: &Dropout, x: Tensor<D>) -> Tensor<D> {
    if !layer.training.is_enabled() || !x.device().is_autodiff() || layer.prob == 0.0 {
        return x;
    }
    let mask = keep_mask(x.dims(), (&x.device(), x.dtype()), 1.0 - layer.prob);
    x * mask
}
