//! Bilinear resizing (`F.interpolate(x, size, mode="bilinear", align_corners)`) with afan's own
//! CPU kernels on the `flex` backend, forward and backward; on every other backend two matmuls
//! with PyTorch's interpolation weights (`A_h · x · A_wᵀ`), because Burn 0.22.1's GPU backends
//! have no bilinear `interpolate` backward ("Bilinear interpolation backward is not supported by
//! JIT backend", seen on wgpu; cuda is the same cubecl code), which DeepLab's training needs.
//!
//! Why: DeepLabV3+ resizes twice per pass (the ASPP output to the low-level feature, the logits
//! to the input) and its A-FAN step runs several passes; flex's kernel recomputes the source
//! indices and weights of every output element in `f64` (see [`kernel`]).

#[cfg(feature = "flex")]
mod ext;
pub mod kernel;
#[cfg(all(test, feature = "flex"))]
mod tests;

#[cfg(feature = "flex")]
pub use ext::{FastResize, FastResizeBackward};

use burn::tensor::{Tensor, TensorData};

/// `F.interpolate(x, size, mode="bilinear", align_corners)` of `[N, C, H, W]`; `x` itself when
/// it already has that size.
pub fn resize_bilinear(x: Tensor<4>, size: [usize; 2], align_corners: bool) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    if [h, w] == size {
        return x;
    }
    if crate::flex::is_flex(&x.device()) {
        return fast_resize(x, size, align_corners);
    }
    resize_by_matmul(x, size, align_corners)
}

/// `rows · x · colsᵀ` per plane, with `rows` `[oh, h]` and `cols` `[ow, w]` holding each output
/// position's two source weights ([`kernel::AxisWeights`], the flex kernel's coefficients).
/// Differentiable with the matmul every backend has; the matrices are small (DeepLab: at most
/// the input's side squared).
pub(crate) fn resize_by_matmul(x: Tensor<4>, size: [usize; 2], align_corners: bool) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let [oh, ow] = size;
    let (device, dtype) = (x.device(), x.dtype());
    let matrix = |input: usize, output: usize| {
        let a = kernel::AxisWeights::new(input, output, align_corners);
        let mut m = vec![0f32; output * input];
        for o in 0..output {
            m[o * input + a.lo[o]] += a.w_lo[o];
            m[o * input + a.hi[o]] += a.w_hi[o];
        }
        Tensor::<3>::from_data(TensorData::new(m, [1, output, input]), &device).cast(dtype)
    };
    let rows = matrix(h, oh);
    let cols = matrix(w, ow).swap_dims(1, 2);
    rows.matmul(x.reshape([n * c, h, w]))
        .matmul(cols)
        .reshape([n, c, oh, ow])
}

#[cfg(feature = "flex")]
fn fast_resize(x: Tensor<4>, size: [usize; 2], align_corners: bool) -> Tensor<4> {
    use burn::backend::Dispatch;
    let out =
        <Dispatch as FastResize>::afan_resize_bilinear(x.into_dispatch(), size, align_corners);
    Tensor::from_dispatch(out)
}

#[cfg(not(feature = "flex"))]
fn fast_resize(_: Tensor<4>, _: [usize; 2], _: bool) -> Tensor<4> {
    unreachable!("is_flex is false without the flex feature")
}
