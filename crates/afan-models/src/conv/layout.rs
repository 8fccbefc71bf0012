//! Weight layouts the convolution's backward pass needs: the transposed, kernel-flipped weight
//! of the input gradient's convolution and the weight gradient transposed back from the layout
//! the gemm leaves it in.
//!
//! Hand-written (tiles moved in parallel) because the obvious element-by-element column walk
//! missed the cache on every read: it was ~20% of a DeepLabV3+ ResNet-50 training step at batch 2
//! (millions of weights, few images to amortise them over; `perf`, docs/benchmarks.md).

use super::geom::ConvGeom;
use rayon::prelude::*;

/// `[K, C, kh, kw]` -> `[C, K, kh, kw]` with each kernel rotated by 180 degrees: the weight of
/// [`ConvGeom::input_grad_conv`].
pub(super) fn flip_transpose(g: &ConvGeom, w: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    let taps = g.kernel[0] * g.kernel[1];
    transpose_cells(w, [g.out_ch, g.in_ch], taps, true, &mut out);
    out
}

/// A row-major `rows x cols` matrix transposed.
pub(super) fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; m.len()];
    transpose_cells(m, [rows, cols], 1, false, &mut out);
    out
}

/// Side of the square tiles [`transpose_cells`] moves: 32 floats are two cache lines.
const TILE: usize = 32;

/// `out[c][r] = src[r][c]` for a row-major `rows x cols` matrix whose elements are `cell`
/// consecutive floats (a kernel's taps), each cell reversed when `reverse`; tile by tile, the
/// output's column tiles in parallel (each writes its own rows of `out`: no order to depend on).
fn transpose_cells(
    src: &[f32],
    [rows, cols]: [usize; 2],
    cell: usize,
    reverse: bool,
    out: &mut [f32],
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
                for (dc, out_col) in out.chunks_mut(rows * cell).enumerate() {
                    let c = c0 + dc;
                    let r1 = (r0 + TILE).min(rows);
                    if cell == 1 {
                        // One float per cell: plain moves (a slice copy per float is a call).
                        for (r, to) in (r0..r1).zip(&mut out_col[r0..r1]) {
                            *to = src[r * cols + c];
                        }
                        continue;
                    }
                    for r in r0..r1 {
                        let from = &src[(r * cols + c) * cell..][..cell];
                        let to = &mut out_col[r * cell..][..cell];
                        for (t, to) in to.iter_mut().enumerate() {
                            *to = from[if reverse { cell - 1 - t } else { t }];
                        }
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes around the tile's side (a partial tile on each axis), against the definition.
    #[test]
    fn transposes_equal_the_index_definition() {
        for (rows, cols, cell) in [(1, 1, 1), (33, 70, 1), (64, 32, 1), (5, 37, 9), (40, 3, 4)] {
            let src: Vec<f32> = (0..rows * cols * cell).map(|i| i as f32).collect();
            for reverse in [false, true] {
                let mut out = vec![f32::NAN; src.len()];
                transpose_cells(&src, [rows, cols], cell, reverse, &mut out);
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
