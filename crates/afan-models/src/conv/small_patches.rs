//! im2col for small output planes (a RoI head's 4x4 maps, [`SMALL_PIXELS`]): each channel is copied once
//! into a zero-bordered plane, and every patch row is then read from it with no bounds, edge
//! or padding logic.
//!
//! Why: [`super::patches`] works out, per patch row, which output rows and columns fall in the
//! padding, zeroes those, copies the rest as one piece (a `memcpy` call) and patches up the edge
//! columns. That is the right trade for a backbone's long rows, but Faster R-CNN C4's `layer4`
//! runs on 128 regions of 7x7 (4x4 out): 16-element patch rows, 4,608 of them per region and
//! convolution, where the per-row set-up, the `memcpy` calls and the scalar zero loops were
//! most of the cost. im2col was 7-8% of the detection baseline's samples at 1 thread, ~95% of
//! it in the RoI head's blocks (a caller-resolved profile, issue 19). Here the padding is
//! written once per call (the border of the scratch plane, never overwritten) and a patch row is
//! a gather through one table of offsets (no `memcpy` call per output row).
//!
//! Every element is a copy of an input element or a zero: bit-equal to [`super::patches`]
//! (tested against it).

use super::geom::ConvGeom;
use super::patches::split_channels;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Output pixels up to which [`im2col`](super::patches::im2col) takes this path (4x4: the RoI
/// head's maps); `AFAN_CONV_SMALL_PIXELS` replaces it (for timing with one binary).
///
/// Why not more: up to stop 29 this was 256 (16x16), and that put CIFAR ResNet-20's 16x16 and
/// 8x8 layers on this path, where the general im2col moves each stride-1 patch row as one
/// shifted plane: its training step was 11-15% slower (`afan bench`, batch 128, 2 threads:
/// clean 0.247 / 0.229 / 0.219 / 0.213 s and A-FAN 0.792 / 0.706 / 0.663 / 0.652 s at 256 /
/// 81 / 49 / 16). The detection baseline keeps its gain at 16 (0.79 s at 256 and 16, 0.83 s
/// with the path off) and DeepLabV3+'s 9x9 maps lose nothing (ResNet-50 A-FAN 0.82 s at 81
/// and 0.80-0.82 s at 49); ImageNet ResNets' 7x7 maps are, like 8x8, left to the general path.
pub(super) const SMALL_PIXELS: usize = 16;

/// Whether `g`'s patch matrix is built by [`im2col_small`]: a small output plane.
pub(super) fn is_small(g: &ConvGeom) -> bool {
    use std::sync::OnceLock;
    static MAX: OnceLock<usize> = OnceLock::new();
    let max = *MAX.get_or_init(|| crate::flex::env_or("AFAN_CONV_SMALL_PIXELS", SMALL_PIXELS));
    small_planes_on() && g.out_pixels() <= max
}

/// The small-plane paths (this im2col, and the fixed-size plane copies of the block products in
/// `kernel`): on unless `AFAN_CONV_SMALL_PATCHES=0` (for timing both with one binary).
pub(super) fn small_planes_on() -> bool {
    use std::sync::OnceLock;
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| crate::flex::env_switch("AFAN_CONV_SMALL_PATCHES", true))
}

/// The patch matrix of one image `x [C, H, W]` into `col` (`C*kh*kw` rows `ld` apart, the
/// first `OH*OW` elements of each written), as [`super::patches::im2col`] writes it; `alone`:
/// see [`split_channels`].
pub(super) fn im2col_small(
    g: &ConvGeom,
    x: &[f32],
    col: &mut [MaybeUninit<f32>],
    ld: usize,
    alone: bool,
) {
    let [h, w] = g.in_hw;
    let [ph, pw] = g.padding;
    let [oh, ow] = g.out_hw();
    let [kh, kw] = g.kernel;
    let [sh, sw] = g.stride;
    let [dh, dw] = g.dilation;
    let (hp, wp) = (h + 2 * ph, w + 2 * pw);
    let (plane, pixels, taps) = (h * w, oh * ow, kh * kw);
    // Where output pixel `p` reads in the padded plane, from the tap's corner: one table for
    // all rows (a `memcpy` per output row of four to seven elements cost more than the copy).
    let at: Vec<usize> = (0..pixels)
        .map(|p| (p / ow) * sh * wp + (p % ow) * sw)
        .collect();
    // One channel's `taps` rows into `col_c`, through `padded` (zero border, `hp x wp`): each
    // channel overwrites the interior only, so the border is zeroed once per buffer.
    let channel = |padded: &mut Vec<f32>, (c, col_c): (usize, &mut [MaybeUninit<f32>])| {
        let src = &x[c * plane..(c + 1) * plane];
        for (y, row) in src.chunks_exact(w.max(1)).take(h).enumerate() {
            padded[(y + ph) * wp + pw..][..w].copy_from_slice(row);
        }
        for ki in 0..kh {
            for kj in 0..kw {
                let t = ki * kw + kj;
                let from = &padded[ki * dh * wp + kj * dw..];
                let dst = &mut col_c[t * ld..t * ld + pixels];
                let step = sh * wp;
                match (ow, sw) {
                    (4, 1) => rows::<4, 1>(dst, from, step),
                    (4, 2) => rows::<4, 2>(dst, from, step),
                    (7, 1) => rows::<7, 1>(dst, from, step),
                    (7, 2) => rows::<7, 2>(dst, from, step),
                    (9, 1) => rows::<9, 1>(dst, from, step),
                    _ => {
                        for (d, &i) in dst.iter_mut().zip(&at) {
                            d.write(from[i]);
                        }
                    }
                }
            }
        }
    };
    let zeroed = || vec![0.0f32; hp * wp];
    // Channels over the pool under the general im2col's condition (the block alone on the
    // pool, a large matrix: DeepLabV3+'s 9x9 maps, two images in one block that gets gemm's
    // threads); with several blocks (a RoI head's, one per thread) on this thread.
    let rows_of = (taps * ld).max(1);
    if split_channels(alone, g, taps * pixels) {
        col.par_chunks_mut(rows_of)
            .take(g.in_ch)
            .enumerate()
            .for_each_init(zeroed, channel);
    } else {
        let mut padded = zeroed();
        for item in col.chunks_mut(rows_of).take(g.in_ch).enumerate() {
            channel(&mut padded, item);
        }
    }
}

/// One patch row of output rows `OW` wide at column stride `SW`, output row `oy` read from
/// `from[oy * step..]`: fixed sizes, so each output row is a few vector moves. The widths of
/// a RoI head (4x4 out of 7x7, stride 1 and 2), 7x7 maps and DeepLabV3+'s 9x9 at 129x129.
fn rows<const OW: usize, const SW: usize>(dst: &mut [MaybeUninit<f32>], from: &[f32], step: usize) {
    for (oy, d) in dst.chunks_exact_mut(OW).enumerate() {
        let s = &from[oy * step..][..(OW - 1) * SW + 1];
        for (x, d) in d.iter_mut().enumerate() {
            d.write(s[x * SW]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::patches::im2col_rows;
    use super::*;

    /// Bit-equal to the general im2col (which has its own tests against Burn's convolution) over
    /// strides 1/2/3, padding 0-3, dilation, non-square kernels, the torchvision stem, an image
    /// smaller than the kernel and a RoI head's 7x7 -> 4x4; rows `ld` apart with the elements
    /// past each row's pixels left alone; NaN-poisoned, so an element left unwritten fails; from
    /// outside any pool and in 1- and 3-thread pools, the large cases' channels split over the pool
    /// (`alone`) and not.
    #[test]
    fn matches_the_general_im2col() {
        let cases = [
            // (C, [H, W], [kh, kw], stride, padding, dilation)
            (5, [7, 7], [3, 3], 1, 1, 1),
            (4, [7, 7], [3, 3], 2, 1, 1),
            (3, [7, 7], [1, 1], 2, 0, 1),
            (3, [4, 4], [3, 3], 1, 1, 1),
            (2, [9, 8], [3, 3], 1, 2, 2),
            (2, [9, 7], [3, 3], 1, 6, 6),
            (2, [10, 10], [3, 3], 3, 1, 1),
            (3, [9, 9], [7, 7], 2, 3, 1),
            (2, [6, 5], [3, 3], 1, 0, 1),
            (2, [5, 9], [1, 3], 1, 0, 1),
            (2, [2, 1], [3, 3], 1, 1, 1),
            (1, [1, 1], [3, 3], 1, 1, 1),
            (2, [16, 16], [5, 5], 1, 2, 1),
            // The fixed widths: 4 (stride 1 and 2), 7 (stride 1 and 2), 9 (dilated).
            (3, [8, 8], [3, 3], 2, 1, 1),
            (3, [7, 7], [3, 3], 1, 1, 1),
            (3, [13, 14], [3, 3], 2, 1, 1),
            (2, [9, 9], [3, 3], 1, 2, 2),
            (2, [9, 9], [3, 3], 1, 6, 6),
            // Large enough that channels split over the pool when called from outside it.
            (160, [9, 9], [3, 3], 1, 1, 1),
            (512, [7, 7], [3, 3], 2, 1, 1),
        ];
        for (c, hw, kernel, s, p, d) in cases {
            let g = ConvGeom {
                dilation: [d, d],
                ..ConvGeom::dense([1, c, 1], hw, kernel, [s, s], [p, p])
            };
            // Shapes up to 16x16: the path is correct for any size, whatever it is chosen for.
            assert!(g.out_pixels() <= 256, "{g:?}");
            let x: Vec<f32> = (0..c * hw[0] * hw[1])
                .map(|i| (i as f32 + 1.0) * 0.5)
                .collect();
            let ld = g.out_pixels() + 3;
            let run = |f: &dyn Fn(&mut [MaybeUninit<f32>])| {
                let mut col = vec![MaybeUninit::new(f32::NAN); g.patch() * ld];
                f(&mut col);
                // SAFETY: initialised with NaN above.
                col.iter()
                    .map(|v| unsafe { v.assume_init() }.to_bits())
                    .collect::<Vec<u32>>()
            };
            let want = run(&|col| im2col_rows(&g, &x, col, ld, (0, g.out_hw()[0]), false));
            let got = run(&|col| im2col_small(&g, &x, col, ld, true));
            assert_eq!(got, want, "{g:?}, from outside the pool");
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("a thread pool");
                for alone in [false, true] {
                    let inside = pool.install(|| run(&|col| im2col_small(&g, &x, col, ld, alone)));
                    assert_eq!(inside, want, "{g:?}, {threads} threads, alone {alone}");
                }
            }
            let nan = f32::NAN.to_bits();
            for row in got.chunks(ld) {
                assert!(row[..g.out_pixels()].iter().all(|&v| v != nan), "{g:?}");
            }
        }
    }
}
