//! The backward pass of [`super::kernel::normalize`] on contiguous NCHW `f32` slices.
//!
//! With `g` the output gradient masked by the activation (ReLU: where the output is positive;
//! ReLU6: where it is strictly between 0 and 6; either: where it is NaN) and
//! `xhat = (x - mean) * inv_std`: `dbeta = sum g`, `dgamma = sum g * xhat`, and with batch
//! statistics `dx = gamma * inv_std * (g - dbeta / M - xhat * dgamma / M)` over the `M = N*H*W`
//! elements of a channel (with running statistics, `dx = gamma * inv_std * g`); the residual's
//! gradient is `g`.
//!
//! Two passes, both bound by memory traffic: [`grad_sums`] takes the per-plane sums (and writes `g`
//! only where the residual needs it; elsewhere the mask is applied on the fly),
//! [`input_grad_in_place`] turns the output gradient into the input gradient in its own buffer.
//! Sums are per plane in a fixed lane order, then per channel in image order in `f64`: the result
//! does not depend on the thread count, nor on the instruction set the plane loops run compiled for.

use super::kernel::{Activation, Planes, lane_sum, lane_update, relu_grad, relu6_grad};
use crate::simd::Isa;
use rayon::prelude::*;

/// What the backward pass reads besides the output gradient.
#[derive(Clone, Copy, Debug)]
pub struct NormGrad<'a> {
    /// The extent of `x`.
    pub planes: Planes,
    /// The normalised input.
    pub x: &'a [f32],
    /// The activation that followed and the output it gave (which masks the gradient); `None`
    /// when none followed ([`Activation::None`] here reads no output either).
    pub activated: Option<(Activation, &'a [f32])>,
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

impl<'a> NormGrad<'a> {
    /// The output that masks the gradient, and the mask's kind; `None` without an activation.
    fn mask_out(&self) -> Option<(Activation, &'a [f32])> {
        self.activated.filter(|(a, _)| *a != Activation::None)
    }
}

/// Calls `$body` with `$mask` bound to the gradient mask `(out, dy) -> g` of `$act` (each
/// activation its own monomorphised loop; `Activation::None` passes `dy`).
macro_rules! with_mask {
    ($act:expr, |$mask:ident| $body:expr) => {
        match $act {
            Activation::None => {
                let $mask = |_: f32, d: f32| d;
                $body
            }
            Activation::Relu => {
                let $mask = relu_grad;
                $body
            }
            Activation::Relu6 => {
                let $mask = relu6_grad;
                $body
            }
        }
    };
}

/// The result of the first pass.
#[derive(Debug, Default)]
pub struct GradSums {
    /// `sum g` per channel (empty if not asked for).
    pub sum_g: Vec<f64>,
    /// `sum g * (x - mean)` per channel (empty if not asked for).
    pub sum_gx: Vec<f64>,
    /// `g`, the masked output gradient, if it was kept (for the residual).
    pub masked: Option<Vec<f32>>,
}

impl GradSums {
    /// `dgamma = inv_std * sum g (x - mean)`.
    pub fn gamma_grad(&self, a: &NormGrad) -> Vec<f32> {
        let is = a.inv_std.iter();
        self.sum_gx
            .iter()
            .zip(is)
            .map(|(s, is)| (s * *is as f64) as f32)
            .collect()
    }

    /// `dbeta = sum g`.
    pub fn beta_grad(&self) -> Vec<f32> {
        self.sum_g.iter().map(|&s| s as f32).collect()
    }
}

/// Where a plane's masked output gradient is read from.
#[derive(Clone, Copy)]
enum Grad<'a> {
    /// Stored: the output gradient without an activation, or the masked one kept for the
    /// residual.
    Stored(&'a [f32]),
    /// Masked on the fly from the output and its gradient.
    Masked { out: &'a [f32], dy: &'a [f32] },
}

impl Grad<'_> {
    /// `(sum g, sum g * (x - mean))` over one plane, `mask` the activation's (for
    /// [`Grad::Masked`]). Inlined into the caller's [`Isa::run`].
    #[inline(always)]
    fn sums(self, x: &[f32], mean: f32, mask: impl Fn(f32, f32) -> f32) -> (f32, f32) {
        match self {
            Grad::Stored(g) => (
                lane_sum([g], |[d]| d),
                lane_sum([g, x], |[d, v]| d * (v - mean)),
            ),
            Grad::Masked { out, dy } => (
                lane_sum([out, dy], |[o, d]| mask(o, d)),
                lane_sum([out, dy, x], |[o, d, v]| mask(o, d) * (v - mean)),
            ),
        }
    }
}

/// The first pass over the output gradient `dy`: the per-channel sums if `need_sums`, and the
/// masked gradient if `keep_masked` and an activation followed.
pub fn grad_sums(a: &NormGrad, dy: &[f32], need: [bool; 2]) -> GradSums {
    grad_sums_on(Isa::detect(), a, dy, need)
}

/// [`grad_sums`] with its plane loops compiled for `isa`.
pub(crate) fn grad_sums_on(isa: Isa, a: &NormGrad, dy: &[f32], need: [bool; 2]) -> GradSums {
    let act = a.mask_out().map_or(Activation::None, |(act, _)| act);
    with_mask!(act, |mask| grad_sums_with(isa, a, dy, need, mask))
}

/// [`grad_sums_on`] with the activation's gradient `mask`.
#[inline(always)]
fn grad_sums_with(
    isa: Isa,
    a: &NormGrad,
    dy: &[f32],
    [need_sums, keep_masked]: [bool; 2],
    mask: impl Fn(f32, f32) -> f32 + Copy + Sync,
) -> GradSums {
    let p = a.planes;
    assert!(a.x.len() == p.len() && dy.len() == p.len());
    let (pixels, per) = (p.pixels.max(1), p.planes_per_task());
    let plane = |i: usize| i * pixels..(i + 1) * pixels;
    let mean = |i: usize| a.mean[i % p.channels];
    let mut masked = None;
    let plane_sums: Vec<(f32, f32)> = match a.mask_out() {
        Some((_, out)) if keep_masked => {
            let mut g = dy.to_vec();
            let tasks = g.par_chunks_mut(pixels * per).enumerate();
            let sums = tasks
                .flat_map_iter(|(task, planes)| {
                    isa.run(
                        #[inline(always)]
                        || {
                            let mut sums = Vec::with_capacity(per);
                            for (j, g) in planes.chunks_mut(pixels).enumerate() {
                                let i = task * per + j;
                                lane_update(g, [&out[plane(i)]], |d, [o]| mask(o, d));
                                if need_sums {
                                    let g = Grad::Stored(g);
                                    sums.push(g.sums(&a.x[plane(i)], mean(i), mask));
                                }
                            }
                            sums
                        },
                    )
                })
                .collect();
            masked = Some(g);
            sums
        }
        _ if need_sums => {
            let planes = p.batch * p.channels;
            let tasks = (0..planes.div_ceil(per)).into_par_iter();
            tasks
                .flat_map_iter(|task| {
                    isa.run(
                        #[inline(always)]
                        || {
                            let mut sums = Vec::with_capacity(per);
                            for i in task * per..((task + 1) * per).min(planes) {
                                let g = match a.mask_out() {
                                    Some((_, out)) => Grad::Masked {
                                        out: &out[plane(i)],
                                        dy: &dy[plane(i)],
                                    },
                                    None => Grad::Stored(&dy[plane(i)]),
                                };
                                sums.push(g.sums(&a.x[plane(i)], mean(i), mask));
                            }
                            sums
                        },
                    )
                })
                .collect()
        }
        _ => Vec::new(),
    };
    let channel_sum = |c: usize, pick: fn(&(f32, f32)) -> f32| -> f64 {
        (0..p.batch)
            .map(|n| pick(&plane_sums[n * p.channels + c]) as f64)
            .sum()
    };
    let (sum_g, sum_gx) = if need_sums {
        (0..p.channels)
            .map(|c| (channel_sum(c, |s| s.0), channel_sum(c, |s| s.1)))
            .unzip()
    } else {
        Default::default()
    };
    GradSums {
        sum_g,
        sum_gx,
        masked,
    }
}

/// The second pass: `dy_dx` holds the output gradient and receives the input gradient
/// `k * g + q * (x - mean) + r` per channel, with `k = gamma * inv_std` and, with batch statistics,
/// `q = -k * inv_std^2 * sum(g (x - mean)) / M`, `r = -k * sum(g) / M` (else 0).
pub fn input_grad_in_place(a: &NormGrad, sums: &GradSums, dy_dx: &mut [f32]) {
    input_grad_in_place_on(Isa::detect(), a, sums, dy_dx);
}

/// [`input_grad_in_place`] with its plane loops compiled for `isa`.
pub(crate) fn input_grad_in_place_on(isa: Isa, a: &NormGrad, sums: &GradSums, dy_dx: &mut [f32]) {
    let act = a.mask_out().map_or(Activation::None, |(act, _)| act);
    with_mask!(act, |mask| input_grad_with(isa, a, sums, dy_dx, mask))
}

/// [`input_grad_in_place_on`] with the activation's gradient `mask`.
#[inline(always)]
fn input_grad_with(
    isa: Isa,
    a: &NormGrad,
    sums: &GradSums,
    dy_dx: &mut [f32],
    mask: impl Fn(f32, f32) -> f32 + Copy + Sync,
) {
    let p = a.planes;
    assert_eq!(dy_dx.len(), p.len());
    let m = p.per_channel().max(1) as f64;
    let coeffs: Vec<[f32; 3]> = (0..p.channels)
        .map(|c| {
            let is = a.inv_std[c] as f64;
            let k = a.gamma[c] as f64 * is;
            if a.batch_stats {
                let q = -k * is * is * sums.sum_gx[c] / m;
                let r = -k * sums.sum_g[c] / m;
                [k as f32, q as f32, r as f32]
            } else {
                [k as f32, 0.0, 0.0]
            }
        })
        .collect();
    let (pixels, per) = (p.pixels.max(1), p.planes_per_task());
    let tasks = dy_dx.par_chunks_mut(pixels * per).enumerate();
    tasks.for_each(|(task, planes)| {
        isa.run(
            #[inline(always)]
            || {
                for (j, d) in planes.chunks_mut(pixels).enumerate() {
                    let i = task * per + j;
                    let c = i % p.channels;
                    let ([k, q, r], mean) = (coeffs[c], a.mean[c]);
                    let range = i * pixels..(i + 1) * pixels;
                    let x = &a.x[range.clone()];
                    let affine = |g: f32, v: f32| k * g + q * (v - mean) + r;
                    let out = a.mask_out().map(|(_, out)| out);
                    match (&sums.masked, out, a.batch_stats) {
                        (Some(g), _, true) => {
                            lane_update(d, [&g[range], x], |_, [g, v]| affine(g, v))
                        }
                        (Some(g), _, false) => lane_update(d, [&g[range]], |_, [g]| k * g),
                        (None, Some(out), true) => {
                            lane_update(d, [&out[range], x], |d, [o, v]| affine(mask(o, d), v))
                        }
                        (None, Some(out), false) => {
                            lane_update(d, [&out[range]], |d, [o]| k * mask(o, d))
                        }
                        (None, None, true) => lane_update(d, [x], |d, [v]| affine(d, v)),
                        (None, None, false) => lane_update(d, [], |d, []| k * d),
                    }
                }
            },
        )
    });
}

/// Gradients of [`super::kernel::normalize`], each computed only when asked for.
#[derive(Debug, Default)]
pub struct NormGrads {
    /// Of the input `x`.
    pub x: Option<Vec<f32>>,
    /// Of `gamma`.
    pub gamma: Option<Vec<f32>>,
    /// Of `beta`.
    pub beta: Option<Vec<f32>>,
    /// The output gradient after the activation's mask (the residual's gradient); `None` without
    /// an activation, where the residual's gradient is the output gradient itself.
    pub masked: Option<Vec<f32>>,
}

/// Both passes into fresh buffers: `need` is `[x, gamma, beta, masked]`.
pub fn normalize_backward(a: &NormGrad, dy: &[f32], need: [bool; 4]) -> NormGrads {
    let [need_x, need_gamma, need_beta, need_masked] = need;
    let need_sums = need_gamma || need_beta || (need_x && a.batch_stats);
    let sums = grad_sums(a, dy, [need_sums, need_masked]);
    let x = need_x.then(|| {
        let mut dx = dy.to_vec();
        input_grad_in_place(a, &sums, &mut dx);
        dx
    });
    NormGrads {
        x,
        gamma: need_gamma.then(|| sums.gamma_grad(a)),
        beta: need_beta.then(|| sums.beta_grad()),
        masked: sums.masked,
    }
}
