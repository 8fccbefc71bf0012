//! Max pooling over contiguous NCHW `f32` slices, one channel plane per rayon task: every output
//! and every input-gradient element belongs to one plane and is computed in a fixed order, so
//! the results do not depend on the thread count.

use crate::conv::scratch::{assume_init, uninit_vec};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

/// A 2-d max pool: window, step and (symmetric, `-inf`) padding per axis; no dilation, floor
/// mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Step between windows, per axis.
    pub stride: [usize; 2],
    /// `-inf` rows (columns) added on each side.
    pub padding: [usize; 2],
}

impl Pool2d {
    /// `kernel` with `stride` and `padding` on both axes.
    pub fn square(kernel: usize, stride: usize, padding: usize) -> Self {
        Self {
            kernel: [kernel; 2],
            stride: [stride; 2],
            padding: [padding; 2],
        }
    }

    /// Whether this kernel handles the pool on an `in_hw` map: a positive window and step,
    /// padding at most half the window (PyTorch's own rule, so that no window is all padding)
    /// and at least one window.
    pub fn applies(&self, in_hw: [usize; 2]) -> bool {
        (0..2).all(|d| {
            self.kernel[d] > 0
                && self.stride[d] > 0
                && self.padding[d] * 2 <= self.kernel[d]
                && in_hw[d] + 2 * self.padding[d] >= self.kernel[d]
        })
    }

    /// The output's height and width on an `in_hw` map.
    pub fn out_hw(&self, in_hw: [usize; 2]) -> [usize; 2] {
        [0, 1].map(|d| (in_hw[d] + 2 * self.padding[d] - self.kernel[d]) / self.stride[d] + 1)
    }

    /// The input rows (or columns, `d` = 1) of output row `o`'s window, clipped to the map.
    fn window(&self, d: usize, o: usize, len: usize) -> Range<usize> {
        let start = (o * self.stride[d]).saturating_sub(self.padding[d]);
        let end = (o * self.stride[d] + self.kernel[d]).saturating_sub(self.padding[d]);
        start..end.min(len)
    }
}

/// One plane's pool: writes every element of `y` and, when `INDICES`, of `idx` (the flat
/// position `ih * W + iw` in the plane of each window's pick, as PyTorch and flex give it).
///
/// Each window from its first element, then every element (the first again: a no-op) taken when
/// greater or NaN, as selects rather than branches: which side wins is unpredictable on real
/// data, and the branchy form spent ~35% more time here in the detector's step (`perf`).
/// (Going tap by tap over a whole output row instead, to break the chain of selects, was slower
/// still: LLVM turned the selects back into branches.)
fn pool_plane<const INDICES: bool>(
    pool: &Pool2d,
    [h, w]: [usize; 2],
    x: &[f32],
    y: &mut [MaybeUninit<f32>],
    idx: &mut [MaybeUninit<i64>],
) {
    let [oh, ow] = pool.out_hw([h, w]);
    let cols: Vec<_> = (0..ow).map(|o| pool.window(1, o, w)).collect();
    for r in 0..oh {
        let rows = pool.window(0, r, h);
        for (c, cols) in cols.iter().enumerate() {
            let mut at = rows.start * w + cols.start;
            let mut best = x[at];
            for ih in rows.clone() {
                let base = ih * w;
                for (iw, &v) in x[base + cols.start..base + cols.end].iter().enumerate() {
                    let take = (v > best) | v.is_nan();
                    best = if take { v } else { best };
                    if INDICES {
                        at = if take { base + cols.start + iw } else { at };
                    }
                }
            }
            y[r * ow + c].write(best);
            if INDICES {
                idx[r * ow + c].write(at as i64);
            }
        }
    }
}

/// The pool of `x` (`dims` = `[N, C, H, W]`) and, when `indices`, each output's pick (see
/// `pool_plane`).
pub fn max_pool2d_forward(
    x: &[f32],
    dims: [usize; 4],
    pool: &Pool2d,
    indices: bool,
) -> (Vec<f32>, Option<Vec<i64>>) {
    let [n, c, h, w] = dims;
    let [oh, ow] = pool.out_hw([h, w]);
    let mut y = uninit_vec(n * c * oh * ow);
    let mut idx: Vec<MaybeUninit<i64>> = Vec::new();
    if indices {
        idx.resize(y.len(), MaybeUninit::uninit());
    }
    max_pool2d_forward_into(x, dims, pool, &mut y, &mut idx);
    // SAFETY: `max_pool2d_forward_into` writes every element of `y` (and of `idx` when not
    // empty).
    let y = unsafe { assume_init(y) };
    let idx = indices.then(|| {
        let mut idx = std::mem::ManuallyDrop::new(idx);
        let (ptr, len, cap) = (idx.as_mut_ptr(), idx.len(), idx.capacity());
        // SAFETY: as above; `MaybeUninit<i64>` and `i64` share size and alignment, and the
        // allocation is handed over whole.
        unsafe { Vec::from_raw_parts(ptr.cast::<i64>(), len, cap) }
    });
    (y, idx)
}

/// [`max_pool2d_forward`] into `y` and, unless it is empty, `idx`: every element written.
pub(super) fn max_pool2d_forward_into(
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    pool: &Pool2d,
    y: &mut [MaybeUninit<f32>],
    idx: &mut [MaybeUninit<i64>],
) {
    assert_eq!(x.len(), n * c * h * w, "max pool: input length");
    assert!(pool.applies([h, w]), "max pool {pool:?} on {h}x{w}");
    let [oh, ow] = pool.out_hw([h, w]);
    assert_eq!(y.len(), n * c * oh * ow, "max pool: output length");
    let (plane, out_plane) = ((h * w).max(1), (oh * ow).max(1));
    if idx.is_empty() {
        y.par_chunks_mut(out_plane)
            .zip(x.par_chunks(plane))
            .for_each(|(y, x)| pool_plane::<false>(pool, [h, w], x, y, &mut []));
    } else {
        assert_eq!(idx.len(), y.len(), "max pool: indices length");
        y.par_chunks_mut(out_plane)
            .zip(idx.par_chunks_mut(out_plane))
            .zip(x.par_chunks(plane))
            .for_each(|((y, idx), x)| pool_plane::<true>(pool, [h, w], x, y, idx));
    }
}

/// The input gradient (`[N, C, H, W]` = `dims`) from the output gradient `dy` and the picks
/// `idx` of [`max_pool2d_forward`]: each output's gradient added onto its pick, in output order
/// within each plane.
pub fn max_pool2d_backward(dy: &[f32], idx: &[i64], dims: [usize; 4]) -> Vec<f32> {
    let [n, c, h, w] = dims;
    assert_eq!(
        dy.len(),
        idx.len(),
        "max pool backward: gradient and indices"
    );
    let planes = n * c;
    let mut dx = vec![0.0f32; planes * h * w];
    if planes == 0 || dx.is_empty() {
        return dx;
    }
    let out_plane = dy.len() / planes;
    assert_eq!(out_plane * planes, dy.len(), "max pool backward: planes");
    dx.par_chunks_mut(h * w)
        .zip(
            dy.par_chunks(out_plane.max(1))
                .zip(idx.par_chunks(out_plane.max(1))),
        )
        .for_each(|(dx, (dy, idx))| {
            for (&g, &i) in dy.iter().zip(idx) {
                dx[i as usize] += g;
            }
        });
    dx
}
