//! Convolution kernels on contiguous NCHW `f32` slices: per image, im2col into a reused
//! thread-local buffer and one `gemm` call, images spread over the rayon pool.
//!
//! Why not flex's own convolution: it converts every input to NHWC and back, zero-fills fresh
//! patch matrices, computes the input gradient as a transposed convolution and the weight gradient
//! as a convolution with a 32x32 "kernel" (docs/benchmarks.md). Here the output of each gemm is
//! already the NCHW image, the input gradient is `W^T dY` scattered back by col2im, and the weight
//! gradient is `sum_n dY_n col_n^T` accumulated per thread. 1x1 stride-1 unpadded convolutions
//! need no patch matrix at all: the image is one.

use gemm::{Parallelism, gemm};
use rayon::prelude::*;
use std::cell::RefCell;

/// The shape of one convolution (groups 1, dilation 1, symmetric padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub in_ch: usize,
    /// Input height and width.
    pub in_hw: [usize; 2],
    /// Output channels.
    pub out_ch: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// Zero padding on each side, along height and width.
    pub padding: [usize; 2],
}

impl ConvGeom {
    /// Output height and width (PyTorch's floor formula).
    pub fn out_hw(&self) -> [usize; 2] {
        [0, 1].map(|d| (self.in_hw[d] + 2 * self.padding[d] - self.kernel[d]) / self.stride[d] + 1)
    }

    /// Rows of the patch matrix: `C * kh * kw`.
    pub fn patch(&self) -> usize {
        self.in_ch * self.kernel[0] * self.kernel[1]
    }

    fn in_len(&self) -> usize {
        self.in_ch * self.in_hw[0] * self.in_hw[1]
    }

    fn out_pixels(&self) -> usize {
        let [oh, ow] = self.out_hw();
        oh * ow
    }

    /// An image is its own patch matrix.
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [0, 0]
    }
}

/// Groups of images whose weight gradients are summed separately (in parallel) and then in order;
/// enough to keep a many-core pool busy, few enough that the partial sums stay small.
const WEIGHT_GRAD_GROUPS: usize = 16;

thread_local! {
    /// The patch matrix of the image this thread works on; resized, never zeroed (im2col writes
    /// every element).
    static COL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// The patch-matrix gradient of the image this thread works on.
    static DCOL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

fn with_buffer<R>(
    key: &'static std::thread::LocalKey<RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    key.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}

/// Output positions `lo..hi` (along one axis) whose input index `o * s + k - p` is inside `0..n`.
fn valid_range(k: usize, p: usize, s: usize, n: usize, out: usize) -> (usize, usize) {
    let lo = if k >= p { 0 } else { (p - k).div_ceil(s) };
    let hi = if n + p > k {
        ((n + p - k - 1) / s + 1).min(out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Calls `f(row, channel plane offset, ki, kj)` for every row of the patch matrix.
fn for_each_patch_row(g: &ConvGeom, mut f: impl FnMut(usize, usize, usize, usize)) {
    let [kh, kw] = g.kernel;
    let plane = g.in_hw[0] * g.in_hw[1];
    for c in 0..g.in_ch {
        for ki in 0..kh {
            for kj in 0..kw {
                f((c * kh + ki) * kw + kj, c * plane, ki, kj);
            }
        }
    }
}

/// The input row feeding output row `oy` at kernel row `ki`, if inside the image.
fn input_row(g: &ConvGeom, oy: usize, ki: usize) -> Option<usize> {
    (oy * g.stride[0] + ki)
        .checked_sub(g.padding[0])
        .filter(|&iy| iy < g.in_hw[0])
}

/// Patch matrix `[C*kh*kw, OH*OW]` of one image `[C, H, W]`.
fn im2col(g: &ConvGeom, x: &[f32], col: &mut [f32]) {
    let [oh, ow] = g.out_hw();
    let [_, w] = g.in_hw;
    let (sw, pw) = (g.stride[1], g.padding[1]);
    let pixels = oh * ow;
    for_each_patch_row(g, |row, plane, ki, kj| {
        let dst = &mut col[row * pixels..(row + 1) * pixels];
        let (lo, hi) = valid_range(kj, pw, sw, w, ow);
        for oy in 0..oh {
            let out = &mut dst[oy * ow..(oy + 1) * ow];
            let Some(iy) = input_row(g, oy, ki) else {
                out.fill(0.0);
                continue;
            };
            let src = &x[plane + iy * w..plane + (iy + 1) * w];
            out[..lo].fill(0.0);
            out[hi..].fill(0.0);
            let start = lo * sw + kj - pw;
            if sw == 1 {
                out[lo..hi].copy_from_slice(&src[start..start + hi - lo]);
            } else {
                for (o, ix) in out[lo..hi].iter_mut().zip((start..).step_by(sw)) {
                    *o = src[ix];
                }
            }
        }
    });
}

/// Adds the patch-matrix gradient `dcol` back onto the image gradient `dx` (`[C, H, W]`).
fn col2im(g: &ConvGeom, dcol: &[f32], dx: &mut [f32]) {
    let [oh, ow] = g.out_hw();
    let [_, w] = g.in_hw;
    let (sw, pw) = (g.stride[1], g.padding[1]);
    let pixels = oh * ow;
    for_each_patch_row(g, |row, plane, ki, kj| {
        let src = &dcol[row * pixels..(row + 1) * pixels];
        let (lo, hi) = valid_range(kj, pw, sw, w, ow);
        for oy in 0..oh {
            let Some(iy) = input_row(g, oy, ki) else {
                continue;
            };
            let dst = &mut dx[plane + iy * w..plane + (iy + 1) * w];
            let start = lo * sw + kj - pw;
            let grads = &src[oy * ow + lo..oy * ow + hi];
            if sw == 1 {
                // Slices of equal length: a vectorised add (the strided form below is not).
                for (d, g) in dst[start..start + grads.len()].iter_mut().zip(grads) {
                    *d += g;
                }
            } else {
                for (g, ix) in grads.iter().zip((start..).step_by(sw)) {
                    dst[ix] += g;
                }
            }
        }
    });
}

/// A row-major or transposed view of a matrix for `gemm`: pointer, column stride, row stride.
#[derive(Clone, Copy)]
struct Mat(*const f32, isize, isize);

impl Mat {
    /// Row-major `rows x cols`.
    fn rows(data: &[f32], cols: usize) -> Self {
        Mat(data.as_ptr(), 1, cols as isize)
    }

    /// The transpose of a row-major matrix with `cols` columns.
    fn transposed(data: &[f32], cols: usize) -> Self {
        Mat(data.as_ptr(), cols as isize, 1)
    }
}

/// `dst[m x n] (+)= lhs[m x k] * rhs[k x n]`, single-threaded (the caller parallelises).
fn matmul(dst: &mut [f32], [m, n, k]: [usize; 3], lhs: Mat, rhs: Mat, accumulate: bool) {
    debug_assert_eq!(dst.len(), m * n);
    // SAFETY: `dst` holds `m * n` elements written row-major; the callers build `lhs` and `rhs`
    // from slices of `m * k` and `k * n` elements with matching strides.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.0,
            lhs.1,
            lhs.2,
            rhs.0,
            rhs.1,
            rhs.2,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

/// Forward convolution: `x [N, C, H, W]`, `w [K, C, kh, kw]` -> `[N, K, OH, OW]`.
pub fn conv2d_forward(g: &ConvGeom, x: &[f32], w: &[f32]) -> Vec<f32> {
    let (patch, pixels) = (g.patch(), g.out_pixels());
    let mut y = vec![0.0f32; g.batch * g.out_ch * pixels];
    let dims = [g.out_ch, pixels, patch];
    y.par_chunks_mut(g.out_ch * pixels)
        .zip(x.par_chunks(g.in_len()))
        .for_each(|(y_n, x_n)| {
            if g.is_pointwise() {
                matmul(
                    y_n,
                    dims,
                    Mat::rows(w, patch),
                    Mat::rows(x_n, pixels),
                    false,
                );
            } else {
                with_buffer(&COL, patch * pixels, |col| {
                    im2col(g, x_n, col);
                    matmul(
                        y_n,
                        dims,
                        Mat::rows(w, patch),
                        Mat::rows(col, pixels),
                        false,
                    );
                });
            }
        });
    y
}

/// Gradients of a convolution with respect to its input and/or its weight, from the output
/// gradient `dy [N, K, OH, OW]`. The two share one pass over the batch: each image's patch matrix
/// is built once, for the weight gradient, while its input gradient is computed beside it.
pub fn conv2d_backward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    [need_x, need_w]: [bool; 2],
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let (patch, pixels) = (g.patch(), g.out_pixels());
    let w_len = g.out_ch * patch;
    let mut dx = vec![0.0f32; if need_x { x.len() } else { 0 }];
    let in_len = if need_x { g.in_len() } else { 1 };
    let image = |dx_n: &mut [f32], x_n: &[f32], dy_n: &[f32], dw: &mut Vec<f32>| {
        if need_x {
            input_grad_image(g, w, dy_n, dx_n);
        }
        if need_w {
            if dw.is_empty() {
                dw.resize(w_len, 0.0);
            }
            let dims = [g.out_ch, patch, pixels];
            let lhs = Mat::rows(dy_n, pixels);
            if g.is_pointwise() {
                matmul(dw, dims, lhs, Mat::transposed(x_n, pixels), true);
            } else {
                with_buffer(&COL, patch * pixels, |col| {
                    im2col(g, x_n, col);
                    matmul(dw, dims, lhs, Mat::transposed(col, pixels), true);
                });
            }
        }
    };
    // Fixed groups of images, a function of the batch size only: each group sums its images'
    // weight gradients in image order and the groups are summed in group order, so the result
    // does not depend on how rayon schedules the work (per-thread accumulators did, and a resumed
    // run then differed from an uninterrupted one).
    let n = x.len() / g.in_len().max(1);
    let per = n.div_ceil(WEIGHT_GRAD_GROUPS).max(1);
    let out_len = g.out_ch * pixels;
    let group = |dx_g: &mut [f32], x_g: &[f32], dy_g: &[f32]| {
        let mut dw = Vec::new();
        for (i, (x_n, dy_n)) in x_g.chunks(g.in_len()).zip(dy_g.chunks(out_len)).enumerate() {
            let dx_n = if need_x {
                &mut dx_g[i * in_len..(i + 1) * in_len]
            } else {
                &mut [][..]
            };
            image(dx_n, x_n, dy_n, &mut dw);
        }
        dw
    };
    let images = x
        .par_chunks(g.in_len() * per)
        .zip(dy.par_chunks(out_len * per));
    let partial: Vec<Vec<f32>> = if need_x {
        dx.par_chunks_mut(in_len * per)
            .zip(images)
            .map(|(dx_g, (x_g, dy_g))| group(dx_g, x_g, dy_g))
            .collect()
    } else {
        images
            .map(|(x_g, dy_g)| group(&mut [][..], x_g, dy_g))
            .collect()
    };
    let dw = partial.into_iter().fold(Vec::new(), add_into);
    (need_x.then_some(dx), need_w.then(|| sized(dw, w_len)))
}

/// `dx_n = col2im(W^T dy_n)`; `dx_n` arrives zeroed.
fn input_grad_image(g: &ConvGeom, w: &[f32], dy_n: &[f32], dx_n: &mut [f32]) {
    let (patch, pixels) = (g.patch(), g.out_pixels());
    let lhs = Mat::transposed(w, patch);
    let dims = [patch, pixels, g.out_ch];
    if g.is_pointwise() {
        matmul(dx_n, dims, lhs, Mat::rows(dy_n, pixels), false);
    } else {
        with_buffer(&DCOL, patch * pixels, |dcol| {
            matmul(dcol, dims, lhs, Mat::rows(dy_n, pixels), false);
            col2im(g, dcol, dx_n);
        });
    }
}

/// Sums two partial weight gradients; an empty one stands for zeros.
fn add_into(mut a: Vec<f32>, b: Vec<f32>) -> Vec<f32> {
    if a.is_empty() {
        return b;
    }
    for (a, b) in a.iter_mut().zip(&b) {
        *a += b;
    }
    a
}

/// An accumulator of the right length (a batch of zero images leaves it empty).
fn sized(mut v: Vec<f32>, len: usize) -> Vec<f32> {
    v.resize(len, 0.0);
    v
}
