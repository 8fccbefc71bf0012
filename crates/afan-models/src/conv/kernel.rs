//! Convolution kernels on contiguous NCHW `f32` slices: per image, im2col into a reused
//! thread-local buffer and one `gemm` call, images spread over the rayon pool.
//!
//! Why not flex's own convolution: it converts every input to NHWC and back, zero-fills fresh
//! patch matrices, computes the input gradient as a transposed convolution and the weight gradient
//! as a convolution with a 32x32 "kernel" (docs/benchmarks.md). Here the output of each gemm is
//! already the NCHW image; the input gradient is either `W^T dY` scattered back by col2im or, for
//! stride 1, a forward convolution of `dY` ([`InputRoute`]); the weight gradient is
//! `sum_n col_n dY_n^T`, accumulated transposed so that gemm streams each patch matrix as it lies
//! in memory. 1x1 stride-1 unpadded convolutions need no patch matrix: the image is one.
//!
//! Determinism: every sum has a fixed order that depends on the shapes only (per image, then
//! over fixed groups of images), never on the thread count or on rayon's scheduling.

pub use super::geom::ConvGeom;
use super::geom::flip_transpose;
use super::patches::{col2im, im2col};
pub use super::scratch::{SCRATCH_KEEP_BYTES, held_bytes};
use super::scratch::{Scratch, assume_init, release_large, uninit_vec, with_scratch};
use gemm::{Parallelism, gemm};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Groups of images whose weight gradients are summed separately (in parallel) and then in order;
/// enough to keep a many-core pool busy, few enough that the partial sums stay small.
const WEIGHT_GRAD_GROUPS: usize = 16;

/// How the input gradient of a convolution is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputRoute {
    /// `col2im(W^T dY)`: a gemm whose inner dimension is only `K`, writing a `C*kh*kw`-row
    /// matrix that col2im then adds back onto the image. Works for every shape.
    Col2im,
    /// The forward convolution of `dY` with the flipped, transposed weight
    /// ([`ConvGeom::input_grad_conv`]): im2col of `dY` (`K*kh*kw` rows, copied rather than
    /// added) and a gemm with inner dimension `K*kh*kw` that writes the image directly. Stride 1
    /// with padding below the kernel size only.
    Conv,
}

impl InputRoute {
    /// The faster route for `g`: the convolution wherever it applies and `K <= C` (its patch
    /// matrix, `K*kh*kw` rows, is then no larger than the `C*kh*kw` rows col2im would add back;
    /// conv_bench's `dx` mode times both).
    pub fn choose(g: &ConvGeom) -> Self {
        if !g.is_pointwise() && g.input_grad_conv().is_some() && g.out_ch <= g.in_ch {
            Self::Conv
        } else {
            Self::Col2im
        }
    }
}

/// A row-major or transposed view of a matrix for `gemm`: pointer, column stride, row stride.
#[derive(Clone, Copy)]
struct Mat(*const f32, isize, isize);

impl Mat {
    /// Row-major `rows x cols`.
    fn rows(data: &[f32], cols: usize) -> Self {
        Mat(data.as_ptr(), 1, cols as isize)
    }

    /// Row-major `rows x cols`, written by the caller before the product reads it.
    fn written(data: &[MaybeUninit<f32>], cols: usize) -> Self {
        Mat(data.as_ptr().cast(), 1, cols as isize)
    }

    /// The transpose of a row-major matrix with `cols` columns.
    fn transposed(data: &[f32], cols: usize) -> Self {
        Mat(data.as_ptr(), cols as isize, 1)
    }
}

/// `dst[m x n] (+)= lhs[m x k] * rhs[k x n]`, row-major `dst`, single-threaded (the caller
/// parallelises). With `accumulate` false `dst` is only written, so it may be uninitialised.
fn matmul(
    dst: &mut [MaybeUninit<f32>],
    [m, n, k]: [usize; 3],
    lhs: Mat,
    rhs: Mat,
    accumulate: bool,
) {
    assert_eq!(dst.len(), m * n);
    // SAFETY: `dst` holds `m * n` elements, written row-major (and read only when
    // `accumulate`, where the callers pass initialised memory); the callers build `lhs` and `rhs`
    // from slices of `m * k` and `k * n` initialised elements with matching strides.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().cast::<f32>(),
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

/// A slice of initialised `f32` viewed as possibly uninitialised, for [`matmul`] to add into.
fn as_uninit(v: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `f32` and `MaybeUninit<f32>` have the same layout, and every value written through
    // the view (by gemm) is an initialised `f32`.
    unsafe { &mut *(v as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// Runs `f` on the patch matrix of image `x_n` (`[C*kh*kw, OH*OW]`, row-major): the image
/// itself for a pointwise convolution, else im2col's copy in this thread's scratch.
fn with_patches<R>(g: &ConvGeom, x_n: &[f32], f: impl FnOnce(Mat) -> R) -> R {
    let pixels = g.out_pixels();
    if g.is_pointwise() {
        return f(Mat::rows(x_n, pixels));
    }
    with_scratch(Scratch::Col, g.patch() * pixels, |col| {
        im2col(g, x_n, col);
        f(Mat::written(col, pixels))
    })
}

/// One image of the forward convolution: `y_n [K, OH*OW] = W [K, C*kh*kw] * col(x_n)`, every
/// element of `y_n` written.
fn forward_image(g: &ConvGeom, x_n: &[f32], w: &[f32], y_n: &mut [MaybeUninit<f32>]) {
    let (patch, pixels) = (g.patch(), g.out_pixels());
    let lhs = Mat::rows(w, patch);
    with_patches(g, x_n, |col| {
        matmul(y_n, [g.out_ch, pixels, patch], lhs, col, false)
    });
}

/// Forward convolution: `x [N, C, H, W]`, `w [K, C, kh, kw]` -> `[N, K, OH, OW]`.
pub fn conv2d_forward(g: &ConvGeom, x: &[f32], w: &[f32]) -> Vec<f32> {
    let mut y = uninit_vec(g.batch * g.out_len());
    conv2d_forward_into(g, x, w, &mut y);
    // SAFETY: `conv2d_forward_into` writes every element (`forward_image` writes all of each
    // image's output; kernel_tests poisons the output and the scratch to check it).
    unsafe { assume_init(y) }
}

/// [`conv2d_forward`] into `y`, every element of which it writes.
pub(super) fn conv2d_forward_into(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [MaybeUninit<f32>]) {
    assert_eq!(y.len(), g.batch * g.out_len());
    y.par_chunks_mut(g.out_len().max(1))
        .zip(x.par_chunks(g.in_len().max(1)))
        .for_each(|(y_n, x_n)| forward_image(g, x_n, w, y_n));
    release_large(g.patch() * g.out_pixels() * size_of::<f32>());
}

/// The input gradient of one image by `route`, every element of `dx_n` written. `w_conv` is the
/// flipped, transposed weight when the route is [`InputRoute::Conv`].
fn input_grad_image(
    g: &ConvGeom,
    route: InputRoute,
    w: &[f32],
    w_conv: &[f32],
    dy_n: &[f32],
    dx_n: &mut [MaybeUninit<f32>],
) {
    let (patch, pixels) = (g.patch(), g.out_pixels());
    let lhs = Mat::transposed(w, patch);
    let dims = [patch, pixels, g.out_ch];
    if g.is_pointwise() {
        matmul(dx_n, dims, lhs, Mat::rows(dy_n, pixels), false);
        return;
    }
    match (route, g.input_grad_conv()) {
        (InputRoute::Conv, Some(gt)) => forward_image(&gt, dy_n, w_conv, dx_n),
        (InputRoute::Conv, None) => panic!("no input-gradient convolution for {g:?}"),
        (InputRoute::Col2im, _) => with_scratch(Scratch::Dcol, patch * pixels, |dcol| {
            matmul(dcol, dims, lhs, Mat::rows(dy_n, pixels), false);
            // SAFETY: the product above wrote all `patch * pixels` elements.
            let dcol = unsafe { dcol.assume_init_mut() };
            dx_n.fill(MaybeUninit::new(0.0));
            // SAFETY: just filled.
            col2im(g, dcol, unsafe { dx_n.assume_init_mut() });
        }),
    }
}

/// Adds one image's weight gradient, transposed (`[C*kh*kw, K]`), onto `dwt`:
/// `dwt += col(x_n) * dy_n^T`. In this order gemm packs the small `dy_n` and streams the patch
/// matrix along its rows, as im2col wrote it; `dw += dy_n * col^T` made it gather the patch
/// matrix across rows.
fn weight_grad_image(g: &ConvGeom, x_n: &[f32], dy_n: &[f32], dwt: &mut [f32]) {
    let (patch, pixels) = (g.patch(), g.out_pixels());
    let rhs = Mat::transposed(dy_n, pixels);
    with_patches(g, x_n, |col| {
        matmul(as_uninit(dwt), [patch, g.out_ch, pixels], col, rhs, true)
    });
}

/// Gradients of a convolution with respect to its input and/or its weight, from the output
/// gradient `dy [N, K, OH, OW]`, the input gradient by [`InputRoute::choose`].
pub fn conv2d_backward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    need: [bool; 2],
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    conv2d_backward_by(g, InputRoute::choose(g), x, w, dy, need)
}

/// [`conv2d_backward`] with the input gradient by `route`. Both gradients share one pass over
/// the batch, image by image, so that each image's data is read while in cache.
pub fn conv2d_backward_by(
    g: &ConvGeom,
    route: InputRoute,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    [need_x, need_w]: [bool; 2],
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let mut dx = uninit_vec(if need_x { x.len() } else { 0 });
    let w_conv = match route {
        InputRoute::Conv if need_x => flip_transpose(g, w),
        _ => Vec::new(),
    };
    let dwt = backward_into(g, route, x, w, &w_conv, dy, [need_x, need_w], &mut dx);
    let scratch = match route {
        InputRoute::Conv => g.out_ch * g.kernel[0] * g.kernel[1] * g.in_hw[0] * g.in_hw[1],
        InputRoute::Col2im => g.patch() * g.out_pixels(),
    };
    release_large(scratch.max(g.patch() * g.out_pixels()) * size_of::<f32>());
    // SAFETY: `backward_into` writes every element of `dx` when `need_x` (`input_grad_image`
    // writes all of each image's gradient; kernel_tests poisons the output to check it).
    let dx = need_x.then(|| unsafe { assume_init(dx) });
    (dx, need_w.then(|| transpose(&dwt, g.patch(), g.out_ch)))
}

/// The pass over the batch of [`conv2d_backward_by`]: writes `dx` (when asked) and returns the
/// transposed weight gradient (zeros when not asked). Images go in fixed groups, a function of
/// the batch size only: each group sums its images' weight gradients in image order and the
/// groups are summed in group order, so the result does not depend on how rayon schedules the
/// work (per-thread accumulators did, and a resumed run then differed from an uninterrupted one).
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_into(
    g: &ConvGeom,
    route: InputRoute,
    x: &[f32],
    w: &[f32],
    w_conv: &[f32],
    dy: &[f32],
    [need_x, need_w]: [bool; 2],
    dx: &mut [MaybeUninit<f32>],
) -> Vec<f32> {
    let w_len = g.out_ch * g.patch();
    let (in_len, out_len) = (g.in_len().max(1), g.out_len().max(1));
    let per = g.batch.div_ceil(WEIGHT_GRAD_GROUPS).max(1);
    let group = |dx_g: &mut [MaybeUninit<f32>], x_g: &[f32], dy_g: &[f32]| {
        let mut dwt = vec![0.0f32; if need_w { w_len } else { 0 }];
        for (i, (x_n, dy_n)) in x_g.chunks(in_len).zip(dy_g.chunks(out_len)).enumerate() {
            if need_x {
                let dx_n = &mut dx_g[i * in_len..(i + 1) * in_len];
                input_grad_image(g, route, w, w_conv, dy_n, dx_n);
            }
            if need_w {
                weight_grad_image(g, x_n, dy_n, &mut dwt);
            }
        }
        dwt
    };
    let images = x.par_chunks(in_len * per).zip(dy.par_chunks(out_len * per));
    let partial: Vec<Vec<f32>> = if need_x {
        dx.par_chunks_mut(in_len * per)
            .zip(images)
            .map(|(dx_g, (x_g, dy_g))| group(dx_g, x_g, dy_g))
            .collect()
    } else {
        images
            .map(|(x_g, dy_g)| group(&mut [], x_g, dy_g))
            .collect()
    };
    let mut partial = partial.into_iter();
    let mut dwt = partial.next().unwrap_or_else(|| vec![0.0; w_len]);
    for p in partial {
        for (a, b) in dwt.iter_mut().zip(&p) {
            *a += b;
        }
    }
    dwt
}

/// A `rows x cols` row-major matrix transposed.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| m[r * cols + c]))
        .collect()
}
