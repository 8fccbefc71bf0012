//! im2col and col2im on one NCHW image: the patch matrix `[C*kh*kw, OH*OW]` whose product with
//! the weight is the convolution, and the scatter of its gradient back onto the image.
//!
//! Both walk the patch matrix one row (channel, kernel offset) at a time. When the output plane
//! is as wide as the input (stride 1, "same" padding: every 3x3 stride-1 layer of a ResNet), a
//! patch row is the input plane shifted by a constant offset, so it moves as one contiguous piece
//! and only the wrapped-around edge columns are patched up; otherwise each output row is one
//! piece, with stride-2 gathers and scatters written over pairs so that they vectorise (a
//! `step_by` loop does not).

use super::geom::{ConvGeom, for_each_patch_row, input_row, valid_range};
use std::mem::MaybeUninit;

/// Where a patch row lies in the input plane when it is one piece: patch-row element `i` (in
/// `first..last`) is plane element `i + shift`. Rows `rows.0..rows.1` are inside the image; in
/// each of them, columns outside `cols.0..cols.1` fall in the padding.
struct Run {
    rows: (usize, usize),
    cols: (usize, usize),
    first: usize,
    last: usize,
    shift: isize,
}

/// The [`Run`] of patch row (`ki`, `kj`), where the patch rows are shifted planes.
fn run(g: &ConvGeom, ki: usize, kj: usize) -> Option<Run> {
    let [oh, ow] = g.out_hw();
    let [h, w] = g.in_hw;
    if g.stride != [1, 1] || ow != w {
        return None;
    }
    let rows = valid_range(ki, g.padding[0], 1, h, oh);
    let cols = valid_range(kj, g.padding[1], 1, w, ow);
    let shift =
        (ki as isize - g.padding[0] as isize) * w as isize + kj as isize - g.padding[1] as isize;
    // Clipped to the plane: what is cut off lies in the edge columns of the first or last row.
    let first = ((rows.0 * w) as isize).max(-shift) as usize;
    let last = ((rows.1 * w) as isize).min((h * w) as isize - shift);
    // Nothing inside (an image smaller than the kernel): an empty piece at the plane's start.
    let (first, last, shift) = if last > first as isize {
        (first, last as usize, shift)
    } else {
        (0, 0, 0)
    };
    Some(Run {
        rows,
        cols,
        first,
        last,
        shift,
    })
}

/// Writes the patch matrix of one image `x [C, H, W]` into `col` (every element).
pub(super) fn im2col(g: &ConvGeom, x: &[f32], col: &mut [MaybeUninit<f32>]) {
    let [oh, ow] = g.out_hw();
    let [h, w] = g.in_hw;
    let (sw, pw) = (g.stride[1], g.padding[1]);
    let pixels = oh * ow;
    for_each_patch_row(g, |row, plane, ki, kj| {
        let dst = &mut col[row * pixels..(row + 1) * pixels];
        let src = &x[plane..plane + h * w];
        if let Some(r) = run(g, ki, kj) {
            zero(&mut dst[..r.rows.0 * ow]);
            zero(&mut dst[r.rows.1 * ow..]);
            let from = r.first.wrapping_add_signed(r.shift);
            let piece = &src[from..from + r.last - r.first];
            dst[r.first..r.last].write_copy_of_slice(piece);
            for oy in r.rows.0..r.rows.1 {
                let out = &mut dst[oy * ow..(oy + 1) * ow];
                zero(&mut out[..r.cols.0]);
                zero(&mut out[r.cols.1..]);
            }
            return;
        }
        let (lo, hi) = valid_range(kj, pw, sw, w, ow);
        for oy in 0..oh {
            let out = &mut dst[oy * ow..(oy + 1) * ow];
            let Some(iy) = input_row(g, oy, ki) else {
                zero(out);
                continue;
            };
            zero(&mut out[..lo]);
            zero(&mut out[hi..]);
            let start = iy * w + lo * sw + kj - pw;
            gather(&mut out[lo..hi], &src[start..], sw);
        }
    });
}

/// Adds the patch-matrix gradient `dcol` back onto the image gradient `dx` (`[C, H, W]`).
/// `dcol` is scratch: the entries that fall in the padding may be zeroed on the way.
pub(super) fn col2im(g: &ConvGeom, dcol: &mut [f32], dx: &mut [f32]) {
    let [oh, ow] = g.out_hw();
    let [h, w] = g.in_hw;
    let (sw, pw) = (g.stride[1], g.padding[1]);
    let pixels = oh * ow;
    for_each_patch_row(g, |row, plane, ki, kj| {
        let src = &mut dcol[row * pixels..(row + 1) * pixels];
        let dst = &mut dx[plane..plane + h * w];
        if let Some(r) = run(g, ki, kj) {
            // Zeroed edge columns make the shifted plane one vectorised add; they land on the
            // neighbouring row's edge and add exactly nothing.
            for oy in r.rows.0..r.rows.1 {
                let out = &mut src[oy * ow..(oy + 1) * ow];
                out[..r.cols.0].fill(0.0);
                out[r.cols.1..].fill(0.0);
            }
            let from = r.first.wrapping_add_signed(r.shift);
            add(
                &mut dst[from..from + r.last - r.first],
                &src[r.first..r.last],
            );
            return;
        }
        let (lo, hi) = valid_range(kj, pw, sw, w, ow);
        for oy in 0..oh {
            let Some(iy) = input_row(g, oy, ki) else {
                continue;
            };
            let start = iy * w + lo * sw + kj - pw;
            scatter_add(&mut dst[start..], &src[oy * ow + lo..oy * ow + hi], sw);
        }
    });
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
    let Some(last) = dst.len().checked_sub(1) else {
        return;
    };
    match stride {
        1 => {
            dst.write_copy_of_slice(&src[..dst.len()]);
        }
        2 => {
            // Pairs of which the first is kept: a fixed-stride loop LLVM turns into shuffles.
            let (pairs, _) = src[..2 * last].as_chunks::<2>();
            for (d, p) in dst[..last].iter_mut().zip(pairs) {
                d.write(p[0]);
            }
            dst[last].write(src[2 * last]);
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
    let Some(last) = src.len().checked_sub(1) else {
        return;
    };
    match stride {
        1 => add(&mut dst[..src.len()], src),
        2 => {
            let (pairs, _) = dst[..2 * last].as_chunks_mut::<2>();
            for (p, s) in pairs.iter_mut().zip(src) {
                p[0] += s;
            }
            dst[2 * last] += src[last];
        }
        _ => {
            for (i, s) in src.iter().enumerate() {
                dst[i * stride] += s;
            }
        }
    }
}
