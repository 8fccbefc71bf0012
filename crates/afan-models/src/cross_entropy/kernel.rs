//! Cross-entropy over the channel axis of `[N, K, P]` logits (`P` pixels per image), forward and
//! backward, over contiguous `f32` slices.
//!
//! The forward computes each pixel's log-sum-exp over the `K` classes (max, then the sum of
//! `exp(x - max)`), walking the classes' rows with the pixels innermost so that the max and the
//! sums vectorise over pixels; it keeps the log-sum-exps, which is all the backward needs
//! besides the logits: `d loss / d x[k] = scale * (exp(x[k] - lse) - [k == label])`. That is one
//! `exp` per element each way, as PyTorch's `log_softmax` + `nll_loss` pair.
//!
//! Determinism: the forward's pixel losses are summed in `f64`, within fixed chunks of pixels
//! and then chunk by chunk in order, so the loss does not depend on the thread count; the
//! backward writes every element independently.

use super::exp::exp_nonpositive;
use crate::conv::scratch::{assume_init, uninit_vec};
use crate::simd::Isa;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Pixels handed to one rayon task in the forward (each task keeps a max and a sum per pixel).
const CHUNK: usize = 512;

/// The shape of the logits: `images` x `classes` x `pixels`, contiguous.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelLogits {
    pub images: usize,
    pub classes: usize,
    pub pixels: usize,
}

impl PixelLogits {
    fn len(&self) -> usize {
        self.images * self.classes * self.pixels
    }
}

/// The forward's results: the mean loss over the labelled pixels, the log-sum-exp of every pixel
/// (`[N, P]`, for the backward) and how many pixels were labelled.
#[derive(Debug)]
pub struct Forward {
    pub loss: f32,
    pub lse: Vec<f32>,
    pub labelled: usize,
}

/// The first label that is neither a class (`0..classes`) nor `ignore`: `(index, label)`.
pub fn first_bad_label(labels: &[i64], classes: usize, ignore: i64) -> Option<(usize, i64)> {
    labels
        .iter()
        .position(|&l| l != ignore && !(0..classes as i64).contains(&l))
        .map(|i| (i, labels[i]))
}

/// How many of `labels` are not `ignore`.
pub fn labelled(labels: &[i64], ignore: i64) -> usize {
    labels.iter().filter(|&&l| l != ignore).count()
}

/// The mean over pixels whose label is not `ignore` of `-log softmax(x)[label]` (0 when no pixel
/// is labelled, as the division by `max(count, 1)` of the Burn path). Labels must be classes or
/// `ignore` ([`first_bad_label`]).
pub fn cross_entropy_forward(
    shape: PixelLogits,
    logits: &[f32],
    labels: &[i64],
    ignore: i64,
) -> Forward {
    let PixelLogits {
        images,
        classes,
        pixels,
    } = shape;
    assert_eq!(logits.len(), shape.len(), "cross_entropy: logits length");
    assert_eq!(
        labels.len(),
        images * pixels,
        "cross_entropy: labels length"
    );
    let mut lse = uninit_vec(images * pixels);
    let isa = Isa::detect();
    let sums: Vec<f64> = lse
        .par_chunks_mut(pixels.max(1))
        .enumerate()
        .flat_map(|(n, lse_n)| {
            let x_n = &logits[n * classes * pixels..][..classes * pixels];
            let labels_n = &labels[n * pixels..][..pixels];
            lse_n
                .par_chunks_mut(CHUNK)
                .enumerate()
                .map(move |(c, out)| {
                    let start = c * CHUNK;
                    isa.run(
                        #[inline(always)]
                        || lse_chunk(x_n, pixels, classes, start, out),
                    );
                    // SAFETY: `lse_chunk` wrote every element of `out`.
                    let out = unsafe { &*(out as *const [MaybeUninit<f32>] as *const [f32]) };
                    let mut sum = 0f64;
                    for (j, (&l, &lse)) in
                        labels_n[start..][..out.len()].iter().zip(out).enumerate()
                    {
                        if l != ignore {
                            let x = x_n[l as usize * pixels + start + j];
                            sum += f64::from(lse - x);
                        }
                    }
                    sum
                })
        })
        .collect();
    let labelled = labelled(labels, ignore);
    let loss = (sums.iter().sum::<f64>() / labelled.max(1) as f64) as f32;
    // SAFETY: every chunk of every image was written by `lse_chunk`.
    let lse = unsafe { assume_init(lse) };
    Forward {
        loss,
        lse,
        labelled,
    }
}

/// The log-sum-exp over classes of pixels `start..start + out.len()` of one image `x` (`[K, P]`).
/// NaN in any class makes the pixel's NaN (the max skips it, the sum does not).
#[inline(always)]
fn lse_chunk(x: &[f32], pixels: usize, classes: usize, start: usize, out: &mut [MaybeUninit<f32>]) {
    let len = out.len();
    let mut max = [f32::NEG_INFINITY; CHUNK];
    let max = &mut max[..len];
    for k in 0..classes {
        let row = &x[k * pixels + start..][..len];
        for (m, &v) in max.iter_mut().zip(row) {
            *m = if v > *m { v } else { *m };
        }
    }
    let mut sum = [0f32; CHUNK];
    let sum = &mut sum[..len];
    for k in 0..classes {
        let row = &x[k * pixels + start..][..len];
        for ((s, &m), &v) in sum.iter_mut().zip(max.iter()).zip(row) {
            *s += exp_nonpositive(v - m);
        }
    }
    for ((o, &m), &s) in out.iter_mut().zip(max.iter()).zip(sum.iter()) {
        o.write(m + s.ln());
    }
}

/// The logits' gradient of `grad * loss` ([`cross_entropy_forward`]'s mean): for a labelled
/// pixel `grad / count * (softmax(x)[k] - [k == label])`, 0 for an ignored one.
pub fn cross_entropy_backward(
    shape: PixelLogits,
    grad: f32,
    logits: &[f32],
    lse: &[f32],
    labels: &[i64],
    ignore: i64,
) -> Vec<f32> {
    let mut dx = uninit_vec(shape.len());
    cross_entropy_backward_into(shape, grad, logits, lse, labels, ignore, &mut dx);
    // SAFETY: `cross_entropy_backward_into` writes every element.
    unsafe { assume_init(dx) }
}

pub(super) fn cross_entropy_backward_into(
    shape: PixelLogits,
    grad: f32,
    logits: &[f32],
    lse: &[f32],
    labels: &[i64],
    ignore: i64,
    dx: &mut [MaybeUninit<f32>],
) {
    let PixelLogits {
        images,
        classes,
        pixels,
    } = shape;
    assert_eq!(logits.len(), shape.len(), "cross_entropy: logits length");
    assert_eq!(dx.len(), shape.len(), "cross_entropy: gradient length");
    assert_eq!(lse.len(), images * pixels, "cross_entropy: lse length");
    assert_eq!(
        labels.len(),
        images * pixels,
        "cross_entropy: labels length"
    );
    let scale = grad / labelled(labels, ignore).max(1) as f32;
    let isa = Isa::detect();
    // One task per class row of an image: `P` contiguous elements.
    dx.par_chunks_mut(pixels.max(1))
        .zip(logits.par_chunks(pixels.max(1)))
        .enumerate()
        .for_each(|(row, (dx, x))| {
            let (n, k) = (row / classes.max(1), (row % classes.max(1)) as i64);
            let lse = &lse[n * pixels..][..pixels];
            let labels = &labels[n * pixels..][..pixels];
            isa.run(
                #[inline(always)]
                || grad_row(dx, x, lse, labels, k, ignore, scale),
            );
        });
}

/// One class row `k` of one image's logits' gradient ([`cross_entropy_backward_into`]).
#[inline(always)]
fn grad_row(
    dx: &mut [MaybeUninit<f32>],
    x: &[f32],
    lse: &[f32],
    labels: &[i64],
    k: i64,
    ignore: i64,
    scale: f32,
) {
    for (((d, &x), &lse), &l) in dx.iter_mut().zip(x).zip(lse).zip(labels) {
        let hot = if l == k { 1.0 } else { 0.0 };
        let g = scale * (exp_nonpositive(x - lse) - hot);
        d.write(if l == ignore { 0.0 } else { g });
    }
}
