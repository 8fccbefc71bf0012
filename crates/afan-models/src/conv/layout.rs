//! Weight layouts the convolution's backward pass needs: the transposed, kernel-flipped weight
//! of the input gradient's convolution and the weight gradient transposed back from the layout
//! the gemm leaves it in.
//!
//! Hand-written (tiles moved in parallel) because the obvious element-by-element column walk
//! missed the cache on every read: it was ~20% of a DeepLabV3+ ResNet-50 training step at batch 2
//! (millions of weights, few images to amortise them over; `perf`, docs/benchmarks.md). The
//! outputs are written once, into uninitialised memory (the weight gradient straight into the
//! gradient's own buffer): a zero-filled buffer and a copy out of it were another ~2 x 40 M
//! floats per ResNet-50 step (issue 19's fourth fix, docs/benchmarks.md).

use super::geom::ConvGeom;
use super::scratch::{assume_init, uninit_vec};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// `[K, C, kh, kw]` -> `[C, K, kh, kw]` with each kernel rotated by 180 degrees: the weight of
/// [`ConvGeom::input_grad_conv`].
pub(super) fn flip_transpose(g: &ConvGeom, w: &[f32]) -> Vec<f32> {
    let mut out = uninit_vec(w.len());
    let taps = g.kernel[0] * g.kernel[1];
    transpose_cells::<true>(w, [g.out_ch, g.in_ch], taps, &mut out);
    // SAFETY: `transpose_cells` writes every element of `out`.
    unsafe { assume_init(out) }
}

/// A row-major `rows x cols` matrix transposed into `out` (`cols x rows`), every element of
/// which it writes.
pub(super) fn transpose_into(m: &[f32], rows: usize, cols: usize, out: &mut [MaybeUninit<f32>]) {
    transpose_cells::<false>(m, [rows, cols], 1, out);
}

/// Side of the square tiles [`transpose_cells`] moves: 32 floats are two cache lines.
const TILE: usize = 32;

/// `out[c][r] = src[r][c]` for a row-major `rows x cols` matrix whose elements are `cell`
/// consecutive floats (a kernel's taps), each cell reversed when `REVERSE`; tile by tile, the
/// output's column tiles in parallel (each writes its own rows of `out`: no order to depend on).
/// Every element of `out` is written. (Reading the tile along the source's rows and writing
/// down the output's columns instead was ~1.5x slower on ResNet-50's weight gradients.)
fn transpose_cells<const REVERSE: bool>(
    src: &[f32],
    [rows, cols]: [usize; 2],
    cell: usize,
    out: &mut [MaybeUninit<f32>],
) {
    assert_eq!(
        src.len(),
        rows * cols * cell,
        "{rows}x{cols} cells of {cell}"
    );
    assert_eq!(out.len(), src.len(), "the transposed matrix's length");
    if src.is_empty() {
        return;
    }
    out.par_chunks_mut(TILE * rows * cell)
        .enumerate()
        .for_each(|(tile, out)| {
            let c0 = tile * TILE;
            for r0 in (0..rows).step_by(TILE) {
                let r1 = (r0 + TILE).min(rows);
                for (dc, out_col) in out.chunks_mut(rows * cell).enumerate() {
                    let c = c0 + dc;
                    if cell == 1 {
                        // One float per cell: plain moves (a slice copy per float is a call).
                        for (r, to) in (r0..r1).zip(&mut out_col[r0..r1]) {
                            to.write(src[r * cols + c]);
                        }
                        continue;
                    }
                    let (from, to) = (
                        &src[(r0 * cols + c) * cell..],
                        &mut out_col[r0 * cell..r1 * cell],
                    );
                    // 3x3 kernels (nearly all of them) with the cell's size a constant.
                    match (REVERSE, cell) {
                        (true, 9) => reverse_cells::<9>(from, cols * cell, to),
                        _ => {
                            for r in r0..r1 {
                                let from = &src[(r * cols + c) * cell..][..cell];
                                let to = &mut out_col[r * cell..][..cell];
                                if REVERSE {
                                    for (to, from) in to.iter_mut().zip(from.iter().rev()) {
                                        to.write(*from);
                                    }
                                } else {
                                    to.write_copy_of_slice(from);
                                }
                            }
                        }
                    }
                }
            }
        });
}

/// `to`'s consecutive cells of `N` floats, each the reverse of one of `from`'s, which lie
/// `stride` floats apart from `from`'s start (one output column's rows of a tile). `N` known to
/// the compiler makes a cell a few vector moves and a shuffle instead of a loop of `N` single
/// moves: that loop (3x3 kernels) was ~4% of the DeepLabV3+ ResNet-50 step (issue 19's seventh
/// fix, docs/benchmarks.md).
#[inline(always)]
fn reverse_cells<const N: usize>(from: &[f32], stride: usize, to: &mut [MaybeUninit<f32>]) {
    for (i, to) in to.chunks_exact_mut(N).enumerate() {
        let cell: &[f32; N] = from[i * stride..][..N].try_into().expect("N floats");
        let to: &mut [MaybeUninit<f32>; N] = to.try_into().expect("N floats");
        for t in 0..N {
            to[t].write(cell[N - 1 - t]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes around the tile's side (a partial tile on each axis), against the definition; the
    /// output NaN-poisoned, so an element left unwritten fails.
    #[test]
    fn transposes_equal_the_index_definition() {
        for (rows, cols, cell) in [
            (1, 1, 1),
            (33, 70, 1),
            (64, 32, 1),
            (5, 37, 9),
            (40, 3, 4),
            (70, 33, 9),
        ] {
            let src: Vec<f32> = (0..rows * cols * cell).map(|i| i as f32).collect();
            for reverse in [false, true] {
                let mut out = vec![MaybeUninit::new(f32::NAN); src.len()];
                if reverse {
                    transpose_cells::<true>(&src, [rows, cols], cell, &mut out);
                } else {
                    transpose_cells::<false>(&src, [rows, cols], cell, &mut out);
                }
                // SAFETY: initialised (NaN) before, so every element is a valid `f32`.
                let out = unsafe { assume_init(out) };
                for r in 0..rows {
                    for c in 0..cols {
                        for t in 0..cell {
                            let from = if reverse { cell - 1 - t } else { t };
                            assert_eq!(
                                out[(c * rows + r) * cell + t],
                                src[(r * cols + c) * cell + from],
                                "{rows}x{cols}x{cell} reverse={reverse} at ({r}, {c}, {t})"
                            );
                        }
                    }
                }
            }
        }
    }
}
