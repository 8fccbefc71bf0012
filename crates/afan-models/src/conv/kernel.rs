//! Convolution kernels on contiguous NCHW `f32` slices: per image (or per block of small images,
//! [`images_per_block`]), im2col into a reused thread-local buffer and one `gemm` call per
//! channel group, images spread over the rayon pool.
//!
//! Why not flex's own convolution: it converts every input to NHWC and back, zero-fills fresh
//! patch matrices, computes the input gradient as a transposed convolution and the weight gradient
//! as a convolution with a 32x32 "kernel" (docs/benchmarks.md). Here the output of each gemm is
//! already the NCHW image; the input gradient is either `W^T dY` scattered back by col2im or, for
//! stride 1, a forward convolution of `dY` ([`InputRoute`]); the weight gradient is
//! `sum_n col_n dY_n^T`, accumulated transposed so that gemm streams each patch matrix as it lies
//! in memory. 1x1 stride-1 unpadded convolutions need no patch matrix: the image is one.
//! One large image (a detector's 600x800 input) goes in bands of output rows whose patch matrix
//! stays in L2 ([`band_rows`]): the whole image's patch matrix was tens of MB, written once and
//! read back from memory by gemm.
//!
//! Determinism: every sum has a fixed order that depends on the shapes only (per image, then
//! over fixed groups of images), never on the thread count or on rayon's scheduling.

use super::depthwise::{depthwise_backward, depthwise_forward, is_depthwise};
pub use super::geom::ConvGeom;
use super::layout::{flip_transpose, transpose_into};
use super::patches::{col2im, col2im_rows, im2col, im2col_rows};
pub use super::scratch::{SCRATCH_KEEP_BYTES, held_bytes};
use super::scratch::{Scratch, assume_init, release_large, uninit_vec, with_scratch};
use crate::flex::env_or;
use gemm::{Parallelism, gemm};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::{Arc, OnceLock};

/// Groups of images whose weight gradients are summed separately (in parallel) and then in order;
/// enough to keep a many-core pool busy, few enough that the partial sums stay small.
const WEIGHT_GRAD_GROUPS: usize = 16;

/// Columns (output pixels over all images of a block) below which images share one product.
/// A RoI head's 4x4 maps gave gemm 16 columns per image: each call packed the whole weight (and,
/// for the weight gradient, read and wrote the whole accumulator) to multiply it by a sliver,
/// which made `layer4` on 128 regions most of a detector's step. Blocks of images, side by side
/// in one patch matrix, give it at least this many (`detseg_kernels_bench roi-head` with
/// `AFAN_CONV_BLOCK_COLUMNS` = 1 / 256 / 512 / 1024: the 4x4 convolutions' weight gradient took
/// 565 / 416 / 300 / 344 ms at load ~10, forward and input gradient 1.3x faster from 256 on).
pub const BLOCK_COLUMNS: usize = 512;

/// Images whose patch matrices go side by side into one product: a function of the shapes only,
/// so that every sum keeps its order whatever the thread count. `AFAN_CONV_BLOCK_COLUMNS`
/// replaces [`BLOCK_COLUMNS`] (to time other sizes with one binary; 1 gives one image per
/// product).
pub fn images_per_block(g: &ConvGeom) -> usize {
    static COLUMNS: OnceLock<usize> = OnceLock::new();
    let columns = *COLUMNS.get_or_init(|| env_or("AFAN_CONV_BLOCK_COLUMNS", BLOCK_COLUMNS));
    (columns / g.out_pixels().max(1)).clamp(1, g.batch.max(1))
}

/// Inner dimension (output pixels over the batch) up to which the weight gradient's products
/// write it in its final `[K, C/G*kh*kw]` layout ([`DwLayout::Final`]). With few columns the
/// products are short and the separate transpose was a whole extra pass over the weights:
/// DeepLabV3+ ResNet-50 at 129x129, batch 2 (162 columns in `layer3`, `layer4`, ASPP) spent ~10%
/// of its step transposing, and `layer4`'s 3x3 backward took 25-32 ms instead of 39-53 ms
/// written in place (docs/benchmarks.md, issue 19's fourth fix). With many columns (batch-128
/// classification, a detector's 600x800 backbone) the transpose is amortised and gemm's packing
/// favours the transposed order (see `weight_grad_image`), so those keep it.
pub const DW_FINAL_COLUMNS: usize = 1024;

/// Where the weight gradient's products leave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DwLayout {
    /// `[C/G*kh*kw, K/G]` per group, transposed at the end.
    Transposed,
    /// `[K/G, C/G*kh*kw]` per group (gemm writes a column-major destination): no transpose.
    Final,
}

impl DwLayout {
    /// [`DwLayout::Final`] up to [`DW_FINAL_COLUMNS`] columns; `AFAN_CONV_DW_FINAL_COLUMNS`
    /// replaces it (to time both with one binary; 0 always transposes).
    pub fn choose(g: &ConvGeom) -> Self {
        static COLUMNS: OnceLock<usize> = OnceLock::new();
        let columns =
            *COLUMNS.get_or_init(|| env_or("AFAN_CONV_DW_FINAL_COLUMNS", DW_FINAL_COLUMNS));
        if g.batch * g.out_pixels() <= columns {
            Self::Final
        } else {
            Self::Transposed
        }
    }
}

/// Patch-matrix bytes above which one image's convolution is done in bands of output rows
/// ([`band_rows`]). A detector's 600x800 image gave layer1's 3x3 convolutions a 70 MB patch
/// matrix (the stem's 7x7 more): written once by im2col and streamed back from memory by gemm's
/// packing. A band's patch matrix stays in the 2 MiB L2: im2col writes it, gemm reads it back at
/// once and writes the band's columns of the output (whose row stride stays the full pixel
/// count), and the weight gradient adds each band's product in band order, a function of the
/// shapes only (docs/benchmarks.md, issue 19's ninth fix).
pub const BAND_BYTES: usize = 1 << 20;

/// Output pixels a band holds at least, whatever the byte budget: thinner bands left gemm too
/// short a product (`layer3`'s 38x50 maps in bands of two rows were ~8% slower than unbanded).
pub const BAND_MIN_COLUMNS: usize = 512;

/// How large images are cut into bands of output rows ([`band_rows`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Band {
    /// Patch-matrix bytes a band may take; 0 never bands.
    pub bytes: usize,
    /// Output pixels a band holds at least.
    pub min_columns: usize,
}

impl Band {
    /// No bands.
    pub const OFF: Self = Self {
        bytes: 0,
        min_columns: 0,
    };

    /// [`BAND_BYTES`] and [`BAND_MIN_COLUMNS`], or `AFAN_CONV_BAND_BYTES` and
    /// `AFAN_CONV_BAND_MIN_COLUMNS` (to time other sizes with one binary; bytes 0 never bands).
    pub fn chosen() -> Self {
        static BAND: OnceLock<Band> = OnceLock::new();
        *BAND.get_or_init(|| Band {
            bytes: env_or("AFAN_CONV_BAND_BYTES", BAND_BYTES),
            min_columns: env_or("AFAN_CONV_BAND_MIN_COLUMNS", BAND_MIN_COLUMNS),
        })
    }
}

/// Output rows per band for one image (one group) of `g`: as many as `band.bytes` of patch
/// matrix hold, but at least one and `band.min_columns` pixels; all of them (one band) when the
/// whole patch matrix fits, when `band.bytes` is 0, or for a pointwise convolution (no patch
/// matrix).
pub fn band_rows(g: &ConvGeom, band: Band) -> usize {
    let [oh, ow] = g.out_hw();
    let row_bytes = g.patch() * ow * size_of::<f32>();
    if band.bytes == 0 || g.is_pointwise() || row_bytes * oh <= band.bytes {
        return oh.max(1);
    }
    (band.bytes / row_bytes.max(1))
        .max(band.min_columns.div_ceil(ow.max(1)))
        .clamp(1, oh)
}

/// The bands `(r0, r1)` of output rows, `rows` at a time, in order.
fn bands(oh: usize, rows: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..oh)
        .step_by(rows.max(1))
        .map(move |r0| (r0, (r0 + rows).min(oh)))
}

/// How each product uses the pool: gemm's own threads when there are fewer independent pieces
/// of work (blocks of images, or groups of them) than threads, else none (the pieces run in
/// parallel). A detector's backbone and DeepLab's steps convolve one or two images: one product
/// per image left all but one or two threads idle. gemm splits its work over rows and columns of
/// the output, never along the inner dimension, so every sum is the same either way
/// (kernel_tests compares 1 and 3 threads bit for bit).
fn inner_parallelism(pieces: usize) -> Parallelism {
    if pieces < rayon::current_num_threads() {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    }
}

/// Whether a piece run with `par` is alone on the pool (its product gets the pool's threads),
/// so that its im2col / col2im may split channels over the pool too
/// (`patches::split_channels`).
fn alone(par: Parallelism) -> bool {
    matches!(par, Parallelism::Rayon(_))
}

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

/// `dst[m x n] (+)= lhs[m x k] * rhs[k x n]`, row-major `dst`, on gemm's threads by `par`
/// ([`inner_parallelism`]). With `accumulate` false `dst` is only written, so it may be
/// uninitialised.
fn matmul(
    dst: &mut [MaybeUninit<f32>],
    dims: [usize; 3],
    lhs: Mat,
    rhs: Mat,
    accumulate: bool,
    par: Parallelism,
) {
    matmul_to(dst, false, dims, lhs, rhs, accumulate, par)
}

/// [`matmul`], `dst` column-major when `col_major` (element `(i, j)` at `j * m + i`).
fn matmul_to(
    dst: &mut [MaybeUninit<f32>],
    col_major: bool,
    [m, n, k]: [usize; 3],
    lhs: Mat,
    rhs: Mat,
    accumulate: bool,
    par: Parallelism,
) {
    assert_eq!(dst.len(), m * n);
    let (dst_cs, dst_rs) = if col_major { (m, 1) } else { (1, n) };
    matmul_strided(dst, (dst_cs, dst_rs), [m, n, k], lhs, rhs, accumulate, par)
}

/// [`matmul`] into `n` columns of a wider row-major `dst` whose rows are `ld` apart (a band of
/// an image's output pixels).
fn matmul_band(
    dst: &mut [MaybeUninit<f32>],
    ld: usize,
    dims: [usize; 3],
    lhs: Mat,
    rhs: Mat,
    par: Parallelism,
) {
    matmul_strided(dst, (1, ld), dims, lhs, rhs, false, par)
}

/// `dst (+)= lhs * rhs` with `dst`'s element `(i, j)` at `i * rs + j * cs`.
fn matmul_strided(
    dst: &mut [MaybeUninit<f32>],
    (dst_cs, dst_rs): (usize, usize),
    [m, n, k]: [usize; 3],
    lhs: Mat,
    rhs: Mat,
    accumulate: bool,
    par: Parallelism,
) {
    if m > 0 && n > 0 {
        assert!(
            dst.len() > (m - 1) * dst_rs + (n - 1) * dst_cs,
            "destination too short"
        );
    }
    // SAFETY: `dst` holds every element `(i, j)` at `i * dst_rs + j * dst_cs` (asserted above),
    // which the product writes (and reads only when `accumulate`, where the callers pass
    // initialised memory); the callers build `lhs` and `rhs` from slices of `m * k` and `k * n`
    // initialised elements with matching strides.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().cast::<f32>(),
            dst_cs as isize,
            dst_rs as isize,
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
            par,
        );
    }
}

/// Runs `f` on the band of output rows `r0..r1` of image `x_n`'s patch matrix (`[C*kh*kw,
/// (r1-r0)*OW]`; `g` ungrouped, `x_n` one group's channels) and its column count: the image's
/// own pixels for a pointwise convolution, else im2col's copy in this thread's scratch.
fn with_patches<R>(
    g: &ConvGeom,
    x_n: &[f32],
    (r0, r1): (usize, usize),
    alone: bool,
    f: impl FnOnce(Mat, usize) -> R,
) -> R {
    let ow = g.out_hw()[1];
    let cols = (r1 - r0) * ow;
    if g.is_pointwise() {
        return f(Mat::rows(&x_n[r0 * ow..], g.out_pixels()), cols);
    }
    with_scratch(Scratch::Col, g.patch() * cols, |col| {
        im2col_rows(g, x_n, col, cols, (r0, r1), alone);
        f(Mat::written(col, cols), cols)
    })
}

/// The parts of one image, its weight or its output that belong to each group, in order.
struct Groups {
    /// Elements of one group's input channels, output channels and weights.
    input: usize,
    output: usize,
    weight: usize,
}

impl Groups {
    fn of(g: &ConvGeom) -> Self {
        let one = g.one_group();
        Self {
            input: one.in_len(),
            output: one.out_len(),
            weight: g.group_out() * g.patch(),
        }
    }
}

/// One image of the forward convolution: per group, `y_n [K/G, OH*OW] = W [K/G, C/G*kh*kw] *
/// col(x_n)`, every element of `y_n` written; in bands of output rows ([`band_rows`] of
/// `budget`; one band when the patch matrix fits).
fn forward_image(
    g: &ConvGeom,
    x_n: &[f32],
    w: &[f32],
    y_n: &mut [MaybeUninit<f32>],
    (par, budget): (Parallelism, Band),
) {
    let (patch, pixels) = (g.patch(), g.out_pixels());
    let (one, parts) = (g.one_group(), Groups::of(g));
    let [oh, ow] = g.out_hw();
    let rows = band_rows(g, budget);
    let chunks = y_n
        .chunks_mut(parts.output.max(1))
        .zip(x_n.chunks(parts.input.max(1)))
        .zip(w.chunks(parts.weight.max(1)));
    for ((y_g, x_g), w_g) in chunks.take(g.groups) {
        let lhs = Mat::rows(w_g, patch);
        for (r0, r1) in bands(oh, rows) {
            let cols = (r1 - r0) * ow;
            let ld = band_columns(&one, cols, par);
            if ld == cols {
                with_patches(&one, x_g, (r0, r1), alone(par), |rhs, cols| {
                    let dims = [g.group_out(), cols, patch];
                    matmul_band(&mut y_g[r0 * ow..], pixels, dims, lhs, rhs, par)
                });
                continue;
            }
            let dims = [g.group_out(), ld, patch];
            with_padded_patches(&one, x_g, (r0, r1), (ld, alone(par)), |rhs| {
                if r0 * ow + ld <= pixels {
                    // The padding columns' products land on the next band's first pixels of
                    // each row, which that band (later in this loop) overwrites.
                    matmul_band(&mut y_g[r0 * ow..], pixels, dims, lhs, rhs, par)
                } else {
                    // The last band: its padding would reach the next row's first band.
                    with_scratch(Scratch::Out, g.group_out() * ld, |out| {
                        matmul(out, dims, lhs, rhs, false, par);
                        for (k, dst) in y_g.chunks_mut(pixels.max(1)).enumerate() {
                            dst[r0 * ow..r1 * ow].copy_from_slice(&out[k * ld..][..cols]);
                        }
                    })
                }
            });
        }
    }
}

/// The row length of a band's patch matrix in [`forward_image`]: `cols` rounded up as
/// [`padded_columns`] rounds a block's when the product gets gemm's threads (not for a pointwise
/// convolution, whose patch matrix is the image itself), else `cols`.
///
/// Why: one large image (a detector's batch-1 backbone, and the input-gradient convolutions of
/// its backward pass) is one piece of work, so its bands' products get gemm's threads; with a
/// band's column count not a multiple of gemm's SIMD width (600 for the 3x3 convolutions of
/// `layer1` and `layer2` at 600x800), gemm packed each band's whole patch matrix on the calling
/// thread while the pool waited ([`padded_columns`]): the main thread's packing was ~3% of the
/// detection baseline's samples at 2 threads (0.5% with the padding), gemm's threads waiting for
/// it before each band's product. The zero columns' products
/// are never read: they go to the next band's pixels (written after) or, for the last band, to
/// scratch, whose band columns are then copied out. Sums are unchanged (gemm's blocking of the
/// inner dimension depends on it alone: kernel_tests compares 1 and 3 threads bit for bit).
/// `AFAN_CONV_PAD_BANDS=0` turns it off (for timing both with one binary).
fn band_columns(g: &ConvGeom, cols: usize, par: Parallelism) -> usize {
    static ON: OnceLock<bool> = OnceLock::new();
    let on = *ON.get_or_init(|| crate::flex::env_switch("AFAN_CONV_PAD_BANDS", true));
    if on && !g.is_pointwise() {
        padded_columns(cols, par)
    } else {
        cols
    }
}

/// [`with_patches`] for a convolution with a patch matrix (not pointwise), its rows `ld >=
/// (r1-r0)*OW` apart and the columns past the band's zero.
fn with_padded_patches<R>(
    g: &ConvGeom,
    x_n: &[f32],
    (r0, r1): (usize, usize),
    (ld, alone): (usize, bool),
    f: impl FnOnce(Mat) -> R,
) -> R {
    let cols = (r1 - r0) * g.out_hw()[1];
    with_scratch(Scratch::Col, g.patch() * ld, |col| {
        im2col_rows(g, x_n, col, ld, (r0, r1), alone);
        for row in col.chunks_mut(ld.max(1)) {
            row[cols..].fill(MaybeUninit::new(0.0));
        }
        f(Mat::written(col, ld))
    })
}

/// The patch matrices of one group's channels of several images side by side: image `n`'s in
/// columns `n*OH*OW..`, rows `ld` apart; columns past the images' (`ld` may be wider,
/// [`padded_columns`]) are zero. `g` is ungrouped; `x_g(n)` is image `n`'s channels; `alone`:
/// the block is alone on the pool ([`alone`]).
fn block_patches<'a>(
    g: &ConvGeom,
    images: usize,
    x_g: impl Fn(usize) -> &'a [f32],
    col: &mut [MaybeUninit<f32>],
    (ld, alone): (usize, bool),
) {
    let pixels = g.out_pixels();
    let cols = images * pixels;
    for n in 0..images {
        let dst = &mut col[n * pixels..];
        if g.is_pointwise() {
            for (c, src) in x_g(n).chunks(pixels.max(1)).enumerate() {
                dst[c * ld..c * ld + pixels].write_copy_of_slice(src);
            }
        } else {
            im2col(g, x_g(n), dst, ld, alone);
        }
    }
    if ld > cols {
        for row in col.chunks_mut(ld).take(g.patch()) {
            row[cols..].fill(MaybeUninit::new(0.0));
        }
    }
}

/// SIMD lanes that [`padded_columns`] rounds to: 16 `f32`s (AVX-512; a multiple of AVX2's 8).
const PAD_COLUMNS: usize = 16;

/// The row length of a block's patch matrix and output: `cols` rounded up to a multiple of
/// [`PAD_COLUMNS`] when the product gets gemm's threads (`par`), else `cols`.
///
/// Why: gemm (which transposes a row-major product) packs the whole patch matrix on the
/// calling thread, before its threads start, whenever the column count is not a multiple of its
/// SIMD width ("prepacked lhs"); with the column count a multiple, each thread packs or reads its
/// own part. DeepLabV3+'s two 17x17 (or 9x9) maps in one block (578 or 162 columns) had their
/// `layer3`, `layer4` and ASPP patch matrices repacked by the main thread alone while the pool
/// waited (a per-thread profile, issue 19). The zero columns cost a few percent more
/// multiply-adds and are not copied out; every other column's sum is the same (gemm's blocking of
/// the inner dimension depends on it alone), so results do not change. `AFAN_CONV_PAD_COLUMNS`
/// replaces the width (1 turns it off; for timing both with one binary).
fn padded_columns(cols: usize, par: Parallelism) -> usize {
    static LANES: OnceLock<usize> = OnceLock::new();
    let lanes = *LANES.get_or_init(|| env_or("AFAN_CONV_PAD_COLUMNS", PAD_COLUMNS).max(1));
    match par {
        Parallelism::None => cols,
        _ => cols.next_multiple_of(lanes),
    }
}

/// `dst = src` for one image's plane of a block: fixed sizes for the small planes blocks are
/// made of (a RoI head's 4x4 and 7x7, DeepLabV3+'s 9x9 at 129x129), which the compiler copies
/// with a few vector moves; a `memcpy` call per 16-element plane was 1.4% of the detection
/// baseline's samples at 1 thread (a caller-resolved profile). Other sizes, and
/// `AFAN_CONV_SMALL_PATCHES=0`, call `copy_from_slice`.
fn copy_plane(dst: &mut [MaybeUninit<f32>], src: &[MaybeUninit<f32>]) {
    fn fixed<const N: usize>(dst: &mut [MaybeUninit<f32>], src: &[MaybeUninit<f32>]) {
        match (
            <&mut [MaybeUninit<f32>; N]>::try_from(&mut *dst),
            <&[MaybeUninit<f32>; N]>::try_from(src),
        ) {
            (Ok(d), Ok(s)) => *d = *s,
            _ => dst.copy_from_slice(src),
        }
    }
    if !super::small_patches::small_planes_on() {
        return dst.copy_from_slice(src);
    }
    match (dst.len(), src.len()) {
        (16, 16) => fixed::<16>(dst, src),
        (49, 49) => fixed::<49>(dst, src),
        (81, 81) => fixed::<81>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

/// One group's output gradient of several images side by side (`[K/G, images*OH*OW]`), the
/// right-hand side of the block products of the backward pass.
fn block_rows<'a>(
    rows: usize,
    pixels: usize,
    images: usize,
    src: impl Fn(usize) -> &'a [f32],
    dst: &mut [MaybeUninit<f32>],
) {
    let cols = images * pixels;
    for n in 0..images {
        for (k, row) in src(n).chunks(pixels.max(1)).take(rows).enumerate() {
            dst[k * cols + n * pixels..][..pixels].write_copy_of_slice(row);
        }
    }
}

/// The forward convolution of a block of images (`x_b`, `y_b` hold whole images), every element
/// of `y_b` written: one product per group over all of them, then each image's rows moved to
/// their NCHW place.
fn forward_block(
    g: &ConvGeom,
    x_b: &[f32],
    w: &[f32],
    y_b: &mut [MaybeUninit<f32>],
    (par, budget): (Parallelism, Band),
) {
    let images = y_b.len() / g.out_len().max(1);
    if images <= 1 {
        return forward_image(g, x_b, w, y_b, (par, budget));
    }
    let (patch, pixels) = (g.patch(), g.out_pixels());
    let (one, parts) = (g.one_group(), Groups::of(g));
    let (in_len, out_len, cols) = (g.in_len(), g.out_len(), images * pixels);
    for (grp, w_g) in w.chunks(parts.weight.max(1)).take(g.groups).enumerate() {
        let x_g = |n: usize| &x_b[n * in_len + grp * parts.input..][..parts.input];
        let ld = padded_columns(cols, par);
        with_scratch(Scratch::Col, patch * ld, |col| {
            block_patches(&one, images, x_g, col, (ld, alone(par)));
            with_scratch(Scratch::Out, g.group_out() * ld, |out| {
                let rhs = Mat::written(col, ld);
                matmul(
                    out,
                    [g.group_out(), ld, patch],
                    Mat::rows(w_g, patch),
                    rhs,
                    false,
                    par,
                );
                for n in 0..images {
                    let y_n = &mut y_b[n * out_len + grp * parts.output..][..parts.output];
                    for (k, dst) in y_n.chunks_mut(pixels.max(1)).enumerate() {
                        copy_plane(dst, &out[k * ld + n * pixels..][..pixels]);
                    }
                }
            })
        });
    }
}

/// Forward convolution: `x [N, C, H, W]`, `w [K, C/G, kh, kw]` -> `[N, K, OH, OW]` (depthwise
/// convolutions by [`super::depthwise`]).
pub fn conv2d_forward(g: &ConvGeom, x: &[f32], w: &[f32]) -> Vec<f32> {
    if is_depthwise(g) {
        return depthwise_forward(g, x, w);
    }
    let mut y = uninit_vec(g.batch * g.out_len());
    conv2d_forward_into(g, x, w, &mut y);
    // SAFETY: `conv2d_forward_into` writes every element (`forward_image` writes all of each
    // image's output; kernel_tests poisons the output and the scratch to check it).
    unsafe { assume_init(y) }
}

/// [`conv2d_forward`] into `y`, every element of which it writes.
pub(super) fn conv2d_forward_into(g: &ConvGeom, x: &[f32], w: &[f32], y: &mut [MaybeUninit<f32>]) {
    conv2d_forward_banded(g, x, w, y, Band::chosen())
}

/// [`conv2d_forward_into`] in bands of output rows by `budget` ([`band_rows`]).
pub(super) fn conv2d_forward_banded(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    y: &mut [MaybeUninit<f32>],
    budget: Band,
) {
    assert_eq!(y.len(), g.batch * g.out_len());
    let nb = images_per_block(g);
    let par = inner_parallelism(g.batch.div_ceil(nb));
    y.par_chunks_mut(g.out_len().max(1) * nb)
        .zip(x.par_chunks(g.in_len().max(1) * nb))
        .for_each(|(y_b, x_b)| forward_block(g, x_b, w, y_b, (par, budget)));
    release_large(g.patch() * g.out_pixels() * nb * size_of::<f32>());
}

/// The input gradient of one image by `route`, every element of `dx_n` written. `w_conv` is the
/// flipped, transposed weight when the route is [`InputRoute::Conv`] (ungrouped only).
fn input_grad_image(
    g: &ConvGeom,
    route: InputRoute,
    w: &[f32],
    w_conv: &[f32],
    dy_n: &[f32],
    dx_n: &mut [MaybeUninit<f32>],
    (par, budget): (Parallelism, Band),
) {
    let (patch, pixels) = (g.patch(), g.out_pixels());
    let dims = [patch, pixels, g.group_out()];
    let (one, parts) = (g.one_group(), Groups::of(g));
    let groups = || {
        dy_n.chunks(parts.output.max(1))
            .zip(w.chunks(parts.weight.max(1)))
            .take(g.groups)
    };
    if g.is_pointwise() {
        for (dx_g, (dy_g, w_g)) in dx_n.chunks_mut(parts.input.max(1)).zip(groups()) {
            matmul(
                dx_g,
                dims,
                Mat::transposed(w_g, patch),
                Mat::rows(dy_g, pixels),
                false,
                par,
            );
        }
        return;
    }
    match (route, g.input_grad_conv()) {
        (InputRoute::Conv, Some(gt)) => forward_image(&gt, dy_n, w_conv, dx_n, (par, budget)),
        (InputRoute::Conv, None) => panic!("no input-gradient convolution for {g:?}"),
        (InputRoute::Col2im, _) => {
            dx_n.fill(MaybeUninit::new(0.0));
            // SAFETY: just filled.
            let dx_n = unsafe { dx_n.assume_init_mut() };
            let [oh, ow] = g.out_hw();
            let rows = band_rows(g, budget);
            for (dx_g, (dy_g, w_g)) in dx_n.chunks_mut(parts.input.max(1)).zip(groups()) {
                // Bands of output rows (one band when the patch matrix fits): the band's
                // columns of `dy_g` (rows `pixels` apart) make the band's patch gradient.
                for (r0, r1) in bands(oh, rows) {
                    let cols = (r1 - r0) * ow;
                    with_scratch(Scratch::Dcol, patch * cols, |dcol| {
                        let lhs = Mat::transposed(w_g, patch);
                        let rhs = Mat::rows(&dy_g[r0 * ow..], pixels);
                        let dims = [patch, cols, g.group_out()];
                        matmul(dcol, dims, lhs, rhs, false, par);
                        // SAFETY: the product above wrote all `patch * cols` elements.
                        let dcol = unsafe { dcol.assume_init_mut() };
                        col2im_rows(&one, dcol, cols, dx_g, (r0, r1), alone(par));
                    });
                }
            }
        }
    }
}

/// Adds one image's weight gradient onto `dwt`, in `layout` (transposed: `G x [C/G*kh*kw,
/// K/G]`): `dwt_g += col(x_n,g) * dy_n,g^T` (`dwt_g = ...` when not `add`: `dwt` may then be
/// uninitialised). Transposed, gemm packs the small `dy_n` and streams the patch matrix along its
/// rows, as im2col wrote it; `dw += dy_n * col^T` made it gather the patch matrix across rows
/// (which pays off only with few columns: [`DW_FINAL_COLUMNS`]). A large patch matrix goes in
/// bands of output rows ([`band_rows`] of `budget`), each band's product added in band order.
fn weight_grad_image(
    g: &ConvGeom,
    x_n: &[f32],
    dy_n: &[f32],
    (dwt, layout): (&mut [MaybeUninit<f32>], DwLayout),
    add: bool,
    (par, budget): (Parallelism, Band),
) {
    let (patch, pixels) = (g.patch(), g.out_pixels());
    let (one, parts) = (g.one_group(), Groups::of(g));
    let groups = dwt
        .chunks_mut(parts.weight.max(1))
        .zip(x_n.chunks(parts.input.max(1)))
        .zip(dy_n.chunks(parts.output.max(1)));
    let col_major = layout == DwLayout::Final;
    let [oh, ow] = g.out_hw();
    let rows = band_rows(g, budget);
    for ((dwt_g, x_g), dy_g) in groups.take(g.groups) {
        for (r0, r1) in bands(oh, rows) {
            // The band's columns of `dy_g`, transposed: element (p, k) at `p + k * pixels`.
            let rhs = Mat::transposed(&dy_g[r0 * ow..], pixels);
            with_patches(&one, x_g, (r0, r1), alone(par), |lhs, cols| {
                let dims = [patch, g.group_out(), cols];
                matmul_to(dwt_g, col_major, dims, lhs, rhs, add || r0 > 0, par)
            });
        }
    }
}

/// The input gradient of a block of images (`dy_b`, `dx_b` hold whole images) by `route`,
/// every element of `dx_b` written.
fn input_grad_block(
    g: &ConvGeom,
    route: InputRoute,
    w: &[f32],
    w_conv: &[f32],
    dy_b: &[f32],
    dx_b: &mut [MaybeUninit<f32>],
    run: (Parallelism, Band),
) {
    let images = dx_b.len() / g.in_len().max(1);
    if images <= 1 {
        return input_grad_image(g, route, w, w_conv, dy_b, dx_b, run);
    }
    if let (InputRoute::Conv, Some(gt)) = (route, g.input_grad_conv()) {
        return forward_block(&gt, dy_b, w_conv, dx_b, run);
    }
    let par = run.0;
    let (patch, pixels) = (g.patch(), g.out_pixels());
    let (one, parts) = (g.one_group(), Groups::of(g));
    let (in_len, out_len, cols) = (g.in_len(), g.out_len(), images * pixels);
    dx_b.fill(MaybeUninit::new(0.0));
    // SAFETY: just filled.
    let dx_b = unsafe { dx_b.assume_init_mut() };
    for (grp, w_g) in w.chunks(parts.weight.max(1)).take(g.groups).enumerate() {
        let dy_g = |n: usize| &dy_b[n * out_len + grp * parts.output..][..parts.output];
        with_scratch(Scratch::Out, g.group_out() * cols, |rows| {
            block_rows(g.group_out(), pixels, images, dy_g, rows);
            with_scratch(Scratch::Dcol, patch * cols, |dcol| {
                let (lhs, rhs) = (Mat::transposed(w_g, patch), Mat::written(rows, cols));
                matmul(dcol, [patch, cols, g.group_out()], lhs, rhs, false, par);
                // SAFETY: the product above wrote all `patch * cols` elements.
                let dcol = unsafe { dcol.assume_init_mut() };
                for n in 0..images {
                    let dx_n = &mut dx_b[n * in_len + grp * parts.input..][..parts.input];
                    if one.is_pointwise() {
                        for (c, dst) in dx_n.chunks_mut(pixels.max(1)).enumerate() {
                            dst.copy_from_slice(&dcol[c * cols + n * pixels..][..pixels]);
                        }
                    } else {
                        col2im(&one, &mut dcol[n * pixels..], cols, dx_n, alone(par));
                    }
                }
            })
        });
    }
}

/// Adds the weight gradient of a block of images onto `dwt`, or writes it there when not `add`
/// (transposed per group, as [`weight_grad_image`]): one product per group over all of them.
fn weight_grad_block(
    g: &ConvGeom,
    x_b: &[f32],
    dy_b: &[f32],
    (dwt, layout): (&mut [MaybeUninit<f32>], DwLayout),
    add: bool,
    run: (Parallelism, Band),
) {
    let images = dy_b.len() / g.out_len().max(1);
    if images <= 1 {
        return weight_grad_image(g, x_b, dy_b, (dwt, layout), add, run);
    }
    let par = run.0;
    let (patch, pixels) = (g.patch(), g.out_pixels());
    let (one, parts) = (g.one_group(), Groups::of(g));
    let (in_len, out_len, cols) = (g.in_len(), g.out_len(), images * pixels);
    for (grp, dwt_g) in dwt
        .chunks_mut(parts.weight.max(1))
        .take(g.groups)
        .enumerate()
    {
        let x_g = |n: usize| &x_b[n * in_len + grp * parts.input..][..parts.input];
        let dy_g = |n: usize| &dy_b[n * out_len + grp * parts.output..][..parts.output];
        with_scratch(Scratch::Col, patch * cols, |col| {
            block_patches(&one, images, x_g, col, (cols, alone(par)));
            with_scratch(Scratch::Out, g.group_out() * cols, |rows| {
                block_rows(g.group_out(), pixels, images, dy_g, rows);
                // SAFETY: `block_rows` wrote all `K/G * cols` elements.
                let rows = unsafe { rows.assume_init_ref() };
                let (lhs, rhs) = (Mat::written(col, cols), Mat::transposed(rows, cols));
                let dims = [patch, g.group_out(), cols];
                let col_major = layout == DwLayout::Final;
                matmul_to(dwt_g, col_major, dims, lhs, rhs, add, par);
            })
        });
    }
}

/// Gradients of a convolution with respect to its input and/or its weight, from the output
/// gradient `dy [N, K, OH, OW]`, the input gradient by [`InputRoute::choose`] (depthwise
/// convolutions by [`super::depthwise`]).
pub fn conv2d_backward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    need: [bool; 2],
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    conv2d_backward_flipping(g, x, w, dy, need, || Arc::new(flip_transpose(g, w)))
}

/// [`conv2d_backward`] with the flipped, transposed weight ([`InputRoute::Conv`]) from `flipped`
/// (called only when that route needs it): [`super::flipped`]'s cache of a scope.
pub(super) fn conv2d_backward_flipping(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    need: [bool; 2],
    flipped: impl FnOnce() -> Arc<Vec<f32>>,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    if is_depthwise(g) {
        return depthwise_backward(g, x, w, dy, need);
    }
    backward_by(g, InputRoute::choose(g), x, w, dy, need, flipped)
}

/// [`conv2d_backward`] with the input gradient by `route` (through im2col and gemm, grouped or
/// not). Both gradients share one pass over the batch, image by image, so that each image's data
/// is read while in cache.
pub fn conv2d_backward_by(
    g: &ConvGeom,
    route: InputRoute,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    need: [bool; 2],
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    backward_by(g, route, x, w, dy, need, || Arc::new(flip_transpose(g, w)))
}

/// [`conv2d_backward_by`] with the flipped weight from `flipped` (called only when `route` is
/// [`InputRoute::Conv`] and the input gradient is asked for).
fn backward_by(
    g: &ConvGeom,
    route: InputRoute,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    [need_x, need_w]: [bool; 2],
    flipped: impl FnOnce() -> Arc<Vec<f32>>,
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let mut dx = uninit_vec(if need_x { x.len() } else { 0 });
    let w_conv = match route {
        InputRoute::Conv if need_x => flipped(),
        _ => Arc::default(),
    };
    let layout = DwLayout::choose(g);
    let dwt = backward_into(
        g,
        (route, layout, Band::chosen()),
        x,
        w,
        &w_conv,
        dy,
        [need_x, need_w],
        &mut dx,
    );
    let scratch = match route {
        InputRoute::Conv => g.out_ch * g.kernel[0] * g.kernel[1] * g.in_hw[0] * g.in_hw[1],
        InputRoute::Col2im => g.patch() * g.out_pixels(),
    };
    let nb = images_per_block(g);
    release_large(scratch.max(g.patch() * g.out_pixels()) * nb * size_of::<f32>());
    // SAFETY: `backward_into` writes every element of `dx` when `need_x` (`input_grad_image`
    // writes all of each image's gradient; kernel_tests poisons the output to check it).
    let dx = need_x.then(|| unsafe { assume_init(dx) });
    let dw = need_w.then(|| {
        if layout == DwLayout::Final {
            return dwt;
        }
        let part = (g.group_out() * g.patch()).max(1);
        let mut dw = uninit_vec(dwt.len());
        for (dwt_g, dw_g) in dwt.chunks(part).zip(dw.chunks_mut(part)) {
            transpose_into(dwt_g, g.patch(), g.group_out(), dw_g);
        }
        // SAFETY: the groups cover `dw`, and `transpose_into` writes every element of each.
        unsafe { assume_init(dw) }
    });
    (dx, dw)
}

/// The pass over the batch of [`conv2d_backward_by`]: writes `dx` (when asked) and returns the
/// weight gradient in `layout` (empty when not asked). Images go in fixed groups of whole blocks
/// ([`images_per_block`]), a function of the shapes only: each group sums its blocks' weight
/// gradients in order and the groups are summed in group order, so the result does not depend on
/// how rayon schedules the work (per-thread accumulators did, and a resumed run then differed
/// from an uninterrupted one). Large images go in bands by `budget` ([`band_rows`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_into(
    g: &ConvGeom,
    (route, layout, budget): (InputRoute, DwLayout, Band),
    x: &[f32],
    w: &[f32],
    w_conv: &[f32],
    dy: &[f32],
    [need_x, need_w]: [bool; 2],
    dx: &mut [MaybeUninit<f32>],
) -> Vec<f32> {
    let w_len = g.out_ch * g.patch();
    let (in_len, out_len) = (g.in_len().max(1), g.out_len().max(1));
    // Whole blocks per group, so that a block's product never straddles two groups.
    let nb = images_per_block(g);
    let per = g.batch.div_ceil(nb).div_ceil(WEIGHT_GRAD_GROUPS).max(1) * nb;
    let par = inner_parallelism(g.batch.div_ceil(per));
    let group = |dx_g: &mut [MaybeUninit<f32>], x_g: &[f32], dy_g: &[f32]| {
        // Written by the group's first block, added to by the others (a zero-filled accumulator
        // was one more pass over every weight per group).
        let mut dwt = uninit_vec(if need_w { w_len } else { 0 });
        let blocks = x_g.chunks(in_len * nb).zip(dy_g.chunks(out_len * nb));
        for (i, (x_b, dy_b)) in blocks.enumerate() {
            if need_x {
                let dx_b = &mut dx_g[i * in_len * nb..][..x_b.len()];
                input_grad_block(g, route, w, w_conv, dy_b, dx_b, (par, budget));
            }
            if need_w {
                weight_grad_block(g, x_b, dy_b, (&mut dwt, layout), i > 0, (par, budget));
            }
        }
        // SAFETY: a group holds at least one block (chunks are never empty), whose products
        // wrote every element of `dwt` when `need_w`; otherwise `dwt` is empty.
        unsafe { assume_init(dwt) }
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
    let rest: Vec<Vec<f32>> = partial.collect();
    sum_partials(&mut dwt, &rest);
    dwt
}

/// Elements of the weight gradient per task of [`sum_partials`]: 64 KB, which stays in L2 while
/// every partial sum is added onto it.
pub(super) const SUM_CHUNK: usize = 1 << 14;

/// `acc += rest[0] + rest[1] + ...`, each element's additions in `rest`'s order (as a serial
/// loop over `rest` adds them), in chunks of [`SUM_CHUNK`] elements over rayon's pool: the
/// result does not depend on the split.
///
/// Why: a RoI head's `layer4` on 128 regions (7x7 maps, ten regions a block) has 13 groups of
/// blocks, so its weight gradients came back as 13 partial sums of up to 2.4M weights each; the
/// main thread added them one after the other, streaming the whole gradient through memory once
/// per partial, while the pool waited (`backward_into`, the main thread alone, in the detection
/// baseline's per-thread profile at 2 threads). Chunk by chunk, a chunk stays in cache across
/// the partials, and the chunks go to the pool. `AFAN_CONV_SUM_CHUNKS=0` adds the partials one
/// after the other on the calling thread, as before (for timing both with one binary).
pub(super) fn sum_partials(acc: &mut [f32], rest: &[Vec<f32>]) {
    static ON: OnceLock<bool> = OnceLock::new();
    if !*ON.get_or_init(|| crate::flex::env_switch("AFAN_CONV_SUM_CHUNKS", true)) {
        for p in rest {
            for (a, b) in acc.iter_mut().zip(p) {
                *a += b;
            }
        }
        return;
    }
    let chunk = |(i, acc): (usize, &mut [f32])| {
        for p in rest {
            for (a, b) in acc.iter_mut().zip(&p[i * SUM_CHUNK..]) {
                *a += b;
            }
        }
    };
    if rest.is_empty() {
        return;
    }
    if acc.len() > SUM_CHUNK {
        acc.par_chunks_mut(SUM_CHUNK).enumerate().for_each(chunk);
    } else {
        chunk((0, acc));
    }
}
