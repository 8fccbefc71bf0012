//! Bilinear resizing of NCHW `f32` planes and its gradient, with PyTorch's arithmetic
//! (`F.interpolate(mode="bilinear")`, `upsample_bilinear2d` and its backward on the CPU).
//!
//! Each output row reads two input rows and each output column two input columns, the same for
//! every plane: the source indices and weights of both axes are computed once per call
//! ([`AxisWeights`]) instead of once per element (flex recomputes them per pixel, in `f64`), and
//! the planes run in parallel. Both passes go plane by plane, so every element's sum has one
//! order whatever the thread count.
//!
//! Upsampling in height (DeepLab's two resizes, x4 each) runs separably: the forward first
//! resizes every input row along the width (`ih x ow` gathers, into a per-task row buffer), then
//! blends two of those rows per output row (`out = h0 * top + h1 * bottom`, contiguous and
//! vectorised for the CPU's instruction set, [`crate::simd`]); this is exactly PyTorch's
//! arithmetic, `h0 * (w0 * a + w1 * b) + h1 * (w0 * c + w1 * d)`, so the bits are unchanged. The
//! backward first spreads every output row over its two source rows (`tmp[lo] += h0 * g`,
//! contiguous), then each of those `ih` rows over its source columns: `ih x ow` scatters instead
//! of `4 x oh x ow`. It computes `w0 * (h0 * g)` where PyTorch computes `(h0 * w0) * g`, and sums
//! the rows first, so its results differ from PyTorch's by float reordering only (tests: 5e-6).
//! Why: profiled at 1 thread (line tables, issue 19), the element-wise forward and the
//! four-scatters-per-element backward were the largest non-convolution item of the MobileNetV2
//! segmentation step (3-5% of its samples). Downsampling in height (more input rows than output
//! rows, where the row pass would do more work) keeps the element-wise loops, as does
//! `AFAN_RESIZE_SEPARABLE=0` (for timing one binary both ways).

use crate::conv::scratch::{assume_init, uninit_vec};
use crate::simd::Isa;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// The two source positions and weights of every output position along one axis.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisWeights {
    /// Lower source index.
    pub lo: Vec<usize>,
    /// Upper source index (equal to `lo` at the last input position).
    pub hi: Vec<usize>,
    /// Weight of `lo`.
    pub w_lo: Vec<f32>,
    /// Weight of `hi`.
    pub w_hi: Vec<f32>,
}

impl AxisWeights {
    /// PyTorch's `area_pixel_compute_scale` and `area_pixel_compute_source_index` (linear
    /// mode) for `input` positions resized to `output`, in `f32` as PyTorch computes for `f32`
    /// tensors.
    pub fn new(input: usize, output: usize, align_corners: bool) -> Self {
        let scale = if align_corners {
            if output > 1 {
                (input as f32 - 1.0) / (output as f32 - 1.0)
            } else {
                0.0
            }
        } else {
            input as f32 / output as f32
        };
        let mut a = Self {
            lo: Vec::with_capacity(output),
            hi: Vec::with_capacity(output),
            w_lo: Vec::with_capacity(output),
            w_hi: Vec::with_capacity(output),
        };
        for o in 0..output {
            let real = if align_corners {
                scale * o as f32
            } else {
                (scale * (o as f32 + 0.5) - 0.5).max(0.0)
            };
            let lo = (real as usize).min(input - 1);
            let step = usize::from(lo < input - 1);
            let lambda = real - lo as f32;
            a.lo.push(lo);
            a.hi.push(lo + step);
            a.w_lo.push(1.0 - lambda);
            a.w_hi.push(lambda);
        }
        a
    }
}

/// The geometry of one resize: `planes` planes of `input` resized to `output` (`[h, w]` each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resize {
    /// `N * C`.
    pub planes: usize,
    /// Input `[h, w]`.
    pub input: [usize; 2],
    /// Output `[h, w]`.
    pub output: [usize; 2],
    /// PyTorch's `align_corners`.
    pub align_corners: bool,
}

impl Resize {
    fn axes(&self) -> [AxisWeights; 2] {
        [0, 1].map(|d| AxisWeights::new(self.input[d], self.output[d], self.align_corners))
    }

    /// Whether both passes run separably (see the module docs): upsampling or keeping the
    /// height, unless `AFAN_RESIZE_SEPARABLE=0`.
    pub(super) fn separable(&self) -> bool {
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let on = *ON.get_or_init(|| crate::flex::env_switch("AFAN_RESIZE_SEPARABLE", true));
        on && self.input[0] <= self.output[0]
    }
}

/// Planes handed to one rayon task: about 64k output elements (one plane at least), so that a
/// task's row buffer and its [`Isa::run`] are paid per task, not per small plane.
fn planes_per_task(out_plane: usize) -> usize {
    (65_536 / out_plane.max(1)).max(1)
}

/// Bilinear resize of `x` (`planes` input planes) to the output size.
pub fn bilinear_forward(r: &Resize, x: &[f32]) -> Vec<f32> {
    let mut y = uninit_vec(r.planes * r.output[0] * r.output[1]);
    bilinear_forward_into(r, x, &mut y);
    // SAFETY: `bilinear_forward_into` writes every element (tests poison it to check).
    unsafe { assume_init(y) }
}

/// [`bilinear_forward`] into `y`, every element of which it writes.
pub(super) fn bilinear_forward_into(r: &Resize, x: &[f32], y: &mut [MaybeUninit<f32>]) {
    forward_into_with(r, x, y, r.separable());
}

/// [`bilinear_forward_into`], separably if `separable` (which the caller has checked applies).
pub(super) fn forward_into_with(
    r: &Resize,
    x: &[f32],
    y: &mut [MaybeUninit<f32>],
    separable: bool,
) {
    let [ih, iw] = r.input;
    let [oh, ow] = r.output;
    assert_eq!(
        x.len(),
        r.planes * ih * iw,
        "resize input of the wrong size"
    );
    assert_eq!(
        y.len(),
        r.planes * oh * ow,
        "resize output of the wrong size"
    );
    if y.is_empty() {
        return;
    }
    let [ys, xs] = r.axes();
    if separable {
        let per = planes_per_task(oh * ow);
        let isa = Isa::detect();
        y.par_chunks_mut(oh * ow * per)
            .zip(x.par_chunks(ih * iw * per))
            .for_each(|(out, src)| {
                isa.run(
                    #[inline(always)]
                    || forward_planes_separable(&ys, &xs, [ih, iw], out, src),
                )
            });
        return;
    }
    y.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(ih * iw))
        .for_each(|(out, src)| {
            for oy in 0..oh {
                let top = &src[ys.lo[oy] * iw..][..iw];
                let bottom = &src[ys.hi[oy] * iw..][..iw];
                let (h0, h1) = (ys.w_lo[oy], ys.w_hi[oy]);
                let row = &mut out[oy * ow..][..ow];
                for (ox, o) in row.iter_mut().enumerate() {
                    let (x0, x1) = (xs.lo[ox], xs.hi[ox]);
                    let (w0, w1) = (xs.w_lo[ox], xs.w_hi[ox]);
                    let v = h0 * (w0 * top[x0] + w1 * top[x1])
                        + h1 * (w0 * bottom[x0] + w1 * bottom[x1]);
                    o.write(v);
                }
            }
        });
}

/// The gradient of [`bilinear_forward`] with respect to its input, from `dy` (`planes` output
/// planes): PyTorch's `upsample_bilinear2d_backward`, each output element's four contributions
/// added in output order.
pub fn bilinear_backward(r: &Resize, dy: &[f32]) -> Vec<f32> {
    let mut dx = uninit_vec(r.planes * r.input[0] * r.input[1]);
    bilinear_backward_into(r, dy, &mut dx);
    // SAFETY: `bilinear_backward_into` writes every element (tests poison it to check).
    unsafe { assume_init(dx) }
}

/// [`bilinear_backward`] into `dx`, every element of which it writes (each plane is zeroed, then
/// the contributions are added).
pub(super) fn bilinear_backward_into(r: &Resize, dy: &[f32], dx: &mut [MaybeUninit<f32>]) {
    backward_into_with(r, dy, dx, r.separable());
}

/// [`bilinear_backward_into`], separably if `separable` (which the caller has checked applies).
pub(super) fn backward_into_with(
    r: &Resize,
    dy: &[f32],
    dx: &mut [MaybeUninit<f32>],
    separable: bool,
) {
    let [ih, iw] = r.input;
    let [oh, ow] = r.output;
    assert_eq!(
        dy.len(),
        r.planes * oh * ow,
        "resize gradient of the wrong size"
    );
    assert_eq!(
        dx.len(),
        r.planes * ih * iw,
        "resize input gradient of the wrong size"
    );
    if dx.is_empty() {
        return;
    }
    if dy.is_empty() {
        dx.fill(MaybeUninit::new(0.0));
        return;
    }
    let [ys, xs] = r.axes();
    if separable {
        let per = planes_per_task(oh * ow);
        let isa = Isa::detect();
        dx.par_chunks_mut(ih * iw * per)
            .zip(dy.par_chunks(oh * ow * per))
            .for_each(|(grad, src)| {
                isa.run(
                    #[inline(always)]
                    || backward_planes_separable(&ys, &xs, [ih, iw], grad, src),
                )
            });
        return;
    }
    dx.par_chunks_mut(ih * iw)
        .zip(dy.par_chunks((oh * ow).max(1)))
        .for_each(|(grad, src)| {
            grad.fill(MaybeUninit::new(0.0));
            // SAFETY: just filled.
            let grad = unsafe { grad.assume_init_mut() };
            for oy in 0..oh {
                let (r0, r1) = (ys.lo[oy] * iw, ys.hi[oy] * iw);
                let (h0, h1) = (ys.w_lo[oy], ys.w_hi[oy]);
                for (ox, g) in src[oy * ow..][..ow].iter().enumerate() {
                    let (x0, x1) = (xs.lo[ox], xs.hi[ox]);
                    let (w0, w1) = (xs.w_lo[ox], xs.w_hi[ox]);
                    grad[r0 + x0] += h0 * w0 * g;
                    grad[r0 + x1] += h0 * w1 * g;
                    grad[r1 + x0] += h1 * w0 * g;
                    grad[r1 + x1] += h1 * w1 * g;
                }
            }
        });
}

/// The separable forward over whole planes `src` (`[ih, iw]` each) into `out`: each input row
/// resized along the width into `rows` (`[ih, ow]`), then two of those blended per output row.
/// Per element the same operations as the element-wise loop, in the same order.
#[inline(always)]
fn forward_planes_separable(
    ys: &AxisWeights,
    xs: &AxisWeights,
    [ih, iw]: [usize; 2],
    out: &mut [MaybeUninit<f32>],
    src: &[f32],
) {
    let (oh, ow) = (ys.lo.len(), xs.lo.len());
    let mut rows = vec![0f32; ih * ow];
    for (out, src) in out.chunks_mut(oh * ow).zip(src.chunks(ih * iw)) {
        for (row, input) in rows.chunks_mut(ow).zip(src.chunks(iw)) {
            for (ox, o) in row.iter_mut().enumerate() {
                *o = xs.w_lo[ox] * input[xs.lo[ox]] + xs.w_hi[ox] * input[xs.hi[ox]];
            }
        }
        for (oy, o) in out.chunks_mut(ow).enumerate() {
            let top = &rows[ys.lo[oy] * ow..][..ow];
            let bottom = &rows[ys.hi[oy] * ow..][..ow];
            let (h0, h1) = (ys.w_lo[oy], ys.w_hi[oy]);
            for ((o, &t), &b) in o.iter_mut().zip(top).zip(bottom) {
                o.write(h0 * t + h1 * b);
            }
        }
    }
}

/// The separable backward over whole planes: every output-gradient row spread over its two source
/// rows in `rows` (`[ih, ow]`, in output-row order), then every such row over its source columns
/// (in column order) into the zeroed `grad` planes.
#[inline(always)]
fn backward_planes_separable(
    ys: &AxisWeights,
    xs: &AxisWeights,
    [ih, iw]: [usize; 2],
    grad: &mut [MaybeUninit<f32>],
    src: &[f32],
) {
    let (oh, ow) = (ys.lo.len(), xs.lo.len());
    let mut rows = vec![0f32; ih * ow];
    grad.fill(MaybeUninit::new(0.0));
    // SAFETY: just filled.
    let grad = unsafe { grad.assume_init_mut() };
    for (grad, src) in grad.chunks_mut(ih * iw).zip(src.chunks(oh * ow)) {
        rows.fill(0.0);
        for (oy, g) in src.chunks(ow).enumerate() {
            let (h0, h1) = (ys.w_lo[oy], ys.w_hi[oy]);
            for (t, &g) in rows[ys.lo[oy] * ow..][..ow].iter_mut().zip(g) {
                *t += h0 * g;
            }
            for (b, &g) in rows[ys.hi[oy] * ow..][..ow].iter_mut().zip(g) {
                *b += h1 * g;
            }
        }
        for (dx, row) in grad.chunks_mut(iw).zip(rows.chunks(ow)) {
            for (ox, &t) in row.iter().enumerate() {
                dx[xs.lo[ox]] += xs.w_lo[ox] * t;
                dx[xs.hi[ox]] += xs.w_hi[ox] * t;
            }
        }
    }
}
