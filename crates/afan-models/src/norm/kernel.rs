//! Batch-norm kernels on contiguous NCHW `f32` slices: the per-channel batch statistics, the
//! normalisation with its affine map, optional residual add and optional ReLU in one pass, and the
//! matching backward pass.
//!
//! Why: Burn's composed `batch_norm_train`, the residual add and the ReLU each read and write the
//! whole activation (flex's reductions over dims 0, 2, 3 also transpose it through
//! `copy_2d_tiled`). Here the forward reads the input twice (statistics, then normalisation) and
//! writes once; the backward reads its inputs twice and writes the input gradient once.
//!
//! Determinism: every sum is taken per (image, channel) plane in a fixed lane order, and the planes
//! of a channel are combined in image order in `f64`, so results are bit-identical run to run and
//! do not depend on how rayon spreads the planes over threads (the CLI's resume test needs this).

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

    /// Planes handed to one rayon task: enough work (about 16k elements) to hide the scheduling.
    fn planes_per_task(&self) -> usize {
        (16_384 / self.pixels.max(1)).max(1)
    }
}

/// Independent partial sums per plane, kept in vector registers.
const LANES: usize = 8;

/// `sum_i f(inputs[0][i], ..)` over one plane, in `LANES` partial sums added in a fixed order.
#[inline(always)]
fn lane_sum<const K: usize>(inputs: [&[f32]; K], f: impl Fn([f32; K]) -> f32) -> f32 {
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

/// `out[i] = f(inputs[0][i], ..)` over one plane, in `LANES`-wide chunks the compiler vectorises.
#[inline(always)]
fn lane_map<const K: usize>(out: &mut [f32], inputs: [&[f32]; K], f: impl Fn([f32; K]) -> f32) {
    let len = out.len();
    assert!(inputs.iter().all(|s| s.len() == len));
    let mut i = 0;
    while i + LANES <= len {
        let chunk: [&[f32; LANES]; K] = inputs.map(|s| s[i..i + LANES].try_into().unwrap());
        let dst: &mut [f32; LANES] = (&mut out[i..i + LANES]).try_into().unwrap();
        for (l, d) in dst.iter_mut().enumerate() {
            *d = f(chunk.map(|c| c[l]));
        }
        i += LANES;
    }
    for j in i..len {
        out[j] = f(inputs.map(|s| s[j]));
    }
}

/// ReLU that lets NaN through, as flex's and PyTorch's do.
#[inline(always)]
fn relu(v: f32) -> f32 {
    if v > 0.0 || v.is_nan() { v } else { 0.0 }
}

/// The ReLU gradient mask: `dy` where the output was positive (or NaN), 0 elsewhere.
#[inline(always)]
fn relu_grad(out: f32, dy: f32) -> f32 {
    if out > 0.0 || out.is_nan() { dy } else { 0.0 }
}

/// Per-channel batch mean and biased variance of `x [N, C, H, W]`.
///
/// Each plane contributes its own mean and sum of squared deviations (two passes over a plane that
/// stays in cache); the planes of a channel are merged in image order with Chan's formula in `f64`,
/// which avoids the cancellation of `E[x^2] - E[x]^2`.
pub fn batch_stats(p: Planes, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), p.len());
    if p.is_empty() {
        return (vec![0.0; p.channels], vec![0.0; p.channels]);
    }
    let plane_stats: Vec<(f32, f32)> = x
        .par_chunks(p.pixels)
        .with_min_len(p.planes_per_task())
        .map(|plane| {
            let mean = lane_sum([plane], |[v]| v) / p.pixels as f32;
            (mean, lane_sum([plane], |[v]| (v - mean) * (v - mean)))
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

/// `relu?(x * scale[c] + shift[c] + residual?)` over `x [N, C, H, W]`: the affine map of batch norm
/// with `scale = gamma / sqrt(var + eps)` and `shift = beta - mean * scale` (see [`affine`]).
pub fn normalize(
    p: Planes,
    x: &[f32],
    [scale, shift]: [&[f32]; 2],
    residual: Option<&[f32]>,
    with_relu: bool,
) -> Vec<f32> {
    assert_eq!(x.len(), p.len());
    let mut y = vec![0.0f32; p.len()];
    let pixels = p.pixels.max(1);
    let planes = y
        .par_chunks_mut(pixels)
        .zip(x.par_chunks(pixels))
        .enumerate()
        .with_min_len(p.planes_per_task());
    planes.for_each(|(i, (y, x))| {
        let (s, t) = (scale[i % p.channels], shift[i % p.channels]);
        match (residual, with_relu) {
            (None, false) => lane_map(y, [x], |[v]| v * s + t),
            (None, true) => lane_map(y, [x], |[v]| relu(v * s + t)),
            (Some(r), relu_too) => {
                let r = &r[i * pixels..(i + 1) * pixels];
                if relu_too {
                    lane_map(y, [x, r], |[v, r]| relu(v * s + t + r));
                } else {
                    lane_map(y, [x, r], |[v, r]| v * s + t + r);
                }
            }
        }
    });
    y
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

/// What the backward pass reads.
#[derive(Clone, Copy, Debug)]
pub struct NormGrad<'a> {
    /// The extent of `x`.
    pub planes: Planes,
    /// The normalised input.
    pub x: &'a [f32],
    /// The output, when a ReLU followed (its sign masks the gradient).
    pub relu_out: Option<&'a [f32]>,
    /// The gradient of the output.
    pub dy: &'a [f32],
    /// Per-channel scale.
    pub gamma: &'a [f32],
    /// The mean the forward subtracted (batch or running).
    pub mean: &'a [f32],
    /// `1 / sqrt(var + eps)` of the variance the forward used.
    pub inv_std: &'a [f32],
    /// Whether the forward used the batch's own statistics, through which the input gradient then
    /// also flows; with running statistics the map is affine per channel.
    pub batch_stats: bool,
}

/// Gradients of [`normalize`], each computed only when asked for.
#[derive(Debug, Default)]
pub struct NormGrads {
    /// Of the input `x`.
    pub x: Option<Vec<f32>>,
    /// Of `gamma`.
    pub gamma: Option<Vec<f32>>,
    /// Of `beta`.
    pub beta: Option<Vec<f32>>,
    /// The output gradient after the ReLU mask (the residual's gradient); `None` without a ReLU,
    /// where the residual's gradient is the output gradient itself.
    pub masked: Option<Vec<f32>>,
}

/// Where a plane's output gradient (after the ReLU mask) is read from.
#[derive(Clone, Copy)]
enum Grad<'a> {
    /// Stored: the output gradient without a ReLU, or the masked one kept for the residual.
    Stored(&'a [f32]),
    /// Masked on the fly from the output and its gradient: one buffer less to write and read,
    /// which matters because these passes are bound by memory traffic.
    Masked { out: &'a [f32], dy: &'a [f32] },
}

impl<'a> Grad<'a> {
    fn plane(self, range: std::ops::Range<usize>) -> Self {
        match self {
            Grad::Stored(g) => Grad::Stored(&g[range]),
            Grad::Masked { out, dy } => Grad::Masked {
                out: &out[range.clone()],
                dy: &dy[range],
            },
        }
    }

    /// `(sum g, sum g * (x - mean))` over one plane.
    fn sums(self, x: &[f32], mean: f32) -> (f32, f32) {
        match self {
            Grad::Stored(g) => (
                lane_sum([g], |[d]| d),
                lane_sum([g, x], |[d, v]| d * (v - mean)),
            ),
            Grad::Masked { out, dy } => (
                lane_sum([out, dy], |[o, d]| relu_grad(o, d)),
                lane_sum([out, dy, x], |[o, d, v]| relu_grad(o, d) * (v - mean)),
            ),
        }
    }
}

/// The backward pass of [`normalize`]: `need` is `[x, gamma, beta, masked]`.
///
/// With `g` the output gradient masked by the ReLU and `xhat = (x - mean) * inv_std`:
/// `dbeta = sum g`, `dgamma = sum g * xhat`, and with batch statistics
/// `dx = gamma * inv_std * (g - dbeta / M - xhat * dgamma / M)` over the `M = N*H*W` elements of a
/// channel (with running statistics, `dx = gamma * inv_std * g`). One pass computes the per-plane
/// sums (and writes the masked gradient where the residual needs it), a second the input gradient.
pub fn normalize_backward(
    a: &NormGrad,
    [need_x, need_gamma, need_beta, need_masked]: [bool; 4],
) -> NormGrads {
    let p = a.planes;
    assert!(a.x.len() == p.len() && a.dy.len() == p.len());
    let pixels = p.pixels.max(1);
    let task = p.planes_per_task();
    let need_sums = need_gamma || need_beta || (need_x && a.batch_stats);
    let keep_masked = need_masked && a.relu_out.is_some();
    let mut masked = vec![0.0f32; if keep_masked { p.len() } else { 0 }];
    let plane_sums: Vec<(f32, f32)> = if keep_masked {
        let out = a.relu_out.unwrap_or_default();
        masked
            .par_chunks_mut(pixels)
            .with_min_len(task)
            .enumerate()
            .map(|(i, g)| {
                let range = i * pixels..(i + 1) * pixels;
                lane_map(g, [&out[range.clone()], &a.dy[range.clone()]], |[o, d]| {
                    relu_grad(o, d)
                });
                let sums =
                    need_sums.then(|| Grad::Stored(g).sums(&a.x[range], a.mean[i % p.channels]));
                sums.unwrap_or_default()
            })
            .collect()
    } else if need_sums {
        let grad = source(a, &[]);
        (0..p.batch * p.channels)
            .into_par_iter()
            .with_min_len(task)
            .map(|i| {
                let range = i * pixels..(i + 1) * pixels;
                grad.plane(range.clone())
                    .sums(&a.x[range], a.mean[i % p.channels])
            })
            .collect()
    } else {
        Vec::new()
    };
    let channel_sum = |c: usize, pick: fn(&(f32, f32)) -> f32| -> f64 {
        (0..p.batch)
            .map(|n| pick(&plane_sums[n * p.channels + c]) as f64)
            .sum()
    };
    let (sum_g, sum_gx): (Vec<f64>, Vec<f64>) = if need_sums {
        (0..p.channels)
            .map(|c| (channel_sum(c, |s| s.0), channel_sum(c, |s| s.1)))
            .unzip()
    } else {
        Default::default()
    };
    NormGrads {
        x: need_x.then(|| input_grad(a, source(a, &masked), &sum_g, &sum_gx)),
        gamma: need_gamma.then(|| {
            sum_gx
                .iter()
                .zip(a.inv_std)
                .map(|(s, is)| (s * *is as f64) as f32)
                .collect()
        }),
        beta: need_beta.then(|| sum_g.iter().map(|&s| s as f32).collect()),
        masked: keep_masked.then_some(masked),
    }
}

/// The masked output gradient: `masked` if it was stored, else from the output and `dy`.
fn source<'a>(a: &NormGrad<'a>, masked: &'a [f32]) -> Grad<'a> {
    match a.relu_out {
        Some(_) if !masked.is_empty() => Grad::Stored(masked),
        Some(out) => Grad::Masked { out, dy: a.dy },
        None => Grad::Stored(a.dy),
    }
}

/// `dx = k * g + q * (x - mean) + r` per channel, with `k = gamma * inv_std`, and with batch
/// statistics `q = -k * inv_std^2 * sum(g (x - mean)) / M`, `r = -k * sum(g) / M` (else 0).
fn input_grad(a: &NormGrad, g: Grad, sum_g: &[f64], sum_gx: &[f64]) -> Vec<f32> {
    let p = a.planes;
    let m = p.per_channel().max(1) as f64;
    let coeffs: Vec<[f32; 3]> = (0..p.channels)
        .map(|c| {
            let is = a.inv_std[c] as f64;
            let k = a.gamma[c] as f64 * is;
            if a.batch_stats {
                let q = -k * is * is * sum_gx[c] / m;
                let r = -k * sum_g[c] / m;
                [k as f32, q as f32, r as f32]
            } else {
                [k as f32, 0.0, 0.0]
            }
        })
        .collect();
    let pixels = p.pixels.max(1);
    let mut dx = vec![0.0f32; p.len()];
    dx.par_chunks_mut(pixels)
        .with_min_len(p.planes_per_task())
        .enumerate()
        .for_each(|(i, dx)| {
            let c = i % p.channels;
            let [k, q, r] = coeffs[c];
            let range = i * pixels..(i + 1) * pixels;
            let x = &a.x[range.clone()];
            let mean = a.mean[c];
            match (g.plane(range), a.batch_stats) {
                (Grad::Stored(g), true) => {
                    lane_map(dx, [g, x], |[g, v]| k * g + q * (v - mean) + r)
                }
                (Grad::Stored(g), false) => lane_map(dx, [g], |[g]| k * g),
                (Grad::Masked { out, dy }, true) => lane_map(dx, [out, dy, x], |[o, d, v]| {
                    k * relu_grad(o, d) + q * (v - mean) + r
                }),
                (Grad::Masked { out, dy }, false) => {
                    lane_map(dx, [out, dy], |[o, d]| k * relu_grad(o, d))
                }
            }
        });
    dx
}
