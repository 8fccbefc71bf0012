//! ReLU6 (`min(max(x, 0), 6)`, torchvision MobileNetV2's `nn.ReLU6`) as one parallel pass on the
//! `flex` backend, forward and backward; composed from Burn's ops (`relu6_composed`) on every
//! other device and dtype, with the same boundary gradient.
//!
//! Why: on flex, Burn's `clamp` is a comparison plus a `mask_fill` per bound (each a copy, element
//! by element) and its backward masks again; a profile of the DeepLabV3+ MobileNetV2 step put
//! `mask_fill` at 15% of it (issue 19).
//!
//! The boundary gradient is PyTorch's: `nn.ReLU6` is `F.hardtanh(x, 0, 6)`, whose backward
//! (`hardtanh_backward` in `derivatives.yaml`, ATen's CPU kernel
//! `(x <= min || x >= max) ? 0 : grad`) passes the gradient only on the open interval `(0, 6)`:
//! zero at `x == 0` and at `x == 6`. A NaN input stays NaN forward (as PyTorch's `clamp`) and passes
//! its gradient (neither comparison holds). The backward reads the op's output, not its input, as
//! PyTorch's in-place `ReLU6(inplace=True)` does (`hardtanh_backward(grad, result, ..)`): the
//! mask is the same (`y` is `x` inside the interval and a bound outside it) and the output is
//! kept alive by the next layer anyway.
//!
//! MobileNetV2's ReLU6s follow a batch norm and run inside it (batch norm's
//! `Activation::Relu6`, with these element functions); this pass is what `AFAN_NORM_RELU6=0`
//! (the benchmarks' switch) and ReLU6s elsewhere run.

#[cfg(feature = "flex")]
mod ext;
pub mod kernel;
#[cfg(all(test, feature = "flex"))]
mod tests;

#[cfg(feature = "flex")]
pub use ext::{FastRelu6, FastRelu6Backward};

use crate::flex::BurnOnFlex;
use burn::tensor::Tensor;

static BURN_ON_FLEX: BurnOnFlex = BurnOnFlex::new();

/// Benchmarks only: send ReLU6 to Burn's `clamp(0, 6)` on flex too (the path before issue 19),
/// so that one binary times both (`afan bench` with `AFAN_BENCH_RELU6=burn`).
#[doc(hidden)]
pub fn use_burn_on_flex(on: bool) {
    BURN_ON_FLEX.set(on);
}

/// Whether [`use_burn_on_flex`] is on (then batch norm leaves ReLU6 to [`relu6`], unfused).
pub(crate) fn burn_on_flex() -> bool {
    BURN_ON_FLEX.is_set()
}

/// `min(max(x, 0), 6)` with PyTorch's gradient (see the module doc), on every device.
pub fn relu6<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if BURN_ON_FLEX.kernel_takes(&x) {
        return fast_relu6(x);
    }
    if BURN_ON_FLEX.is_set() {
        // Benchmarks only: Burn's own op, the path before afan's kernel.
        return burn::tensor::activation::relu6(x);
    }
    relu6_composed(x)
}

/// ReLU6 from Burn's ops with the kernel's (PyTorch's) gradient, for devices and dtypes the
/// kernel does not take (and batch norm's fallback): Burn's `clamp(0, 6)` is two `mask_fill`s on
/// `y < 0` and `y > 6`, which pass the gradient at exactly 0 and 6; filling on `y <= 0` and
/// `y >= 6` gives the same values (up to the sign of a zero) and zero gradient at both bounds.
/// NaN fails both comparisons: kept, with its gradient, as in the kernel.
pub(crate) fn relu6_composed<const D: usize>(y: Tensor<D>) -> Tensor<D> {
    let low = y.clone().lower_equal_elem(0.0);
    let high = y.clone().greater_equal_elem(6.0);
    y.mask_fill(low, 0.0).mask_fill(high, 6.0)
}

#[cfg(feature = "flex")]
fn fast_relu6<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    use burn::backend::Dispatch;
    Tensor::from_dispatch(<Dispatch as FastRelu6>::afan_relu6(x.into_dispatch()))
}

#[cfg(not(feature = "flex"))]
fn fast_relu6<const D: usize>(_: Tensor<D>) -> Tensor<D> {
    unreachable!("is_flex is false without the flex feature")
}
