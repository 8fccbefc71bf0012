//! The depthwise kernels on whole planes: each input plane is copied once into zero-padded
//! *phase planes* (one per stride phase: `P[a][b][r][j] = x[s*r + a - p][s*j + b - p]`), after
//! which every kernel tap reads one contiguous run of one phase plane, at a fixed offset, for the
//! whole output plane at once.
//!
//! Why: MobileNetV2 at 129x129 and output stride 16 runs most of its depthwise work on 9x9 and
//! 17x17 planes, where the row kernels ([`super`]'s default before this file) spend their time on
//! per-row, per-tap bounds and short tails (a 9-wide row is one vector and a scalar; the weight
//! gradient's 32-lane dot products never filled a chunk), and stride 2 gathers every other
//! element once per tap. Here the output plane is computed as one flat run of
//! `(OH - 1) * WQ + OW` positions with the phase planes' pitch `WQ = OW + (kw-1)*d/s`: the
//! `WQ - OW` positions past each row's end are computed and thrown away (a 9-wide dilated row
//! pays 4 extra of 13), in exchange for long vector loops with no bounds:
//!
//! - forward: per chunk of [`CHUNK`] outputs, the `kh*kw` taps summed in registers (in tap order,
//!   from zero), then stored once;
//! - weight gradient: the output gradient laid out at pitch `WQ` (zeros past each row's end),
//!   then all taps' dot products in one sweep ([`LANES`] partial sums per tap, carried across the
//!   batch and added in index order at the end, as the row kernel did);
//! - input gradient: the transpose, gathered: each phase-plane element sums its taps' output
//!   gradients (laid out at pitch `WQ` after zeros, so that no read falls outside), in registers,
//!   then the phase planes are read back out (the padding dropped).
//!
//! Determinism: every sum runs in a fixed order (taps in order; the weight gradient's lanes by
//! flat position, images in order, lanes added in index order), independent of the thread count
//! and of the instruction set, and Rust never contracts `a * b + c` into a fused multiply-add.
//! The order differs from the row kernels', so results differ from theirs in the last bits.
//! The positions past a row's end multiply real inputs by a zero gradient: an infinite input
//! there would turn the weight gradient's `inf` into NaN (training is lost either way).

use super::super::geom::ConvGeom;
use super::LANES;
use crate::simd::Isa;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Outputs summed in registers at once by the forward pass, and the step of the weight
/// gradient's sweep: the flat run is rounded up to it (zeros past its end), so no loop has a tail.
const CHUNK: usize = LANES;

/// Where the taps read, for one geometry.
pub(super) struct Phases {
    stride: [usize; 2],
    padding: [usize; 2],
    in_hw: [usize; 2],
    out_hw: [usize; 2],
    /// Rows of one phase plane.
    hq: usize,
    /// Columns (pitch) of one phase plane and of the flat output run.
    wq: usize,
    /// The flat output run, `(OH - 1) * WQ + OW`, rounded up to [`CHUNK`].
    len_chunks: usize,
    /// Per tap (row-major): the tap and its first element in the phase buffer.
    offsets: Vec<(usize, usize)>,
    /// Per phase plane: its taps, each with `front` less its offset within the plane (where the
    /// input gradient reads the front-padded output gradient).
    phase_taps: Vec<Vec<(usize, usize)>>,
    /// The largest offset of a tap within its phase plane: zeros before the output gradient.
    front: usize,
}

impl Phases {
    pub(super) fn new(g: &ConvGeom) -> Self {
        let [oh, ow] = g.out_hw();
        let [s0, s1] = g.stride;
        let [d0, d1] = g.dilation;
        let [kh, kw] = g.kernel;
        let hq = oh + (kh - 1) * d0 / s0;
        let wq = ow + (kw - 1) * d1 / s1;
        // (phase, offset within the phase plane) per tap.
        let within: Vec<(usize, usize)> = (0..kh * kw)
            .map(|t| {
                let (ki, kj) = (t / kw, t % kw);
                let phase = (ki * d0 % s0) * s1 + kj * d1 % s1;
                (phase, (ki * d0 / s0) * wq + kj * d1 / s1)
            })
            .collect();
        let offsets = (within.iter().enumerate())
            .map(|(t, &(phase, o))| (t, phase * hq * wq + o))
            .collect();
        let front = within.iter().map(|&(_, o)| o).max().unwrap_or(0);
        let phase_taps = (0..s0 * s1)
            .map(|q| {
                (within.iter().enumerate())
                    .filter(|(_, (phase, _))| *phase == q)
                    .map(|(t, &(_, o))| (t, front - o))
                    .collect()
            })
            .collect();
        let len = (oh.max(1) - 1) * wq + ow;
        Self {
            stride: g.stride,
            padding: g.padding,
            in_hw: g.in_hw,
            out_hw: [oh, ow],
            hq,
            wq,
            len_chunks: len.next_multiple_of(CHUNK),
            offsets,
            phase_taps,
            front,
        }
    }

    /// Elements of the phase buffer: all phase planes, then [`CHUNK`] zeros that the rounded-up
    /// run reads past the last plane.
    fn buffer_len(&self) -> usize {
        self.stride[0] * self.stride[1] * self.hq * self.wq + CHUNK
    }

    /// For one phase along one axis: the phase-plane indices `lo..hi` inside the image, whose
    /// image index is `s * j + phase - p`.
    fn inside(&self, axis: usize, phase: usize, count: usize) -> (usize, usize) {
        let (s, p, n) = (self.stride[axis], self.padding[axis], self.in_hw[axis]);
        let lo = p.saturating_sub(phase).div_ceil(s).min(count);
        let hi = (n + p).saturating_sub(phase).div_ceil(s).clamp(lo, count);
        (lo, hi)
    }

    /// Copies plane `x` into the phase planes `buf` (zeros where the padding is).
    #[inline(always)]
    fn fill(&self, x: &[f32], buf: &mut [f32]) {
        let [s0, s1] = self.stride;
        let [p0, p1] = self.padding;
        let w = self.in_hw[1];
        let plane = self.hq * self.wq;
        for a in 0..s0 {
            let (rlo, rhi) = self.inside(0, a, self.hq);
            for b in 0..s1 {
                let (jlo, jhi) = self.inside(1, b, self.wq);
                let dst = &mut buf[(a * s1 + b) * plane..][..plane];
                dst[..rlo * self.wq].fill(0.0);
                dst[rhi * self.wq..].fill(0.0);
                if jlo == jhi {
                    dst[rlo * self.wq..rhi * self.wq].fill(0.0);
                    continue;
                }
                for r in rlo..rhi {
                    let iy = s0 * r + a - p0;
                    let row = &mut dst[r * self.wq..][..self.wq];
                    row[..jlo].fill(0.0);
                    row[jhi..].fill(0.0);
                    let src = &x[iy * w..][..w];
                    let x0 = s1 * jlo + b - p1;
                    let out = &mut row[jlo..jhi];
                    if s1 == 1 {
                        out.copy_from_slice(&src[x0..x0 + out.len()]);
                    } else {
                        for (k, o) in out.iter_mut().enumerate() {
                            *o = src[x0 + k * s1];
                        }
                    }
                }
            }
        }
    }

    /// The inverse of [`Self::fill`]: plane `dx` read out of the phase planes `buf`, the padding
    /// dropped; input positions no tap reads (past the last stride step) get zero.
    #[inline(always)]
    fn unfill(&self, buf: &[f32], dx: &mut [MaybeUninit<f32>]) {
        let [h, w] = self.in_hw;
        let [s0, s1] = self.stride;
        let [p0, p1] = self.padding;
        let plane = self.hq * self.wq;
        for iy in 0..h {
            let (r, a) = ((iy + p0) / s0, (iy + p0) % s0);
            let row = &mut dx[iy * w..][..w];
            if r >= self.hq {
                row.fill(MaybeUninit::new(0.0));
                continue;
            }
            if s1 == 1 {
                let src = &buf[a * plane + r * self.wq + p1..];
                let n = w.min(self.wq.saturating_sub(p1));
                for (d, &v) in row[..n].iter_mut().zip(src) {
                    d.write(v);
                }
                row[n..].fill(MaybeUninit::new(0.0));
            } else {
                // Column phase by column phase: the columns `ix0, ix0 + s, ..` read phase `b`
                // from its column `(ix0 + p) / s` on.
                for b in 0..s1 {
                    let ix0 = (b + s1 - p1 % s1) % s1;
                    let j0 = (ix0 + p1) / s1;
                    let src = &buf[(a * s1 + b) * plane + r * self.wq..][..self.wq];
                    let src = src.get(j0..).unwrap_or(&[]);
                    let dst = row.get_mut(ix0..).unwrap_or(&mut []);
                    for (m, d) in dst.iter_mut().step_by(s1).enumerate() {
                        d.write(src.get(m).copied().unwrap_or(0.0));
                    }
                }
            }
        }
    }

    /// One phase plane, rounded up to [`CHUNK`].
    fn plane_chunks(&self) -> usize {
        (self.hq * self.wq).next_multiple_of(CHUNK)
    }

    /// The input gradient's front-padded output gradient: `front` zeros, the run, zeros to
    /// cover every read of [`input_grad_plane`].
    fn padded_len(&self) -> usize {
        self.front + self.plane_chunks()
    }

    /// `dy` (`OH x OW`) at pitch `WQ` into `out[..len]`, zeros past each row's end.
    #[inline(always)]
    fn spread(&self, dy: &[f32], out: &mut [f32]) {
        let [oh, ow] = self.out_hw;
        for oy in 0..oh {
            let row = &mut out[oy * self.wq..];
            row[..ow].copy_from_slice(&dy[oy * ow..][..ow]);
            if oy + 1 < oh {
                row[ow..self.wq].fill(0.0);
            }
        }
    }
}

/// `acc[l] = sum over (t, o) in taps of k[t] * buf[o + i0 + l]` (in order), for `l < N`.
#[inline(always)]
fn taps_sum<const N: usize>(
    taps: &[(usize, usize)],
    buf: &[f32],
    k: &[f32],
    i0: usize,
) -> [f32; N] {
    let mut acc = [0.0f32; N];
    for &(t, o) in taps {
        let w = k[t];
        let src: &[f32; N] = buf[o + i0..][..N].try_into().expect("N elements");
        for l in 0..N {
            acc[l] += w * src[l];
        }
    }
    acc
}

/// One output plane: `y = conv(x, k)`; `buf` and `flat` are scratch.
#[inline(always)]
pub(super) fn forward_plane(
    ph: &Phases,
    x: &[f32],
    k: &[f32],
    y: &mut [MaybeUninit<f32>],
    buf: &mut [f32],
    flat: &mut [f32],
) {
    ph.fill(x, buf);
    for i0 in (0..ph.len_chunks).step_by(CHUNK) {
        flat[i0..i0 + CHUNK].copy_from_slice(&taps_sum::<CHUNK>(&ph.offsets, buf, k, i0));
    }
    let [oh, ow] = ph.out_hw;
    for oy in 0..oh {
        for (d, &v) in y[oy * ow..][..ow].iter_mut().zip(&flat[oy * ph.wq..]) {
            d.write(v);
        }
    }
}

/// One input-gradient plane, every element written; `buf` and `padded` are scratch. Each
/// phase plane element gathers its taps from the output gradient (front-padded with zeros so
/// that no read falls before it), summed in registers in tap order, as the forward pass does.
#[inline(always)]
pub(super) fn input_grad_plane(
    ph: &Phases,
    dy: &[f32],
    k: &[f32],
    dx: &mut [MaybeUninit<f32>],
    buf: &mut [f32],
    padded: &mut [f32],
) {
    ph.spread(dy, &mut padded[ph.front..]);
    let (plane, rounded) = (ph.hq * ph.wq, ph.plane_chunks());
    // Phase by phase in order: a chunk running past its plane's end is overwritten by the next
    // plane, or lands in the buffer's tail.
    for (q, taps) in ph.phase_taps.iter().enumerate() {
        let dst = &mut buf[q * plane..][..rounded];
        for j0 in (0..rounded).step_by(CHUNK) {
            dst[j0..j0 + CHUNK].copy_from_slice(&taps_sum::<CHUNK>(taps, padded, k, j0));
        }
    }
    ph.unfill(buf, dx);
}

/// Adds one plane's weight-gradient partial sums onto `acc` (one lane array per tap).
#[inline(always)]
pub(super) fn weight_grad_plane(
    ph: &Phases,
    x: &[f32],
    dy: &[f32],
    acc: &mut [[f32; LANES]],
    buf: &mut [f32],
    flat: &mut [f32],
) {
    ph.fill(x, buf);
    ph.spread(dy, flat);
    // Zeros past `len` (never written): the rounded-up run adds nothing there.
    // Tap by tap, so that the tap's lanes stay in registers over the sweep (each lane's sum
    // runs over the chunks in order either way).
    let (chunks, _) = flat[..ph.len_chunks].as_chunks::<LANES>();
    for (&(_, o), lanes) in ph.offsets.iter().zip(acc.iter_mut()) {
        let mut sum = *lanes;
        let (src, _) = buf[o..][..ph.len_chunks].as_chunks::<LANES>();
        for (g, src) in chunks.iter().zip(src) {
            for l in 0..LANES {
                sum[l] += g[l] * src[l];
            }
        }
        *lanes = sum;
    }
}

/// Scratch for one task: the phase buffer and the flat run, both zeroed (their tails stay so).
fn scratch(ph: &Phases) -> (Vec<f32>, Vec<f32>) {
    (vec![0.0; ph.buffer_len()], vec![0.0; ph.len_chunks])
}

/// [`super::depthwise_forward_into`] on whole planes.
pub(super) fn forward_into(
    g: &ConvGeom,
    isa: Isa,
    x: &[f32],
    w: &[f32],
    y: &mut [MaybeUninit<f32>],
) {
    let ph = Phases::new(g);
    let (in_plane, out_plane) = super::plane_len(g);
    let k_len = g.kernel[0] * g.kernel[1];
    y.par_chunks_mut(out_plane)
        .zip(x.par_chunks(in_plane))
        .enumerate()
        .for_each_init(
            || scratch(&ph),
            |(buf, flat), (p, (y_p, x_p))| {
                let k = &w[(p % g.in_ch) * k_len..][..k_len];
                isa.run(
                    #[inline(always)]
                    || forward_plane(&ph, x_p, k, y_p, buf, flat),
                );
            },
        );
}

/// [`super::depthwise_input_grad_into`] on whole planes.
pub(super) fn input_grad_into(
    g: &ConvGeom,
    isa: Isa,
    w: &[f32],
    dy: &[f32],
    dx: &mut [MaybeUninit<f32>],
) {
    let ph = Phases::new(g);
    let (in_plane, out_plane) = super::plane_len(g);
    let k_len = g.kernel[0] * g.kernel[1];
    dx.par_chunks_mut(in_plane)
        .zip(dy.par_chunks(out_plane))
        .enumerate()
        .for_each_init(
            || (vec![0.0; ph.buffer_len()], vec![0.0; ph.padded_len()]),
            |(buf, padded), (p, (dx_p, dy_p))| {
                let k = &w[(p % g.in_ch) * k_len..][..k_len];
                isa.run(
                    #[inline(always)]
                    || input_grad_plane(&ph, dy_p, k, dx_p, buf, padded),
                );
            },
        );
}

/// The weight gradient on whole planes: per channel (in parallel), the images in order.
pub(super) fn weight_grad(g: &ConvGeom, isa: Isa, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let ph = Phases::new(g);
    let (in_plane, out_plane) = super::plane_len(g);
    let k_len = g.kernel[0] * g.kernel[1];
    let c = g.in_ch;
    let mut dw = vec![0.0f32; c * k_len];
    dw.par_chunks_mut(k_len.max(1)).enumerate().for_each_init(
        || scratch(&ph),
        |(buf, flat), (ch, dw_c)| {
            let mut acc = vec![[0.0f32; LANES]; k_len];
            for n in 0..g.batch {
                let p = n * c + ch;
                let x_p = &x[p * in_plane..][..in_plane];
                let dy_p = &dy[p * out_plane..][..out_plane];
                isa.run(
                    #[inline(always)]
                    || weight_grad_plane(&ph, x_p, dy_p, &mut acc, buf, flat),
                );
            }
            for (d, lanes) in dw_c.iter_mut().zip(&acc) {
                *d = lanes.iter().sum();
            }
        },
    );
    dw
}
