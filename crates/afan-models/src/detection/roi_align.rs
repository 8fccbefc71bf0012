//! RoIAlign and RoIPool.
//!
//! RoIAlign is linear in the features: every output cell is a fixed weighted sum of feature cells
//! (the bilinear weights of its sampling points, averaged). The sampling points depend only on
//! the boxes, which carry no gradient, so they are worked out on the host with torchvision's
//! exact rules ([`kernel::RoiSamples`]). On `flex`, afan's kernels gather them directly and
//! scatter the gradient back ([`kernel`], a backend extension op); on every other backend they
//! become one weight matrix per image, applied as the product `[R*PH*PW, H*W] x [H*W, C]`, whose
//! backward autodiff provides (a gather with duplicates pre-summed, but work proportional to the
//! whole feature map for every bin: ~3 GMAC per pass for 128 regions of a 600x800 image).
//! RoIPool (max) gathers every feature cell of each quantised bin and takes the maximum, with
//! Burn's ops everywhere.

#[cfg(feature = "flex")]
mod ext;
pub mod kernel;
#[cfg(all(test, feature = "flex"))]
mod kernel_tests;

#[cfg(feature = "flex")]
pub use ext::{FastRoiAlign, FastRoiAlignBackward};

use super::boxes::BBox;
use burn::tensor::{Int, Tensor, TensorData};
use kernel::{AlignParams, RoiSamples};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A region of interest: the image it belongs to and its box in input-image pixels.
pub type Roi = (usize, BBox);

/// Which pooling turns a region into a fixed-size feature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoiPoolMode {
    /// Bilinear sampling and averaging (torchvision `roi_align`).
    #[default]
    Align,
    /// Max over quantised bins (torchvision `roi_pool`, the original Fast R-CNN layer).
    MaxPool,
}

/// How regions are pooled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoiPoolConfig {
    /// Output `[height, width]`.
    pub output_size: [usize; 2],
    /// Feature cells per input pixel (1/16 for the C4 layout).
    pub spatial_scale: f32,
    /// Sampling points per bin side; 0 chooses `ceil(bin size)` per region (torchvision's -1).
    pub sampling_ratio: usize,
    /// Shift boxes by half a cell so that sampling is centred (torchvision `aligned=True`).
    pub aligned: bool,
    /// Align or max pool.
    pub mode: RoiPoolMode,
}

impl Default for RoiPoolConfig {
    /// The release's C4 head: 7x7 RoIAlign on the stride-16 feature, adaptive sampling, legacy
    /// (unaligned) box mapping.
    fn default() -> Self {
        Self {
            output_size: [7, 7],
            spatial_scale: 1.0 / 16.0,
            sampling_ratio: 0,
            aligned: false,
            mode: RoiPoolMode::Align,
        }
    }
}

impl RoiPoolConfig {
    /// Pools `rois` from `features` `[B, C, H, W]` into `[R, C, PH, PW]`, in the order of `rois`.
    pub fn forward(&self, features: Tensor<4>, rois: &[Roi]) -> Tensor<4> {
        match self.mode {
            RoiPoolMode::Align => self.align(features, rois),
            RoiPoolMode::MaxPool => self.max_pool(features, rois),
        }
    }

    /// torchvision's `roi_align` parameters of this configuration.
    pub fn align_params(&self) -> AlignParams {
        AlignParams {
            output_size: self.output_size,
            spatial_scale: self.spatial_scale,
            sampling_ratio: self.sampling_ratio,
            aligned: self.aligned,
        }
    }

    fn align(&self, features: Tensor<4>, rois: &[Roi]) -> Tensor<4> {
        let [b, _, h, w] = features.dims();
        let samples = RoiSamples::new(&self.align_params(), rois, [b, h, w]);
        if crate::flex::is_flex(&features.device()) {
            return fast_roi_align(features, Arc::new(samples));
        }
        align_by_matrix(features, &samples)
    }

    fn max_pool(&self, features: Tensor<4>, rois: &[Roi]) -> Tensor<4> {
        let [b, c, h, w] = features.dims();
        let [ph, pw] = self.output_size;
        let device = features.device();
        let zero = b * h * w;
        let bins: Vec<Vec<usize>> = rois
            .iter()
            .flat_map(|(image, roi)| {
                self.pool_bins(roi, [h, w])
                    .into_iter()
                    .map(move |bin| bin.into_iter().map(|cell| image * h * w + cell).collect())
            })
            .collect();
        let widest = bins.iter().map(Vec::len).max().unwrap_or(1).max(1);
        // Empty bins read an extra zero row (torchvision outputs 0 there); shorter bins repeat
        // their first cell, which leaves the maximum unchanged.
        let mut index = Vec::with_capacity(bins.len() * widest);
        for bin in &bins {
            let first = bin.first().copied().unwrap_or(zero);
            index.extend((0..widest).map(|k| bin.get(k).copied().unwrap_or(first) as i64));
        }
        let flat = features.permute([0, 2, 3, 1]).reshape([zero, c]);
        let flat = Tensor::cat(vec![flat, Tensor::zeros([1, c], &device)], 0);
        let idx =
            Tensor::<1, Int>::from_data(TensorData::new(index, [bins.len() * widest]), &device);
        flat.select(0, idx)
            .reshape([bins.len(), widest, c])
            .max_dim(1)
            .reshape([rois.len(), ph, pw, c])
            .permute([0, 3, 1, 2])
    }

    /// The feature cells (`y * W + x`) of each bin of one region, torchvision `roi_pool`'s rules.
    fn pool_bins(&self, roi: &BBox, [h, w]: [usize; 2]) -> Vec<Vec<usize>> {
        let [ph, pw] = self.output_size;
        let s = self.spatial_scale;
        let q = |v: f32| (v * s).round() as i64;
        let (x0, y0, x1, y1) = (q(roi[0]), q(roi[1]), q(roi[2]), q(roi[3]));
        let rw = (x1 - x0 + 1).max(1) as f32;
        let rh = (y1 - y0 + 1).max(1) as f32;
        let (bh, bw) = (rh / ph as f32, rw / pw as f32);
        let span = |p: usize, bin: f32, start: i64, limit: usize| {
            let lo = ((p as f32 * bin).floor() as i64 + start).clamp(0, limit as i64);
            let hi = (((p + 1) as f32 * bin).ceil() as i64 + start).clamp(0, limit as i64);
            lo as usize..hi as usize
        };
        let mut bins = Vec::with_capacity(ph * pw);
        for py in 0..ph {
            for px in 0..pw {
                let ys = span(py, bh, y0, h);
                let xs = span(px, bw, x0, w);
                bins.push(
                    ys.flat_map(|y| xs.clone().map(move |x| y * w + x))
                        .collect(),
                );
            }
        }
        bins
    }
}

/// RoIAlign as one weight-matrix product per image (every backend but flex): rows of the
/// averaged bilinear weights of each bin over the `H*W` cells.
pub(crate) fn align_by_matrix(features: Tensor<4>, s: &RoiSamples) -> Tensor<4> {
    let [b, c, h, w] = features.dims();
    let [ph, pw] = s.output_size;
    let bins = s.bins();
    let device = features.device();
    let mut parts = Vec::new();
    let mut order = Vec::new();
    for image in 0..b {
        let mine: Vec<usize> = (0..s.len()).filter(|&r| s.image[r] == image).collect();
        if mine.is_empty() {
            continue;
        }
        let mut weights = vec![0f32; mine.len() * bins * h * w];
        for (k, &r) in mine.iter().enumerate() {
            for bin in 0..bins {
                let row = &mut weights[(k * bins + bin) * h * w..][..h * w];
                for sample in s.bin(r, bin) {
                    for (cell, weight) in sample.cells.iter().zip(sample.weights) {
                        row[*cell as usize] += weight / s.count[r];
                    }
                }
            }
        }
        let m = Tensor::<2>::from_data(
            TensorData::new(weights, [mine.len() * bins, h * w]),
            &device,
        );
        let flat = features
            .clone()
            .slice(image..image + 1)
            .reshape([c, h * w])
            .transpose();
        parts.push(m.matmul(flat));
        order.extend(mine);
    }
    let pooled = if parts.is_empty() {
        Tensor::<2>::zeros([0, c], &device)
    } else {
        Tensor::cat(parts, 0)
    };
    let pooled = restore_order(pooled, &order, bins);
    pooled.reshape([s.len(), ph, pw, c]).permute([0, 3, 1, 2])
}

/// afan's RoIAlign kernel on a `flex` tensor.
#[cfg(feature = "flex")]
fn fast_roi_align(features: Tensor<4>, samples: Arc<RoiSamples>) -> Tensor<4> {
    use burn::backend::Dispatch;
    let out = <Dispatch as FastRoiAlign>::afan_roi_align(features.into_dispatch(), samples);
    Tensor::from_dispatch(out)
}

#[cfg(not(feature = "flex"))]
fn fast_roi_align(_: Tensor<4>, _: Arc<RoiSamples>) -> Tensor<4> {
    unreachable!("is_flex is false without the flex feature")
}

/// Puts rows grouped by image back in region order; `block` rows per region.
fn restore_order(pooled: Tensor<2>, order: &[usize], block: usize) -> Tensor<2> {
    if order.windows(2).all(|p| p[0] < p[1]) {
        return pooled;
    }
    let mut position = vec![0usize; order.len()];
    for (k, &r) in order.iter().enumerate() {
        position[r] = k;
    }
    let index: Vec<i64> = position
        .iter()
        .flat_map(|&k| (0..block).map(move |j| (k * block + j) as i64))
        .collect();
    let device = pooled.device();
    let n = index.len();
    pooled.select(
        0,
        Tensor::<1, Int>::from_data(TensorData::new(index, [n]), &device),
    )
}

#[cfg(test)]
#[path = "roi_align_tests.rs"]
mod tests;
