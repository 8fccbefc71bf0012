//! Per-pixel cross-entropy of NCHW logits, PyTorch's `F.cross_entropy(logits, labels,
//! ignore_index=ignore)` (the mean over labelled pixels), as one parallel pass each way on the
//! `flex` backend; Burn's `log_softmax` + `gather` on every other device and dtype.
//!
//! Why: the segmentation loss runs once per pass, six times in an A-FAN step, on logits upsampled
//! to the crop (`[2, 21, 129, 129]` in the benchmark). Through Burn's ops on flex it was a graph of
//! about ten passes over that tensor each way (the channel-axis max, subtract, `exp`, sum, `log`,
//! `gather` and its `scatter_add`, masks), 20-30 ms a pass at one thread against PyTorch's 8 ms,
//! mostly on the calling thread (issue 19's per-thread profile: `__expf_fma`, `scatter_add`,
//! `unary_op` on the main thread while the pool waits). The kernel is [`kernel`].
//!
//! Labels that are neither a class nor `ignore` are refused with a panic naming the label and its
//! place (Burn's `gather` would index out of bounds); the data loaders map every label to a class
//! or the ignored value before a batch gets here.

mod exp;
#[cfg(feature = "flex")]
mod ext;
pub mod kernel;
#[cfg(all(test, feature = "flex"))]
mod tests;

#[cfg(feature = "flex")]
pub use ext::{FastCrossEntropy, FastCrossEntropyBackward};

use crate::flex::BurnOnFlex;
use burn::tensor::activation::log_softmax;
use burn::tensor::{FloatDType, Int, Tensor};

static BURN_ON_FLEX: BurnOnFlex = BurnOnFlex::new();

/// Benchmarks only: send the loss to Burn's ops on flex too (the path before issue 19), so that
/// one binary times both (`afan bench` with `AFAN_BENCH_CROSS_ENTROPY=burn`).
#[doc(hidden)]
pub fn use_burn_on_flex(on: bool) {
    BURN_ON_FLEX.set(on);
}

/// The mean over pixels whose label is not `ignore` of `-log softmax(logits)[label]`, softmax
/// over the channels; `logits` `[B, K, H, W]`, `labels` `[B, H, W]`; 0 when no pixel is labelled
/// (PyTorch would give NaN: a batch of ignored pixels must not poison the step).
pub fn pixel_cross_entropy(logits: Tensor<4>, labels: Tensor<3, Int>, ignore: i64) -> Tensor<1> {
    let [b, k, h, w] = logits.dims();
    assert_eq!(
        labels.dims(),
        [b, h, w],
        "pixel_cross_entropy: labels must be [batch, height, width] of logits {:?}",
        [b, k, h, w]
    );
    if BURN_ON_FLEX.kernel_takes(&logits) {
        return fast(logits, labels, ignore);
    }
    burn_pixel_cross_entropy(logits, labels, ignore)
}

/// Burn's ops: `log_softmax` over the channels, the label's entry, masked and averaged.
fn burn_pixel_cross_entropy(logits: Tensor<4>, labels: Tensor<3, Int>, ignore: i64) -> Tensor<1> {
    let [b, h, w] = labels.dims();
    let valid = labels.clone().not_equal_elem(ignore);
    let safe = labels.mask_fill(valid.clone().bool_not(), 0);
    let log_p = log_softmax(logits, 1).gather(1, safe.reshape([b, 1, h, w]));
    // In the logits' type: half under mixed precision.
    let dtype = FloatDType::from(log_p.dtype());
    let weight = valid.float().cast(dtype).reshape([b, 1, h, w]);
    let count = weight.clone().sum().clamp_min(1.0);
    (log_p * weight).sum().neg() / count
}

#[cfg(feature = "flex")]
fn fast(logits: Tensor<4>, labels: Tensor<3, Int>, ignore: i64) -> Tensor<1> {
    use burn::backend::Dispatch;
    let classes = logits.dims()[1];
    let labels: std::sync::Arc<[i64]> = labels.into_data().iter::<i64>().collect();
    if let Some((i, label)) = kernel::first_bad_label(&labels, classes, ignore) {
        let [_, _, h, w] = logits.dims();
        panic!(
            "pixel_cross_entropy: label {label} at image {}, pixel ({}, {}): expected a class \
             0..{classes} or the ignored label {ignore}",
            i / (h * w),
            i % (h * w) / w,
            i % w
        );
    }
    Tensor::from_dispatch(<Dispatch as FastCrossEntropy>::afan_pixel_cross_entropy(
        logits.into_dispatch(),
        labels,
        ignore,
    ))
}

#[cfg(not(feature = "flex"))]
fn fast(_: Tensor<4>, _: Tensor<3, Int>, _: i64) -> Tensor<1> {
    unreachable!("is_flex is false without the flex feature")
}
