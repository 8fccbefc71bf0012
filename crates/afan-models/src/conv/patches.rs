//! im2col and col2im on one NCHW image (or one group's channels of it): the patch matrix
//! `[C*kh*kw, OH*OW]` whose product with the weight is the convolution, and the scatter of its
//! gradient back onto the image. Dilated kernels read their taps `dilation` apart; nothing else
//! changes.
//!
//! Both walk the patch matrix one row (channel, kernel offset) at a time, after working out once
//! per image where each kernel offset reads ([`Tap`]; computing it per row put integer divisions
//! in the loop). When the output plane is as wide as the input (stride 1, "same" padding: every
//! 3x3 stride-1 layer of a ResNet), a patch row is the input plane shifted by a constant offset,
//! so it moves as one contiguous piece and only the wrapped-around edge columns are patched up;
//! otherwise each output row is one piece, with stride-2 gathers and scatters written over pairs
//! so that they vectorise (a `step_by` loop does not).

use super::geom::{ConvGeom, valid_range};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Where kernel tap (`ki`, `kj`) reads: `oi = ki * dilation` rows and `oj = kj * dilation`
/// columns from the window's corner. Output rows `rows.0..rows.1` are inside the image; in each
/// of them, columns outside `cols.0..cols.1` fall in the padding.
struct Tap {
    oi: usize,
    oj: usize,
    rows: (usize, usize),
    cols: (usize, usize),
    /// For shifted planes: patch-row elements `first..last` are plane elements `first + shift..`.
    /// What the clipping to the plane cuts off lies in edge columns of the first or last row.
    piece: Option<Piece>,
}

#[derive(Clone, Copy)]
struct Piece {
    first: usize,
    last: usize,
    from: usize,
}

/// The [`Tap`]s of `g`, in patch-row order within a channel.
fn taps(g: &ConvGeom) -> Vec<Tap> {
    let [oh, ow] = g.out_hw();
    let [h, w] = g.in_hw;
    let [kh, kw] = g.kernel;
    let shifted = g.stride == [1, 1] && ow == w;
    let tap = |ki: usize, kj: usize| {
        let (oi, oj) = (ki * g.dilation[0], kj * g.dilation[1]);
        let rows = valid_range(oi, g.padding[0], g.stride[0], h, oh);
        let cols = valid_range(oj, g.padding[1], g.stride[1], w, ow);
        let piece = shifted.then(|| {
            let shift = (oi as isize - g.padding[0] as isize) * w as isize + oj as isize
                - g.padding[1] as isize;
            let first = ((rows.0 * w) as isize).max(-shift);
            let last = ((rows.1 * w) as isize).min((h * w) as isize - shift);
            // Nothing inside (an image smaller than the kernel): an empty piece.
            let (first, last, shift) = if last > first {
                (first, last, shift)
            } else {
                (0, 0, 0)
            };
            Piece {
                first: first as usize,
                last: last as usize,
                from: (first + shift) as usize,
            }
        });
        Tap {
            oi,
            oj,
            rows,
            cols,
            piece,
        }
    };
    (0..kh)
        .flat_map(|ki| (0..kw).map(move |kj| (ki, kj)))
        .map(|(ki, kj)| tap(ki, kj))
        .collect()
}

/// The input index (in its plane) of output (`oy`, `tap.cols.0`) at `tap`'s offset.
fn row_start(g: &ConvGeom, tap: &Tap, oy: usize) -> usize {
    (oy * g.stride[0] + tap.oi - g.padding[0]) * g.in_hw[1] + tap.cols.0 * g.stride[1] + tap.oj
        - g.padding[1]
}

/// Writes the patch matrix of one image `x [C, H, W]` into `col` (every element of its
/// `C*kh*kw` rows of `OH*OW`, row `r` starting at `r * ld`: several images' patch matrices can
/// sit side by side in one wider matrix).
/// Small output planes go through [`super::small_patches`]. `alone`: see [`split_channels`].
pub(super) fn im2col(
    g: &ConvGeom,
    x: &[f32],
    col: &mut [MaybeUninit<f32>],
    ld: usize,
    alone: bool,
) {
    if super::small_patches::is_small(g) {
        return super::small_patches::im2col_small(g, x, col, ld, alone);
    }
    im2col_rows(g, x, col, ld, (0, g.out_hw()[0]), alone);
}

/// [`im2col`] of output rows `r0..r1` only: the band of columns `r0*OW..r1*OW` of the patch
/// matrix, written from column 0 of `col` (rows `ld` apart, each `(r1 - r0) * OW` long).
///
/// Channels go to rayon's pool when the caller's block is `alone` on it and the matrix is large
/// ([`split_channels`]). Why: a convolution with fewer blocks of images than threads (one
/// 600x800 image, or DeepLabV3+'s two small maps in one block) runs its only block on the calling
/// thread and gives the pool to gemm, so im2col ran alone on one thread while the pool waited:
/// ~10% of the DeepLabV3+ ResNet-50 A-FAN step's samples at 2 threads were the main thread's
/// im2col and its copies (docs/benchmarks.md, issue 19). With several blocks (one per thread)
/// the other threads are busy with other blocks, so it stays on the caller. Every element is a
/// copy: the result does not depend on the split.
pub(super) fn im2col_rows(
    g: &ConvGeom,
    x: &[f32],
    col: &mut [MaybeUninit<f32>],
    ld: usize,
    (r0, r1): (usize, usize),
    alone: bool,
) {
    let taps = taps(g);
    let plane = g.in_hw[0] * g.in_hw[1];
    let len = (r1 - r0) * g.out_hw()[1];
    // One channel's rows: `taps.len()` rows `ld` apart (the last channel's may end early).
    let rows_of = (taps.len() * ld).max(1);
    let channel = |(c, col_c): (usize, &mut [MaybeUninit<f32>])| {
        let src = &x[c * plane..(c + 1) * plane];
        for (t, tap) in taps.iter().enumerate() {
            im2col_row(g, tap, src, &mut col_c[t * ld..t * ld + len], (r0, r1));
        }
    };
    if split_channels(alone, g, taps.len() * len) {
        col.par_chunks_mut(rows_of)
            .take(g.in_ch)
            .enumerate()
            .for_each(channel);
    } else {
        col.chunks_mut(rows_of)
            .take(g.in_ch)
            .enumerate()
            .for_each(channel);
    }
}

/// Patch-matrix elements from which [`im2col_rows`] and [`col2im_rows`] split their channels
/// over the pool (a few hundred KB: below it a task costs more than it saves).
pub(super) const PARALLEL_ELEMENTS: usize = 1 << 16;

/// Whether im2col and col2im split the channels of a patch matrix whose channels have
/// `per_channel` elements each over rayon's pool: the caller's block of images is `alone` on the
/// pool (its product gets the pool's threads: `kernel`'s `inner_parallelism`), the pool has more
/// than one thread, and the matrix is large ([`PARALLEL_ELEMENTS`]).
///
/// Why the caller says so: this was "called from outside the pool", true of a lone block on the
/// main thread; since the engine runs its steps on a pool worker (`crate::on_pool`), every call
/// is inside the pool, and the split had stopped.
pub(super) fn split_channels(alone: bool, g: &ConvGeom, per_channel: usize) -> bool {
    alone
        && rayon::current_num_threads() > 1
        && g.in_ch > 1
        && g.in_ch * per_channel >= PARALLEL_ELEMENTS
}

/// One patch row of the band `r0..r1`: plane `src` read at `tap`, into `dst`.
fn im2col_row(
    g: &ConvGeom,
    tap: &Tap,
    src: &[f32],
    dst: &mut [MaybeUninit<f32>],
    (r0, r1): (usize, usize),
) {
    let ow = g.out_hw()[1];
    let base = r0 * ow;
    let (y0, y1, (lo, hi)) = clip(tap.rows, (r0, r1), tap.cols);
    zero(&mut dst[..(y0 - r0) * ow]);
    zero(&mut dst[(y1 - r0) * ow..]);
    if let Some(p) = tap.piece {
        let (first, last) = (p.first.max(y0 * ow), p.last.min(y1 * ow));
        if last > first {
            let piece = &src[p.from + first - p.first..][..last - first];
            dst[first - base..last - base].write_copy_of_slice(piece);
        }
    } else {
        for oy in y0..y1 {
            let src = &src[row_start(g, tap, oy)..];
            let at = (oy - r0) * ow;
            gather(&mut dst[at + lo..at + hi], src, g.stride[1]);
        }
    }
    for_each_edge(ow, (y0, y1), tap.cols, |i| {
        dst[i - base].write(0.0);
    });
}

/// A tap's valid output rows cut to the band `r0..r1` (possibly empty, `y0 == y1`), and its
/// valid columns.
fn clip(
    rows: (usize, usize),
    (r0, r1): (usize, usize),
    cols: (usize, usize),
) -> (usize, usize, (usize, usize)) {
    let y0 = rows.0.clamp(r0, r1);
    let y1 = rows.1.clamp(y0, r1);
    (y0, y1, cols)
}

/// Adds the patch-matrix gradient `dcol` (rows `ld` apart, as [`im2col`] writes them) back onto
/// the image gradient `dx` (`[C, H, W]`). `dcol` is scratch: the entries that fall in the
/// padding may be zeroed on the way.
/// `alone`: see [`split_channels`].
pub(super) fn col2im(g: &ConvGeom, dcol: &mut [f32], ld: usize, dx: &mut [f32], alone: bool) {
    col2im_rows(g, dcol, ld, dx, (0, g.out_hw()[0]), alone);
}

/// [`col2im`] of the band of output rows `r0..r1` only (`dcol` as [`im2col_rows`] writes it).
///
/// Channel by channel, like [`im2col_rows`], and over rayon's pool under the same condition
/// ([`split_channels`]): a channel's patch rows add onto that
/// channel's plane of `dx` only, so each task owns one plane and its rows, and every plane gets
/// its additions in the same order (tap by tap) however the channels are split: the result is
/// bit-equal to the serial walk. Why: the input gradient of a convolution with fewer blocks of
/// images than threads runs on the calling thread, which did the whole scatter alone while the
/// pool waited (issue 19, docs/benchmarks.md).
pub(super) fn col2im_rows(
    g: &ConvGeom,
    dcol: &mut [f32],
    ld: usize,
    dx: &mut [f32],
    (r0, r1): (usize, usize),
    alone: bool,
) {
    let taps = taps(g);
    let plane = g.in_hw[0] * g.in_hw[1];
    let len = (r1 - r0) * g.out_hw()[1];
    let rows_of = (taps.len() * ld).max(1);
    let channel = |(dcol_c, dx_c): (&mut [f32], &mut [f32])| {
        for (t, tap) in taps.iter().enumerate() {
            col2im_row(g, tap, &mut dcol_c[t * ld..t * ld + len], dx_c, (r0, r1));
        }
    };
    let dx = &mut dx[..g.in_ch * plane];
    if split_channels(alone, g, taps.len() * len) {
        dcol.par_chunks_mut(rows_of)
            .take(g.in_ch)
            .zip(dx.par_chunks_mut(plane.max(1)))
            .for_each(channel);
    } else {
        dcol.chunks_mut(rows_of)
            .take(g.in_ch)
            .zip(dx.chunks_mut(plane.max(1)))
            .for_each(channel);
    }
}

/// One patch row of the band `r0..r1` (`src`, scratch: its padding entries may be zeroed) added
/// onto the plane `dst` at `tap`.
fn col2im_row(g: &ConvGeom, tap: &Tap, src: &mut [f32], dst: &mut [f32], (r0, r1): (usize, usize)) {
    let ow = g.out_hw()[1];
    let base = r0 * ow;
    let (y0, y1, (lo, hi)) = clip(tap.rows, (r0, r1), tap.cols);
    if let Some(p) = tap.piece {
        // Zeroed edge columns make the shifted plane one vectorised add; they land on the
        // neighbouring row's edge and add exactly nothing.
        for_each_edge(ow, (y0, y1), tap.cols, |i| src[i - base] = 0.0);
        let (first, last) = (p.first.max(y0 * ow), p.last.min(y1 * ow));
        if last > first {
            let at = p.from + first - p.first;
            add(
                &mut dst[at..at + last - first],
                &src[first - base..last - base],
            );
        }
    } else {
        for oy in y0..y1 {
            let dst = &mut dst[row_start(g, tap, oy)..];
            let at = (oy - r0) * ow;
            scatter_add(dst, &src[at + lo..at + hi], g.stride[1]);
        }
    }
}

/// Calls `f(i)` for the index `i` of every element of rows `rows` outside columns `cols` of a
/// plane `width` wide: the few edge columns that fall in the padding. Column by column, so that
/// the compiler does not turn each row's one or two elements into a `memset` call (which cost
/// 5% of the convolutions).
fn for_each_edge(
    width: usize,
    rows: (usize, usize),
    cols: (usize, usize),
    mut f: impl FnMut(usize),
) {
    for c in (0..cols.0).chain(cols.1..width) {
        for oy in rows.0..rows.1 {
            f(oy * width + c);
        }
    }
}

fn zero(dst: &mut [MaybeUninit<f32>]) {
    dst.fill(MaybeUninit::new(0.0));
}

fn add(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

/// `dst[i] = src[i * stride]`.
fn gather(dst: &mut [MaybeUninit<f32>], src: &[f32], stride: usize) {
    match stride {
        1 => {
            dst.write_copy_of_slice(&src[..dst.len()]);
        }
        2 => {
            // Whole pairs of which the first is kept: a fixed-stride loop LLVM turns into
            // shuffles. `src` runs to the end of the plane, so only a row ending on the plane's
            // last element leaves one element outside a pair.
            let (pairs, rest) = src.as_chunks::<2>();
            let n = dst.len().min(pairs.len());
            for (d, p) in dst[..n].iter_mut().zip(pairs) {
                d.write(p[0]);
            }
            if let Some(d) = dst.get_mut(n) {
                d.write(rest[0]);
            }
        }
        _ => {
            for (i, d) in dst.iter_mut().enumerate() {
                d.write(src[i * stride]);
            }
        }
    }
}

/// `dst[i * stride] += src[i]`.
fn scatter_add(dst: &mut [f32], src: &[f32], stride: usize) {
    match stride {
        1 => add(&mut dst[..src.len()], src),
        2 => {
            // As in `gather`: whole pairs, then at most one element.
            let (pairs, rest) = dst.as_chunks_mut::<2>();
            let n = src.len().min(pairs.len());
            for (p, s) in pairs.iter_mut().zip(&src[..n]) {
                p[0] += s;
            }
            if let Some(s) = src.get(n) {
                rest[0] += s;
            }
        }
        _ => {
            for (i, s) in src.iter().enumerate() {
                dst[i * stride] += s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dx += col2im(dcol)` by the definition: channel by channel, tap by tap in patch-row order,
    /// then output pixel by pixel, the order in which [`col2im_rows`] adds onto each element.
    fn col2im_definition(
        g: &ConvGeom,
        dcol: &[f32],
        ld: usize,
        dx: &mut [f32],
        (r0, r1): (usize, usize),
    ) {
        let ([h, w], [kh, kw], [_, ow]) = (g.in_hw, g.kernel, g.out_hw());
        for c in 0..g.in_ch {
            for ki in 0..kh {
                for kj in 0..kw {
                    let row = (c * kh + ki) * kw + kj;
                    for oy in r0..r1 {
                        for ox in 0..ow {
                            let iy = (oy * g.stride[0] + ki * g.dilation[0]) as isize
                                - g.padding[0] as isize;
                            let ix = (ox * g.stride[1] + kj * g.dilation[1]) as isize
                                - g.padding[1] as isize;
                            if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                                let v = dcol[row * ld + (oy - r0) * ow + ox];
                                dx[(c * h + iy as usize) * w + ix as usize] += v;
                            }
                        }
                    }
                }
            }
        }
    }

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool")
    }

    /// col2im over whole images and bands, shifted planes (stride 1, "same"), stride-2 pairs,
    /// the generic stride, dilation, odd sizes and a kernel larger than the image: equal bit for
    /// bit to the definition (which adds in the same order), in a 1- and 3-thread pool and from
    /// outside any pool, a large patch matrix splitting its channels over the pool (one plane per
    /// task; the caller's block `alone`) and not. `ld` wider than the band, as blocks of images lay it out. A channel
    /// skipped or written twice by the split fails here.
    #[test]
    fn col2im_matches_the_definition_inside_and_outside_the_pool() {
        let cases = [
            // (C, [H, W], [kh, kw], stride, padding, dilation)
            (40, [33, 33], [3, 3], 1, 1, 1),
            (64, [31, 30], [3, 3], 2, 1, 1),
            (20, [29, 33], [3, 3], 1, 2, 2),
            (32, [30, 31], [5, 5], 3, 2, 1),
            (90, [17, 17], [1, 3], 1, 0, 1),
            (60, [20, 21], [1, 3], 1, 1, 1),
            (3, [2, 1], [3, 3], 1, 1, 1),
        ];
        for (c, hw, kernel, s, p, d) in cases {
            let g = ConvGeom {
                dilation: [d, d],
                ..ConvGeom::dense([1, c, 1], hw, kernel, [s, s], [p, p])
            };
            let [oh, ow] = g.out_hw();
            for band in [(0, oh), (oh / 3, oh - oh / 4)] {
                let len = (band.1 - band.0) * ow;
                let ld = len + 5;
                let rows = g.patch();
                let dcol: Vec<f32> = (0..rows * ld)
                    .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                    .collect();
                let dx0: Vec<f32> = (0..c * hw[0] * hw[1])
                    .map(|i| (i % 13) as f32 / 3.0)
                    .collect();
                let mut want = dx0.clone();
                col2im_definition(&g, &dcol, ld, &mut want, band);
                let run = || {
                    let (mut dcol, mut dx) = (dcol.clone(), dx0.clone());
                    col2im_rows(&g, &mut dcol, ld, &mut dx, band, true);
                    dx.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
                };
                let want: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
                let what = format!("{g:?} band {band:?}");
                assert_eq!(pool(1).install(run), want, "{what}, 1 thread");
                assert_eq!(pool(3).install(run), want, "{what}, 3 threads");
                assert_eq!(run(), want, "{what}, from outside the pool");
                let lone = || {
                    let (mut dcol, mut dx) = (dcol.clone(), dx0.clone());
                    col2im_rows(&g, &mut dcol, ld, &mut dx, band, false);
                    dx.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
                };
                assert_eq!(pool(3).install(lone), want, "{what}, not split");
            }
        }
    }
}
