//! Depthwise convolution (`groups == C == K`: every channel convolved with its own `kh x kw`
//! kernel), forward and both gradients, directly on NCHW planes.
//!
//! Why not im2col + gemm as for the dense convolution: each channel's product would be a
//! `1 x (kh*kw)` by `(kh*kw) x pixels` matrix product, so the patch matrix (nine copies of the
//! plane) would cost more than the arithmetic, and gemm would run at the speed of a dot product.
//! Here every output row is accumulated in place from the input rows its taps read: for each tap,
//! one `y += w * x` over the row's valid columns (contiguous for stride 1, every other element for
//! stride 2), with the row in L1. The input gradient runs the same loops with the roles of `x` and
//! `y` swapped (a scatter along the row), and the weight gradient is, per channel and tap, a dot
//! product of output-gradient rows with the input rows the tap read.
//!
//! That was the only route before stop 27; `planes` now runs every depthwise convolution on
//! whole zero-padded planes instead (see its doc for why), and these row kernels stay as its
//! reference in the tests and as the benchmarks' A/B (`AFAN_DEPTHWISE_ROWS=1`).
//!
//! Determinism: every sum runs in a fixed order (rows, then taps, then images for the weight
//! gradient, which also keeps `LANES` partial sums combined in a fixed order), independent of
//! the thread count and of the instruction set the loops are compiled for ([`crate::simd`]).

use super::geom::{ConvGeom, valid_range};
use super::scratch::{assume_init, uninit_vec};
use crate::flex::env_switch;
use crate::simd::Isa;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

mod planes;
#[cfg(test)]
mod tests;

/// Which kernels run: the whole-plane ones ([`planes`]), or the row ones of this file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Planes,
    Rows,
}

impl Route {
    /// [`Route::Planes`], or [`Route::Rows`] with `AFAN_DEPTHWISE_ROWS=1` (benchmarks' A/B).
    fn chosen() -> Self {
        static ROWS: OnceLock<bool> = OnceLock::new();
        let rows = *ROWS.get_or_init(|| env_switch("AFAN_DEPTHWISE_ROWS", false));
        if rows { Route::Rows } else { Route::Planes }
    }
}

/// Independent partial sums of the weight gradient's dot products (then added in index order):
/// enough for two AVX-512 registers, so that the loop is not one chain of dependent adds.
const LANES: usize = 32;

/// Where one kernel tap reads along one axis: output positions `lo..hi` are inside the input, at
/// input index `o * stride + offset - padding`.
#[derive(Clone, Copy, Debug)]
struct AxisTap {
    lo: usize,
    hi: usize,
    /// `offset - padding`, the input index of output position 0 (may be negative).
    shift: isize,
}

fn axis_taps(g: &ConvGeom, axis: usize, out: usize) -> Vec<AxisTap> {
    (0..g.kernel[axis])
        .map(|k| {
            let offset = k * g.dilation[axis];
            let (lo, hi) = valid_range(offset, g.padding[axis], g.stride[axis], g.in_hw[axis], out);
            AxisTap {
                lo,
                hi,
                shift: offset as isize - g.padding[axis] as isize,
            }
        })
        .collect()
}

/// The taps of both axes of `g`, computed once per call.
struct Taps {
    rows: Vec<AxisTap>,
    cols: Vec<AxisTap>,
}

impl Taps {
    fn new(g: &ConvGeom) -> Self {
        let [oh, ow] = g.out_hw();
        Self {
            rows: axis_taps(g, 0, oh),
            cols: axis_taps(g, 1, ow),
        }
    }

    /// The input row read by output row `oy` at kernel row `ki`, if inside the image.
    fn input_row(&self, g: &ConvGeom, ki: usize, oy: usize) -> Option<usize> {
        let t = self.rows[ki];
        (t.lo..t.hi)
            .contains(&oy)
            .then(|| (oy as isize * g.stride[0] as isize + t.shift) as usize)
    }
}

/// `dst[i] += w * src[i * stride]`.
#[inline(always)]
fn axpy_gather(dst: &mut [f32], w: f32, src: &[f32], stride: usize) {
    match stride {
        1 => {
            let n = dst.len();
            for (d, s) in dst.iter_mut().zip(&src[..n]) {
                *d += w * s;
            }
        }
        2 => {
            // Whole pairs of which the first is read (a fixed-stride loop LLVM vectorises), then
            // at most one element where the row ends on the plane's last one.
            let (pairs, rest) = src.as_chunks::<2>();
            let n = dst.len().min(pairs.len());
            for (d, p) in dst[..n].iter_mut().zip(pairs) {
                *d += w * p[0];
            }
            if let Some(d) = dst.get_mut(n) {
                *d += w * rest[0];
            }
        }
        _ => {
            for (i, d) in dst.iter_mut().enumerate() {
                *d += w * src[i * stride];
            }
        }
    }
}

/// `dst[i * stride] += w * src[i]`.
#[inline(always)]
fn axpy_scatter(dst: &mut [f32], w: f32, src: &[f32], stride: usize) {
    match stride {
        1 => {
            for (d, s) in dst[..src.len()].iter_mut().zip(src) {
                *d += w * s;
            }
        }
        2 => {
            let (pairs, rest) = dst.as_chunks_mut::<2>();
            let n = src.len().min(pairs.len());
            for (p, s) in pairs.iter_mut().zip(&src[..n]) {
                p[0] += w * s;
            }
            if let Some(s) = src.get(n) {
                rest[0] += w * s;
            }
        }
        _ => {
            for (i, s) in src.iter().enumerate() {
                dst[i * stride] += w * s;
            }
        }
    }
}

/// `acc[i % LANES] += a[i] * b[i * stride]` over `a`.
#[inline(always)]
fn dot_lanes(acc: &mut [f32; LANES], a: &[f32], b: &[f32], stride: usize) {
    let (chunks, tail) = a.as_chunks::<LANES>();
    match stride {
        1 => {
            let (bc, _) = b[..chunks.len() * LANES].as_chunks::<LANES>();
            for (ca, cb) in chunks.iter().zip(bc) {
                for l in 0..LANES {
                    acc[l] += ca[l] * cb[l];
                }
            }
        }
        _ => {
            for (k, ca) in chunks.iter().enumerate() {
                for l in 0..LANES {
                    acc[l] += ca[l] * b[(k * LANES + l) * stride];
                }
            }
        }
    }
    let base = chunks.len() * LANES;
    for (l, v) in tail.iter().enumerate() {
        acc[l] += v * b[(base + l) * stride];
    }
}

/// One output plane: `y = conv(x, k)` for one channel of one image.
#[inline(always)]
fn forward_plane(g: &ConvGeom, taps: &Taps, x: &[f32], k: &[f32], y: &mut [MaybeUninit<f32>]) {
    let [oh, ow] = g.out_hw();
    let (w, kw) = (g.in_hw[1], g.kernel[1]);
    for oy in 0..oh {
        let row = &mut y[oy * ow..(oy + 1) * ow];
        row.fill(MaybeUninit::new(0.0));
        // SAFETY: just filled.
        let row = unsafe { row.assume_init_mut() };
        for ki in 0..g.kernel[0] {
            let Some(iy) = taps.input_row(g, ki, oy) else {
                continue;
            };
            let src = &x[iy * w..(iy + 1) * w];
            for (kj, t) in taps.cols.iter().enumerate() {
                if t.lo < t.hi {
                    let start = (t.lo as isize * g.stride[1] as isize + t.shift) as usize;
                    axpy_gather(
                        &mut row[t.lo..t.hi],
                        k[ki * kw + kj],
                        &src[start..],
                        g.stride[1],
                    );
                }
            }
        }
    }
}

/// One input-gradient plane: the transpose of [`forward_plane`], every element written.
#[inline(always)]
fn input_grad_plane(g: &ConvGeom, taps: &Taps, dy: &[f32], k: &[f32], dx: &mut [MaybeUninit<f32>]) {
    let [oh, ow] = g.out_hw();
    let (w, kw) = (g.in_hw[1], g.kernel[1]);
    dx.fill(MaybeUninit::new(0.0));
    // SAFETY: just filled.
    let dx = unsafe { dx.assume_init_mut() };
    for oy in 0..oh {
        let src = &dy[oy * ow..(oy + 1) * ow];
        for ki in 0..g.kernel[0] {
            let Some(iy) = taps.input_row(g, ki, oy) else {
                continue;
            };
            let dst = &mut dx[iy * w..(iy + 1) * w];
            for (kj, t) in taps.cols.iter().enumerate() {
                if t.lo < t.hi {
                    let start = (t.lo as isize * g.stride[1] as isize + t.shift) as usize;
                    let wv = k[ki * kw + kj];
                    axpy_scatter(&mut dst[start..], wv, &src[t.lo..t.hi], g.stride[1]);
                }
            }
        }
    }
}

/// Adds one plane's weight-gradient partial sums onto `acc` (`kh * kw` lane arrays).
#[inline(always)]
fn weight_grad_plane(g: &ConvGeom, taps: &Taps, x: &[f32], dy: &[f32], acc: &mut [[f32; LANES]]) {
    let [oh, ow] = g.out_hw();
    let (w, kw) = (g.in_hw[1], g.kernel[1]);
    for oy in 0..oh {
        let grad = &dy[oy * ow..(oy + 1) * ow];
        for ki in 0..g.kernel[0] {
            let Some(iy) = taps.input_row(g, ki, oy) else {
                continue;
            };
            let src = &x[iy * w..(iy + 1) * w];
            for (kj, t) in taps.cols.iter().enumerate() {
                if t.lo < t.hi {
                    let start = (t.lo as isize * g.stride[1] as isize + t.shift) as usize;
                    let lanes = &mut acc[ki * kw + kj];
                    dot_lanes(lanes, &grad[t.lo..t.hi], &src[start..], g.stride[1]);
                }
            }
        }
    }
}

/// Whether `g` is a depthwise convolution these kernels run: one input and one output channel
/// per group.
pub fn is_depthwise(g: &ConvGeom) -> bool {
    g.groups > 1 && g.groups == g.in_ch && g.groups == g.out_ch
}

fn plane_len(g: &ConvGeom) -> (usize, usize) {
    let [oh, ow] = g.out_hw();
    ((g.in_hw[0] * g.in_hw[1]).max(1), (oh * ow).max(1))
}

/// Depthwise forward: `x [N, C, H, W]`, `w [C, 1, kh, kw]` -> `[N, C, OH, OW]`.
pub fn depthwise_forward(g: &ConvGeom, x: &[f32], w: &[f32]) -> Vec<f32> {
    let mut y = uninit_vec(g.batch * g.out_len());
    depthwise_forward_into(g, x, w, &mut y);
    // SAFETY: `depthwise_forward_into` writes every element (kernel_tests poisons it to check).
    unsafe { assume_init(y) }
}

/// [`depthwise_forward`] into `y`, every element of which it writes.
pub(super) fn depthwise_forward_into(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    y: &mut [MaybeUninit<f32>],
) {
    forward_with(g, Route::chosen(), Isa::detect(), x, w, y);
}

fn forward_with(
    g: &ConvGeom,
    route: Route,
    isa: Isa,
    x: &[f32],
    w: &[f32],
    y: &mut [MaybeUninit<f32>],
) {
    if route == Route::Planes {
        return planes::forward_into(g, isa, x, w, y);
    }
    let taps = Taps::new(g);
    let (in_plane, out_plane) = plane_len(g);
    let k_len = g.kernel[0] * g.kernel[1];
    y.par_chunks_mut(out_plane)
        .zip(x.par_chunks(in_plane))
        .enumerate()
        .for_each(|(p, (y_p, x_p))| {
            let k = &w[(p % g.in_ch) * k_len..][..k_len];
            isa.run(
                #[inline(always)]
                || forward_plane(g, &taps, x_p, k, y_p),
            );
        });
}

/// The input gradient of a depthwise convolution into `dx`, every element of which it writes.
pub(super) fn depthwise_input_grad_into(
    g: &ConvGeom,
    w: &[f32],
    dy: &[f32],
    dx: &mut [MaybeUninit<f32>],
) {
    input_grad_with(g, Route::chosen(), Isa::detect(), w, dy, dx);
}

fn input_grad_with(
    g: &ConvGeom,
    route: Route,
    isa: Isa,
    w: &[f32],
    dy: &[f32],
    dx: &mut [MaybeUninit<f32>],
) {
    if route == Route::Planes {
        return planes::input_grad_into(g, isa, w, dy, dx);
    }
    let taps = Taps::new(g);
    let (in_plane, out_plane) = plane_len(g);
    let k_len = g.kernel[0] * g.kernel[1];
    dx.par_chunks_mut(in_plane)
        .zip(dy.par_chunks(out_plane))
        .enumerate()
        .for_each(|(p, (dx_p, dy_p))| {
            let k = &w[(p % g.in_ch) * k_len..][..k_len];
            isa.run(
                #[inline(always)]
                || input_grad_plane(g, &taps, dy_p, k, dx_p),
            );
        });
}

/// The weight gradient `[C, 1, kh, kw]` of a depthwise convolution: per channel (in parallel),
/// the images in order.
fn weight_grad_with(g: &ConvGeom, route: Route, isa: Isa, x: &[f32], dy: &[f32]) -> Vec<f32> {
    if route == Route::Planes {
        return planes::weight_grad(g, isa, x, dy);
    }
    let taps = Taps::new(g);
    let (in_plane, out_plane) = plane_len(g);
    let k_len = g.kernel[0] * g.kernel[1];
    let c = g.in_ch;
    let mut dw = vec![0.0f32; c * k_len];
    dw.par_chunks_mut(k_len.max(1))
        .enumerate()
        .for_each(|(ch, dw_c)| {
            let mut acc = vec![[0.0f32; LANES]; k_len];
            for n in 0..g.batch {
                let p = n * c + ch;
                let x_p = &x[p * in_plane..][..in_plane];
                let dy_p = &dy[p * out_plane..][..out_plane];
                isa.run(
                    #[inline(always)]
                    || weight_grad_plane(g, &taps, x_p, dy_p, &mut acc),
                );
            }
            for (d, lanes) in dw_c.iter_mut().zip(&acc) {
                *d = lanes.iter().sum();
            }
        });
    dw
}

/// Gradients of a depthwise convolution with respect to its input and/or its weight.
pub fn depthwise_backward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    [need_x, need_w]: [bool; 2],
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let dx = need_x.then(|| {
        let mut dx = uninit_vec(x.len());
        depthwise_input_grad_into(g, w, dy, &mut dx);
        // SAFETY: `depthwise_input_grad_into` writes every element (kernel_tests poisons it).
        unsafe { assume_init(dx) }
    });
    let dw = need_w.then(|| weight_grad_with(g, Route::chosen(), Isa::detect(), x, dy));
    (dx, dw)
}
