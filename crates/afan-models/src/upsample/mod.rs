//! Bilinear resizing (`F.interpolate(x, size, mode="bilinear", align_corners)`) with afan's own
//! CPU kernels on the `flex` backend, forward and backward; Burn's `interpolate` on every other
//! backend.
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

use burn::tensor::Tensor;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

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
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Bilinear)
            .with_align_corners(align_corners)
            .with_output_size(size),
    )
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
