//! ReLU6 and its gradient over contiguous `f32` slices, in parallel chunks. Every element is
//! independent, so the results do not depend on the thread count.

use crate::conv::scratch::{assume_init, uninit_vec};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Elements handed to one rayon task: enough to hide the scheduling, small enough to spread.
const CHUNK: usize = 1 << 14;

/// `min(max(x, 0), 6)`; NaN stays NaN (PyTorch's `clamp`; `f32::clamp` keeps NaN, unlike
/// `f32::max`). Also batch norm's fused ReLU6 (its `Activation::Relu6`).
#[inline(always)]
pub(crate) fn relu6(x: f32) -> f32 {
    x.clamp(0.0, 6.0)
}

/// `dy` where `0 < y < 6`, else 0: PyTorch's `hardtanh_backward`
/// (`(y <= 0 || y >= 6) ? 0 : dy`), on the input or the output alike. Also batch norm's fused
/// ReLU6's gradient mask.
#[inline(always)]
pub(crate) fn relu6_grad(dy: f32, y: f32) -> f32 {
    if y <= 0.0 || y >= 6.0 { 0.0 } else { dy }
}

/// ReLU6 of `x`.
pub fn relu6_forward(x: &[f32]) -> Vec<f32> {
    let mut y = uninit_vec(x.len());
    relu6_forward_into(x, &mut y);
    // SAFETY: `relu6_forward_into` writes every element.
    unsafe { assume_init(y) }
}

pub(super) fn relu6_forward_into(x: &[f32], y: &mut [MaybeUninit<f32>]) {
    assert_eq!(x.len(), y.len(), "relu6: output length");
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| {
            for (y, &x) in y.iter_mut().zip(x) {
                y.write(relu6(x));
            }
        });
}

/// The input gradient of ReLU6 from the output gradient `dy` and the op's input or output `y`.
pub fn relu6_backward(dy: &[f32], y: &[f32]) -> Vec<f32> {
    let mut dx = uninit_vec(dy.len());
    relu6_backward_into(dy, y, &mut dx);
    // SAFETY: `relu6_backward_into` writes every element.
    unsafe { assume_init(dx) }
}

pub(super) fn relu6_backward_into(dy: &[f32], y: &[f32], dx: &mut [MaybeUninit<f32>]) {
    assert_eq!(
        dy.len(),
        y.len(),
        "relu6 backward: gradient and value lengths"
    );
    assert_eq!(dy.len(), dx.len(), "relu6 backward: output length");
    dx.par_chunks_mut(CHUNK)
        .zip(dy.par_chunks(CHUNK).zip(y.par_chunks(CHUNK)))
        .for_each(|(dx, (dy, y))| {
            for ((dx, &dy), &y) in dx.iter_mut().zip(dy).zip(y) {
                dx.write(relu6_grad(dy, y));
            }
        });
}
