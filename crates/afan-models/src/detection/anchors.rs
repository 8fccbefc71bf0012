//! Reference boxes of the RPN, in two layouts ([`AnchorLayout`]).
//!
//! - **Release** (`Detection/rpn/region_proposal_network.py` L198-228, `generate_anchors`): the
//!   centres divide the *image* evenly, `linspace(0, H, h + 2)[1:-1]` rows and likewise columns,
//!   so they depend on the image size as well as on the feature size; each centre carries
//!   `ratios x sizes` boxes of width `size * sqrt(1 / ratio)` and height `size * sqrt(ratio)`,
//!   unrounded (`size = base_size * scale`).
//! - **Legacy** (py-faster-rcnn's `generate_anchors`, which afan used before issue 17): one set
//!   of `scales x ratios` boxes centred on a `base_size` cell, shifted to every position of the
//!   feature map (stride `base_size`). py-faster-rcnn computes the shapes with numpy's rounding
//!   (half to even) in the legacy "+1" pixel convention; the values here are those boxes with
//!   `x2`, `y2` moved up by one, so that their width in this crate's continuous convention is
//!   exactly `round(sqrt(base^2 / ratio)) * scale`.
//!
//! Both enumerate rows, then columns, then ratios, then sizes, the order of the RPN's outputs.

use super::boxes::BBox;
use serde::{Deserialize, Serialize};

/// Where the anchors sit: the release's even division of the image, or py-faster-rcnn's stride
/// grid (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnchorLayout {
    /// `generate_anchors` of the release (region_proposal_network.py L198-228).
    #[default]
    Release,
    /// py-faster-rcnn's cell anchors shifted by the stride (afan before issue 17): centres at
    /// `stride * i + (base - 1) / 2`, sides rounded.
    Legacy,
}

/// Anchor shapes; the defaults are the release's Pascal VOC setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnchorConfig {
    /// Side of the base cell, which is also the feature stride (16 for the C4 layout).
    pub base_size: usize,
    /// Multipliers of the base cell's side (VOC: 8, 16, 32; COCO: 4, 8, 16, 32).
    pub scales: Vec<f32>,
    /// Height over width (0.5, 1, 2).
    pub ratios: Vec<f32>,
}

impl Default for AnchorConfig {
    fn default() -> Self {
        Self::voc()
    }
}

impl AnchorConfig {
    /// Pascal VOC: scales 8, 16, 32 (128 to 512 pixels), ratios 0.5, 1, 2.
    pub fn voc() -> Self {
        Self {
            base_size: 16,
            scales: vec![8.0, 16.0, 32.0],
            ratios: vec![0.5, 1.0, 2.0],
        }
    }

    /// COCO: adds scale 4 (64 pixels) for the smaller objects.
    pub fn coco() -> Self {
        Self {
            scales: vec![4.0, 8.0, 16.0, 32.0],
            ..Self::voc()
        }
    }

    /// Anchors per position.
    pub fn num_anchors(&self) -> usize {
        self.scales.len() * self.ratios.len()
    }

    /// The anchors of one position at the origin, ratio-major as in the release.
    pub fn cell_anchors(&self) -> Vec<BBox> {
        let base = self.base_size as f32;
        let ctr = 0.5 * (base - 1.0);
        let mut out = Vec::with_capacity(self.num_anchors());
        for &ratio in &self.ratios {
            let ws = (base * base / ratio).sqrt().round_ties_even();
            let hs = (ws * ratio).round_ties_even();
            for &scale in &self.scales {
                let (w, h) = (ws * scale, hs * scale);
                out.push([
                    ctr - 0.5 * (w - 1.0),
                    ctr - 0.5 * (h - 1.0),
                    ctr + 0.5 * (w - 1.0) + 1.0,
                    ctr + 0.5 * (h - 1.0) + 1.0,
                ]);
            }
        }
        out
    }

    /// Every anchor of a `feature_size` (`[h, w]`) map over an `image_size` (`[H, W]`, the padded
    /// batch in the release) in `layout`.
    pub fn anchors(
        &self,
        layout: AnchorLayout,
        feature_size: [usize; 2],
        image_size: [usize; 2],
    ) -> Vec<BBox> {
        match layout {
            AnchorLayout::Release => self.release_anchors(feature_size, image_size),
            AnchorLayout::Legacy => self.grid_anchors(feature_size),
        }
    }

    /// The release's anchors (region_proposal_network.py L206-226): centres and shapes in f64 as
    /// numpy computes them, cast to f32 (`.float()`, L225), corners in f32 (`from_center_base`).
    pub fn release_anchors(&self, [h, w]: [usize; 2], [ih, iw]: [usize; 2]) -> Vec<BBox> {
        // np.linspace(0, stop, n + 2)[1:-1]: step stop / (n + 1), each point i * step.
        let centres = |stop: usize, n: usize| -> Vec<f64> {
            let step = stop as f64 / (n + 1) as f64;
            (1..=n).map(|i| i as f64 * step).collect()
        };
        let (ys, xs) = (centres(ih, h), centres(iw, w));
        let mut out = Vec::with_capacity(h * w * self.num_anchors());
        for &cy in &ys {
            for &cx in &xs {
                for &ratio in &self.ratios {
                    for &scale in &self.scales {
                        let size = self.base_size as f64 * f64::from(scale);
                        let r = f64::from(ratio);
                        let bw = (size * (1.0 / r).sqrt()) as f32;
                        let bh = (size * r.sqrt()) as f32;
                        let (cx, cy) = (cx as f32, cy as f32);
                        out.push([cx - bw / 2.0, cy - bh / 2.0, cx + bw / 2.0, cy + bh / 2.0]);
                    }
                }
            }
        }
        out
    }

    /// Every anchor of a `[height, width]` feature map, in the order of the RPN outputs once
    /// permuted to `[H, W, A]`: position-major (row, then column), anchor fastest.
    pub fn grid_anchors(&self, feature_size: [usize; 2]) -> Vec<BBox> {
        let cell = self.cell_anchors();
        let stride = self.base_size as f32;
        let mut out = Vec::with_capacity(feature_size[0] * feature_size[1] * cell.len());
        for y in 0..feature_size[0] {
            for x in 0..feature_size[1] {
                let (sx, sy) = (x as f32 * stride, y as f32 * stride);
                out.extend(
                    cell.iter()
                        .map(|a| [a[0] + sx, a[1] + sy, a[2] + sx, a[3] + sy]),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voc_cell_anchors_are_the_releases_table() {
        // What py-faster-rcnn's generate_anchors() returns (legacy convention; its docstring shows the
        // MATLAB version's table, one pixel off), with x2, y2 + 1 here.
        let legacy = [
            [-84.0, -40.0, 99.0, 55.0],
            [-176.0, -88.0, 191.0, 103.0],
            [-360.0, -184.0, 375.0, 199.0],
            [-56.0, -56.0, 71.0, 71.0],
            [-120.0, -120.0, 135.0, 135.0],
            [-248.0, -248.0, 263.0, 263.0],
            [-36.0, -80.0, 51.0, 95.0],
            [-80.0, -168.0, 95.0, 183.0],
            [-168.0, -344.0, 183.0, 359.0],
        ];
        let got = AnchorConfig::voc().cell_anchors();
        assert_eq!(got.len(), 9);
        for (g, l) in got.iter().zip(legacy) {
            assert_eq!(*g, [l[0], l[1], l[2] + 1.0, l[3] + 1.0]);
        }
    }

    #[test]
    fn coco_adds_the_64_pixel_scale_and_grid_shifts_by_the_stride() {
        let coco = AnchorConfig::coco();
        assert_eq!(coco.num_anchors(), 12);
        // Ratio 1, scale 4: a 64x64 box centred on pixel 7.5 of the cell (legacy [-24, -24, 39, 39]).
        assert_eq!(coco.cell_anchors()[4], [-24.0, -24.0, 40.0, 40.0]);
        let grid = coco.grid_anchors([2, 3]);
        assert_eq!(grid.len(), 2 * 3 * 12);
        // Position (row 1, column 2) is the 6th; its anchor 4 is shifted by (32, 16).
        assert_eq!(grid[5 * 12 + 4], [8.0, -8.0, 72.0, 56.0]);
    }
}
