//! Batch-norm kernels on contiguous NCHW `f32` slices: the per-channel batch statistics and the
//! normalisation with its affine map, optional residual add and optional [`Activation`] (ReLU or
//! ReLU6) in one pass (the backward pass is in [`super::backward`]), and the lane helpers both
//! share.
//!
//! Why: Burn's composed `batch_norm_train`, the residual add and the activation each read and
//! write the whole activation (flex's reductions over dims 0, 2, 3 also transpose it through
//! `copy_2d_tiled`). Here the forward reads the input twice (statistics, then normalisation) and
//! writes once; the backward reads its inputs twice and writes the input gradient once. ReLU6
//! (MobileNetV2's) is fused for the same reason ReLU is: as its own pass (`crate::relu6`) it read
//! and wrote every expanded activation once more forward and once more backward (3-4% of the
//! DeepLabV3+ MobileNetV2 step, issue 19).
//!
//! Determinism: every sum is taken per (image, channel) plane in a fixed lane order, and the planes
//! of a channel are combined in image order in `f64`, so results are bit-identical run to run and
//! do not depend on how rayon spreads the planes over threads (the CLI's resume test needs this).
//! The plane loops run compiled for the CPU's widest instruction set (`crate::simd`),
//! which changes neither the lane order nor any result bit.

use crate::simd::Isa;
use rayon::prelude::*;

/// The NCHW extent of a batch-norm input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planes {
    /// Images in the batch.
    pub batch: usize,
    /// Channels.
    pub channels: usize,
    /// Pixels per (image, channel) plane: `H * W`.
    pub pixels: usize,
}

impl Planes {
    /// Elements in the whole tensor.
    pub fn len(&self) -> usize {
        self.batch * self.channels * self.pixels
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements that share one channel's statistics: `N * H * W`.
    pub fn per_channel(&self) -> usize {
        self.batch * self.pixels
    }

    /// Planes handed to one rayon task: enough work (about 16k elements) to hide the scheduling
    /// and the call into the task's [`Isa::run`] (one per task: one per 64-element plane cost
    /// more than AVX-512 saved).
    pub(super) fn planes_per_task(&self) -> usize {
        (16_384 / self.pixels.max(1)).max(1)
    }
}

/// Independent partial sums per plane, kept in vector registers. 32 rather than 8: with 8, every
/// sum was one chain of dependent vector adds (one AVX register, or two SSE ones), bound by the
/// add latency whatever the vector width; 32 is two AVX-512, four AVX2 or eight SSE2 chains
/// (norm_bench: all batch norms of a step 0.085 -> 0.070 s; 64 was no faster). Planes shorter
/// than `LANES` are summed by the scalar tail alone, in order.
pub(crate) const LANES: usize = 32;

/// `sum_i f(inputs[0][i], ..)` over one plane: element `i` of the first `len - len % LANES` goes
/// to partial sum `i % LANES` (in increasing `i`), the partial sums are added left to right, then
/// the tail elements in order. The order is fixed, so the result is the same on every run, thread
/// count and instruction set.
#[inline(always)]
pub(super) fn lane_sum<const K: usize>(inputs: [&[f32]; K], f: impl Fn([f32; K]) -> f32) -> f32 {
    let len = inputs[0].len();
    assert!(inputs.iter().all(|s| s.len() == len));
    let mut acc = [0.0f32; LANES];
    let mut i = 0;
    while i + LANES <= len {
        let chunk: [&[f32; LANES]; K] = inputs.map(|s| s[i..i + LANES].try_into().unwrap());
        for (l, a) in acc.iter_mut().enumerate() {
            *a += f(chunk.map(|c| c[l]));
        }
        i += LANES;
    }
    let tail: f32 = (i..len).map(|j| f(inputs.map(|s| s[j]))).sum();
    acc.iter().sum::<f32>() + tail
}

/// `out[i] = f(out[i], inputs[0][i], ..)` over one plane, in `LANES`-wide chunks the compiler
/// vectorises. Reading the old value lets a pass overwrite one of its own inputs (an activation
/// or gradient buffer nothing else holds) instead of writing a fresh one.
#[inline(always)]
pub(super) fn lane_update<const K: usize>(
    out: &mut [f32],
    inputs: [&[f32]; K],
    f: impl Fn(f32, [f32; K]) -> f32,
) {
    let len = out.len();
    assert!(inputs.iter().all(|s| s.len() == len));
    let mut i = 0;
    while i + LANES <= len {
        let chunk: [&[f32; LANES]; K] = inputs.map(|s| s[i..i + LANES].try_into().unwrap());
        let dst: &mut [f32; LANES] = (&mut out[i..i + LANES]).try_into().unwrap();
        for (l, d) in dst.iter_mut().enumerate() {
            *d = f(*d, chunk.map(|c| c[l]));
        }
        i += LANES;
    }
    for j in i..len {
        out[j] = f(out[j], inputs.map(|s| s[j]));
    }
}

/// What follows the normalisation (and the residual add) in the same pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    /// Nothing: the normalised value (plus the residual).
    #[default]
    None,
    /// `max(v, 0)`, NaN kept; gradient where the output is positive or NaN.
    Relu,
    /// `min(max(v, 0), 6)`, NaN kept; gradient on the open interval `0 < y < 6` and where the
    /// output is NaN: the convention of `crate::relu6` (PyTorch's `hardtanh_backward`), whose
    /// element functions it calls.
    Relu6,
}

/// ReLU that lets NaN through, as flex's and PyTorch's do.
#[inline(always)]
pub(super) fn relu(v: f32) -> f32 {
    if v > 0.0 || v.is_nan() { v } else { 0.0 }
}

/// The ReLU gradient mask: `dy` where the output was positive (or NaN), 0 elsewhere.
#[inline(always)]
pub(super) fn relu_grad(out: f32, dy: f32) -> f32 {
    if out > 0.0 || out.is_nan() { dy } else { 0.0 }
}

/// The ReLU6 gradient mask from the output (see [`Activation::Relu6`]).
#[inline(always)]
pub(super) fn relu6_grad(out: f32, dy: f32) -> f32 {
    crate::relu6::kernel::relu6_grad(dy, out)
}

/// Per-channel batch mean and biased variance of `x [N, C, H, W]`.
///
/// Each plane contributes its own mean and sum of squared deviations (two passes over a plane that
/// stays in cache); the planes of a channel are merged in image order with Chan's formula in `f64`,
/// which avoids the cancellation of `E[x^2] - E[x]^2`.
pub fn batch_stats(p: Planes, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    batch_stats_on(Isa::detect(), p, x)
}

/// [`batch_stats`] with its plane loops compiled for `isa`.
pub(crate) fn batch_stats_on(isa: Isa, p: Planes, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), p.len());
    if p.is_empty() {
        return (vec![0.0; p.channels], vec![0.0; p.channels]);
    }
    let plane_stats: Vec<(f32, f32)> = x
        .par_chunks(p.pixels * p.planes_per_task())
        .flat_map_iter(|task| {
            isa.run(
                #[inline(always)]
                || {
                    let mut stats = Vec::with_capacity(task.len() / p.pixels);
                    for plane in task.chunks(p.pixels) {
                        let mean = lane_sum([plane], |[v]| v) / p.pixels as f32;
                        stats.push((mean, lane_sum([plane], |[v]| (v - mean) * (v - mean))));
                    }
                    stats
                },
            )
        })
        .collect();
    let count = p.per_channel() as f64;
    let mut means = Vec::with_capacity(p.channels);
    let mut vars = Vec::with_capacity(p.channels);
    for c in 0..p.channels {
        let planes = || (0..p.batch).map(|n| plane_stats[n * p.channels + c]);
        let mean = planes().map(|(m, _)| m as f64).sum::<f64>() / p.batch as f64;
        let m2: f64 = planes()
            .map(|(m, s)| s as f64 + p.pixels as f64 * (m as f64 - mean).powi(2))
            .sum();
        means.push(mean as f32);
        vars.push((m2 / count) as f32);
    }
    (means, vars)
}

/// `1 / sqrt(var + epsilon)` per channel.
pub fn inv_std(var: &[f32], epsilon: f64) -> Vec<f32> {
    var.iter()
        .map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32)
        .collect()
}

/// `activation(x * scale[c] + shift[c] + residual?)` over `x [N, C, H, W]`: the affine map of
/// batch norm with `scale = gamma / sqrt(var + eps)` and `shift = beta - mean * scale` (see
/// [`affine`]).
pub fn normalize(
    p: Planes,
    x: &[f32],
    scale_shift: [&[f32]; 2],
    residual: Option<&[f32]>,
    activation: Activation,
) -> Vec<f32> {
    let mut y = x.to_vec();
    normalize_in_place(p, &mut y, scale_shift, residual, activation);
    y
}

/// [`normalize`] overwriting `x` with the output.
pub fn normalize_in_place(
    p: Planes,
    x: &mut [f32],
    scale_shift: [&[f32]; 2],
    residual: Option<&[f32]>,
    activation: Activation,
) {
    normalize_in_place_on(Isa::detect(), p, x, scale_shift, residual, activation);
}

/// [`normalize_in_place`] with its plane loops compiled for `isa`.
pub(crate) fn normalize_in_place_on(
    isa: Isa,
    p: Planes,
    x: &mut [f32],
    scale_shift: [&[f32]; 2],
    residual: Option<&[f32]>,
    activation: Activation,
) {
    // One loop per activation, chosen here rather than per element.
    let args = (isa, p, scale_shift, residual);
    match activation {
        Activation::None => normalize_with(args, x, |v| v),
        Activation::Relu => normalize_with(args, x, relu),
        Activation::Relu6 => normalize_with(args, x, crate::relu6::kernel::relu6),
    }
}

/// [`normalize_in_place_on`] with the activation `act`.
#[inline(always)]
fn normalize_with(
    (isa, p, [scale, shift], residual): (Isa, Planes, [&[f32]; 2], Option<&[f32]>),
    x: &mut [f32],
    act: impl Fn(f32) -> f32 + Copy + Sync,
) {
    assert_eq!(x.len(), p.len());
    let (pixels, per) = (p.pixels.max(1), p.planes_per_task());
    let tasks = x.par_chunks_mut(pixels * per).enumerate();
    tasks.for_each(|(task, planes)| {
        isa.run(
            #[inline(always)]
            || {
                for (j, y) in planes.chunks_mut(pixels).enumerate() {
                    let i = task * per + j;
                    let (s, t) = (scale[i % p.channels], shift[i % p.channels]);
                    match residual {
                        None => lane_update(y, [], |v, []| act(v * s + t)),
                        Some(r) => {
                            let r = &r[i * pixels..(i + 1) * pixels];
                            lane_update(y, [r], |v, [r]| act(v * s + t + r));
                        }
                    }
                }
            },
        )
    });
}

/// Per-channel `scale = gamma * inv_std` and `shift = beta - mean * scale`.
pub fn affine(gamma: &[f32], beta: &[f32], mean: &[f32], inv_std: &[f32]) -> [Vec<f32>; 2] {
    let scale: Vec<f32> = gamma.iter().zip(inv_std).map(|(g, s)| g * s).collect();
    let shift = beta
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((b, m), s)| b - m * s)
        .collect();
    [scale, shift]
}
