//! RoIAlign as one gather (forward) and one scatter (backward) over the feature map, on `f32`
//! slices, with torchvision's arithmetic.
//!
//! Every output cell of RoIAlign averages the bilinear interpolations of a few sampling points;
//! the points, their four neighbouring cells and weights depend only on the boxes, so they are
//! worked out once per call ([`RoiSamples`], also what the other backends' weight matrix is built
//! from). The kernels then read the features channels-last, so that each sampling point is four
//! `axpy`s over the channels (vectorised, and one cache line per neighbour instead of one per
//! channel), where a dense `[R*PH*PW, H*W] x [H*W, C]` product did work proportional to the
//! whole map for every bin. The backward pass scatters the output gradient back the same way;
//! it runs over blocks of channels, each block taking every region in order, so no two threads
//! add into one cell and every sum has one fixed order.
//!
//! Arithmetic: torchvision's `roi_align` CPU kernel, term for term: a sample's value is
//! `w1*v1 + w2*v2 + w3*v3 + w4*v4`, samples add up in grid order, the bin's sum is divided by the
//! sample count; the gradient reaching a cell from a sample is `(g * w) / count`, added in
//! region, bin and sample order (torchvision's serial CPU loop order).

use crate::conv::scratch::{assume_init, uninit_vec};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// One sampling point: its four neighbouring cells (`y * W + x`) and their bilinear weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Cells `(y_lo, x_lo)`, `(y_lo, x_hi)`, `(y_hi, x_lo)`, `(y_hi, x_hi)`.
    pub cells: [u32; 4],
    /// `hy*hx`, `hy*lx`, `ly*hx`, `ly*lx`.
    pub weights: [f32; 4],
}

/// The sampling points of every bin of every region, for one feature-map size.
#[derive(Clone, Debug, PartialEq)]
pub struct RoiSamples {
    /// `[PH, PW]`.
    pub output_size: [usize; 2],
    /// `[B, H, W]` of the feature map.
    pub feature: [usize; 3],
    /// The image of each region.
    pub image: Vec<usize>,
    /// The divisor of each region's bins: its sampling grid's size (at least 1).
    pub count: Vec<f32>,
    /// Bin `k` of all regions (`r * PH * PW + bin`) owns `samples[bin_start[k]..bin_start[k+1]]`;
    /// points outside the map (which add zero) are left out.
    pub bin_start: Vec<usize>,
    /// The sampling points with a neighbour inside the map.
    pub samples: Vec<Sample>,
}

/// Where RoIAlign samples: torchvision `roi_align`'s parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlignParams {
    /// `[PH, PW]`.
    pub output_size: [usize; 2],
    /// Feature cells per input pixel.
    pub spatial_scale: f32,
    /// Points per bin side; 0 for `ceil(bin size)` per region.
    pub sampling_ratio: usize,
    /// Half-cell box shift (`aligned=True`).
    pub aligned: bool,
}

/// torchvision's `bilinear_interpolate`: nothing outside `[-1, H] x [-1, W]`, coordinates
/// clamped at 0, the last row/column repeated at the far edge.
pub fn bilinear(y: f32, x: f32, h: usize, w: usize) -> Option<Sample> {
    if y < -1.0 || y > h as f32 || x < -1.0 || x > w as f32 {
        return None;
    }
    let (y, x) = (y.max(0.0), x.max(0.0));
    let axis = |v: f32, n: usize| {
        let low = v as usize;
        if low >= n - 1 {
            (n - 1, n - 1, 0.0)
        } else {
            (low, low + 1, v - low as f32)
        }
    };
    let (y_lo, y_hi, ly) = axis(y, h);
    let (x_lo, x_hi, lx) = axis(x, w);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    let cell = |y: usize, x: usize| (y * w + x) as u32;
    Some(Sample {
        cells: [
            cell(y_lo, x_lo),
            cell(y_lo, x_hi),
            cell(y_hi, x_lo),
            cell(y_hi, x_hi),
        ],
        weights: [hy * hx, hy * lx, ly * hx, ly * lx],
    })
}

impl RoiSamples {
    /// The sampling points of `rois` (`(image, [x1, y1, x2, y2])` in input pixels) on a feature
    /// map of `[B, H, W]`.
    ///
    /// # Panics
    /// If a region names an image outside `0..B`, or the map is empty.
    pub fn new(p: &AlignParams, rois: &[(usize, [f32; 4])], feature: [usize; 3]) -> Self {
        let [b, h, w] = feature;
        assert!(h > 0 && w > 0, "RoIAlign on an empty {h}x{w} feature map");
        let [ph, pw] = p.output_size;
        let per_roi: Vec<(f32, Vec<usize>, Vec<Sample>)> = rois
            .par_iter()
            .map(|&(image, roi)| {
                assert!(image < b, "region of image {image} in a batch of {b}");
                let offset = if p.aligned { 0.5 } else { 0.0 };
                let s = p.spatial_scale;
                let (x0, y0) = (roi[0] * s - offset, roi[1] * s - offset);
                let (mut rw, mut rh) = (roi[2] * s - offset - x0, roi[3] * s - offset - y0);
                if !p.aligned {
                    rw = rw.max(1.0);
                    rh = rh.max(1.0);
                }
                let (bh, bw) = (rh / ph as f32, rw / pw as f32);
                let grid = |size: f32| match p.sampling_ratio {
                    0 => size.ceil() as usize,
                    n => n,
                };
                let (gh, gw) = (grid(bh), grid(bw));
                let mut lens = Vec::with_capacity(ph * pw);
                let mut samples = Vec::with_capacity(ph * pw * gh * gw);
                for py in 0..ph {
                    for px in 0..pw {
                        let before = samples.len();
                        for iy in 0..gh {
                            let y = y0 + py as f32 * bh + (iy as f32 + 0.5) * bh / gh as f32;
                            for ix in 0..gw {
                                let x = x0 + px as f32 * bw + (ix as f32 + 0.5) * bw / gw as f32;
                                samples.extend(bilinear(y, x, h, w));
                            }
                        }
                        lens.push(samples.len() - before);
                    }
                }
                ((gh * gw).max(1) as f32, lens, samples)
            })
            .collect();
        let mut out = Self {
            output_size: p.output_size,
            feature,
            image: rois.iter().map(|r| r.0).collect(),
            count: Vec::with_capacity(rois.len()),
            bin_start: Vec::with_capacity(rois.len() * ph * pw + 1),
            samples: Vec::with_capacity(per_roi.iter().map(|r| r.2.len()).sum()),
        };
        out.bin_start.push(0);
        for (count, lens, samples) in per_roi {
            out.count.push(count);
            for len in lens {
                out.bin_start.push(out.bin_start.last().unwrap() + len);
            }
            out.samples.extend(samples);
        }
        out
    }

    /// Regions.
    pub fn len(&self) -> usize {
        self.image.len()
    }

    /// True when there are no regions.
    pub fn is_empty(&self) -> bool {
        self.image.is_empty()
    }

    /// Bins per region.
    pub fn bins(&self) -> usize {
        self.output_size[0] * self.output_size[1]
    }

    /// The sampling points of bin `bin` of region `r`.
    pub fn bin(&self, r: usize, bin: usize) -> &[Sample] {
        let k = r * self.bins() + bin;
        &self.samples[self.bin_start[k]..self.bin_start[k + 1]]
    }

    fn plane(&self) -> usize {
        self.feature[1] * self.feature[2]
    }
}

/// `[C, P]` planes to `[P, C]` rows (one image), in tiles that stay in cache.
fn to_channels_last(src: &[f32], c: usize, p: usize, dst: &mut [f32]) {
    const T: usize = 32;
    for c0 in (0..c).step_by(T) {
        for p0 in (0..p).step_by(T) {
            for ci in c0..(c0 + T).min(c) {
                for pi in p0..(p0 + T).min(p) {
                    dst[pi * c + ci] = src[ci * p + pi];
                }
            }
        }
    }
}

/// RoIAlign forward: `x [B, C, H, W]` to `[R, C, PH, PW]`.
pub fn roi_align_forward(s: &RoiSamples, x: &[f32], c: usize) -> Vec<f32> {
    let mut out = uninit_vec(s.len() * c * s.bins());
    roi_align_forward_into(s, x, c, &mut out);
    // SAFETY: `roi_align_forward_into` writes every element (kernel_tests poisons it to check).
    unsafe { assume_init(out) }
}

/// [`roi_align_forward`] into `out`, every element of which it writes.
pub(super) fn roi_align_forward_into(
    s: &RoiSamples,
    x: &[f32],
    c: usize,
    out: &mut [MaybeUninit<f32>],
) {
    let [b, _, _] = s.feature;
    let plane = s.plane();
    let image_len = c * plane;
    assert_eq!(
        x.len(),
        b * image_len,
        "RoIAlign features of the wrong size"
    );
    let mut nhwc = vec![0.0f32; x.len()];
    nhwc.par_chunks_mut(image_len.max(1))
        .zip(x.par_chunks(image_len.max(1)))
        .for_each(|(d, src)| to_channels_last(src, c, plane, d));
    let bins = s.bins();
    assert_eq!(
        out.len(),
        s.len() * c * bins,
        "RoIAlign output of the wrong size"
    );
    out.par_chunks_mut((c * bins).max(1))
        .enumerate()
        .for_each(|(r, out_r)| {
            let image = &nhwc[s.image[r] * image_len..][..image_len];
            let mut acc = vec![0.0f32; c];
            for bin in 0..bins {
                acc.fill(0.0);
                for sample in s.bin(r, bin) {
                    let [a, b_, c_, d] = sample.cells.map(|cell| &image[cell as usize * c..][..c]);
                    let [w1, w2, w3, w4] = sample.weights;
                    for ((((o, v1), v2), v3), v4) in acc.iter_mut().zip(a).zip(b_).zip(c_).zip(d) {
                        *o += w1 * v1 + w2 * v2 + w3 * v3 + w4 * v4;
                    }
                }
                let count = s.count[r];
                for (ch, v) in acc.iter().enumerate() {
                    out_r[ch * bins + bin].write(v / count);
                }
            }
        });
}

/// Channels per task of the backward scatter: long enough rows for the vector units, short
/// enough that a 2-core machine gets several tasks from 256 channels.
const CHANNEL_BLOCK: usize = 32;

/// RoIAlign backward: the gradient `[B, C, H, W]` of the features from the output gradient
/// `dy [R, C, PH, PW]`.
pub fn roi_align_backward(s: &RoiSamples, dy: &[f32], c: usize) -> Vec<f32> {
    let [b, h, w] = s.feature;
    let mut dx = uninit_vec(b * c * h * w);
    roi_align_backward_into(s, dy, c, &mut dx);
    // SAFETY: `roi_align_backward_into` writes every element (kernel_tests poisons it to check).
    unsafe { assume_init(dx) }
}

/// [`roi_align_backward`] into `dx`, every element of which it writes.
pub(super) fn roi_align_backward_into(
    s: &RoiSamples,
    dy: &[f32],
    c: usize,
    dx: &mut [MaybeUninit<f32>],
) {
    let [b, _, _] = s.feature;
    let plane = s.plane();
    let bins = s.bins();
    assert_eq!(
        dy.len(),
        s.len() * c * bins,
        "RoIAlign gradient of the wrong size"
    );
    // Per region, bin-major rows of its gradient, so that a sample reads a run of channels.
    let mut dy_rows = vec![0.0f32; dy.len()];
    dy_rows
        .par_chunks_mut((c * bins).max(1))
        .zip(dy.par_chunks((c * bins).max(1)))
        .for_each(|(d, src)| to_channels_last(src, c, bins, d));
    let blocks: Vec<(usize, usize)> = (0..c)
        .step_by(CHANNEL_BLOCK)
        .map(|c0| (c0, (c0 + CHANNEL_BLOCK).min(c)))
        .collect();
    // Each block accumulates `[B, H*W, width]` channels-last, then is written into place.
    let parts: Vec<Vec<f32>> = blocks
        .par_iter()
        .map(|&(c0, c1)| {
            let width = c1 - c0;
            let mut acc = vec![0.0f32; b * plane * width];
            for r in 0..s.len() {
                let image = &mut acc[s.image[r] * plane * width..][..plane * width];
                let count = s.count[r];
                for bin in 0..bins {
                    let g = &dy_rows[(r * bins + bin) * c + c0..][..width];
                    for sample in s.bin(r, bin) {
                        for (cell, w) in sample.cells.iter().zip(sample.weights) {
                            let dst = &mut image[*cell as usize * width..][..width];
                            for (d, gv) in dst.iter_mut().zip(g) {
                                *d += gv * w / count;
                            }
                        }
                    }
                }
            }
            acc
        })
        .collect();
    assert_eq!(
        dx.len(),
        b * c * plane,
        "RoIAlign gradient output of the wrong size"
    );
    dx.par_chunks_mut(plane.max(1))
        .enumerate()
        .for_each(|(k, dst)| {
            let (image, ch) = (k / c, k % c);
            let block = ch / CHANNEL_BLOCK;
            let (c0, c1) = blocks[block];
            let width = c1 - c0;
            let src = &parts[block][image * plane * width..][..plane * width];
            for (p, d) in dst.iter_mut().enumerate() {
                d.write(src[p * width + ch - c0]);
            }
        });
}
