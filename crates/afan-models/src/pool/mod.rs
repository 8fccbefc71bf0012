//! 2-d max pooling (no dilation, floor mode, symmetric padding: the ResNet stem's 3x3/2 pool and
//! the Faster R-CNN C4 RoI head's 2x2 pool) as one pass per channel plane on the `flex` backend,
//! forward and backward; Burn's `max_pool2d` on every other device, dtype and option.
//!
//! Why: flex's `max_pool2d` runs its generic 3-d kernel (bounds worked out per tap, a closure
//! call per output) and always computes `i64` indices, even where no gradient is needed; a
//! 1-thread profile of the Faster R-CNN C4 R-18 baseline step put it at ~6.6% of the step (the
//! frozen stem's pool on a 64x300x400 map and the RoI head's pool on 128 regions, issue 19).
//!
//! Semantics are PyTorch's (and flex's): padding is `-inf`, the first maximum of a window in
//! row-major order wins, a NaN wins over every number and a later NaN over an earlier one
//! (ATen's `if ((val > maxval) || std::isnan(val))`). The backward adds each output's gradient
//! onto the input position its window picked.

#[cfg(feature = "flex")]
mod ext;
pub mod kernel;
#[cfg(all(test, feature = "flex"))]
mod tests;

#[cfg(feature = "flex")]
pub use ext::{FastMaxPool, FastMaxPoolBackward};
pub use kernel::Pool2d;

use crate::flex::BurnOnFlex;
use burn::tensor::Tensor;
use burn::tensor::ops::MaxPoolOptions;

static BURN_ON_FLEX: BurnOnFlex = BurnOnFlex::new();

/// Benchmarks only: send max pooling to Burn's `max_pool2d` on flex too (the path before issue
/// 19), so that one binary times both (`afan bench` with `AFAN_BENCH_MAXPOOL=burn`).
#[doc(hidden)]
pub fn use_burn_on_flex(on: bool) {
    BURN_ON_FLEX.set(on);
}

/// `F.max_pool2d(x, kernel, stride, padding)` of an NCHW tensor (see the module doc).
pub fn max_pool2d(x: Tensor<4>, pool: Pool2d) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    if BURN_ON_FLEX.kernel_takes(&x) && pool.applies([h, w]) {
        return fast_max_pool2d(x, pool);
    }
    let options = MaxPoolOptions::new(pool.kernel)
        .with_stride(pool.stride)
        .with_padding_pairs([0, 1].map(|d| (pool.padding[d], pool.padding[d])));
    burn::tensor::module::max_pool2d(x, options)
}

#[cfg(feature = "flex")]
fn fast_max_pool2d(x: Tensor<4>, pool: Pool2d) -> Tensor<4> {
    use burn::backend::Dispatch;
    Tensor::from_dispatch(<Dispatch as FastMaxPool>::afan_max_pool2d(
        x.into_dispatch(),
        pool.kernel,
        pool.stride,
        pool.padding,
    ))
}

#[cfg(not(feature = "flex"))]
fn fast_max_pool2d(_: Tensor<4>, _: Pool2d) -> Tensor<4> {
    unreachable!("is_flex is false without the flex feature")
}
