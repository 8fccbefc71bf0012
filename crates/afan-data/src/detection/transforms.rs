//! Detection transforms: resize by the short side with a cap on the long side, and
//! horizontal flip, moving the boxes with the pixels.

use super::sample::DetectionSample;

/// Short/long side limits of the resize. The paper's Faster R-CNN settings are
/// [`ResizeConfig::VOC`] (600/1000, py-faster-rcnn) and [`ResizeConfig::COCO`]
/// (800/1333, Detectron).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResizeConfig {
    /// Target length of the shorter side.
    pub min_size: usize,
    /// Cap on the longer side.
    pub max_size: usize,
}

impl ResizeConfig {
    /// Pascal VOC: 600 short side, at most 1000 long side.
    pub const VOC: ResizeConfig = ResizeConfig {
        min_size: 600,
        max_size: 1000,
    };
    /// COCO: 800 short side, at most 1333 long side.
    pub const COCO: ResizeConfig = ResizeConfig {
        min_size: 800,
        max_size: 1333,
    };

    /// Output `(height, width)` for an input of `(height, width)`, as Detectron2's
    /// `ResizeShortestEdge`: scale the short side to `min_size`, shrink further if the
    /// long side then exceeds `max_size`, round half up.
    pub fn output_size(&self, height: usize, width: usize) -> (usize, usize) {
        let (h, w) = (height as f64, width as f64);
        let scale = self.min_size as f64 / h.min(w);
        let (mut nh, mut nw) = (h * scale, w * scale);
        let long = nh.max(nw);
        if long > self.max_size as f64 {
            let s = self.max_size as f64 / long;
            nh *= s;
            nw *= s;
        }
        ((nh + 0.5) as usize, (nw + 0.5) as usize)
    }
}

/// Source coordinate of output index `dst` for PyTorch's bilinear interpolation with
/// `align_corners=False` (half-pixel centres, clamped at 0), and its two neighbours.
fn source_index(dst: usize, ratio: f64, len: usize) -> (usize, usize, f32) {
    let src = ((dst as f64 + 0.5) * ratio - 0.5).max(0.0);
    let i0 = (src as usize).min(len - 1);
    let i1 = (i0 + 1).min(len - 1);
    (i0, i1, (src - i0 as f64) as f32)
}

/// Resizes `[c, h, w]` pixels bilinearly to `[c, out_h, out_w]` exactly as
/// `F.interpolate(mode="bilinear", align_corners=False)` without antialiasing (what
/// torchvision's detection transform runs); Burn's and the `image` crate's defaults
/// differ, hence this small loop.
pub fn resize_bilinear(
    pixels: &[f32],
    channels: usize,
    (h, w): (usize, usize),
    (out_h, out_w): (usize, usize),
) -> Vec<f32> {
    let (ry, rx) = (h as f64 / out_h as f64, w as f64 / out_w as f64);
    let xs: Vec<_> = (0..out_w).map(|x| source_index(x, rx, w)).collect();
    let mut out = vec![0f32; channels * out_h * out_w];
    for c in 0..channels {
        let plane = &pixels[c * h * w..(c + 1) * h * w];
        for y in 0..out_h {
            let (y0, y1, ly) = source_index(y, ry, h);
            let row = &mut out[(c * out_h + y) * out_w..(c * out_h + y + 1) * out_w];
            for (o, &(x0, x1, lx)) in row.iter_mut().zip(&xs) {
                let top = plane[y0 * w + x0] * (1.0 - lx) + plane[y0 * w + x1] * lx;
                let bottom = plane[y1 * w + x0] * (1.0 - lx) + plane[y1 * w + x1] * lx;
                *o = top * (1.0 - ly) + bottom * ly;
            }
        }
    }
    out
}

/// Resizes a sample by `config`, scaling its boxes by the exact per-axis factors.
pub fn resize(sample: DetectionSample, config: &ResizeConfig) -> DetectionSample {
    let (nh, nw) = config.output_size(sample.height, sample.width);
    let (sy, sx) = (
        nh as f64 / sample.height as f64,
        nw as f64 / sample.width as f64,
    );
    DetectionSample {
        pixels: resize_bilinear(&sample.pixels, 3, (sample.height, sample.width), (nh, nw)),
        height: nh,
        width: nw,
        boxes: sample.boxes.iter().map(|b| b.scaled(sx, sy)).collect(),
        scale: sample.scale * (sx + sy) / 2.0,
        ..sample
    }
}

/// Mirrors a sample left to right, boxes included.
pub fn hflip(mut sample: DetectionSample) -> DetectionSample {
    let w = sample.width;
    for row in sample.pixels.chunks_exact_mut(w) {
        row.reverse();
    }
    sample.boxes = sample.boxes.iter().map(|b| b.hflipped(w as f64)).collect();
    sample
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detection::BoxXyxy;

    #[test]
    fn output_sizes_follow_the_short_and_long_side_rule() {
        // VOC 500x375 (h x w): short side 375 -> 600, long 800 <= 1000.
        assert_eq!(ResizeConfig::VOC.output_size(375, 500), (600, 800));
        // A panorama 300x1200: 600 short would make 2400 long; capped to 1000 -> 250.
        assert_eq!(ResizeConfig::VOC.output_size(300, 1200), (250, 1000));
        // COCO 480x640 -> 800x1066.67 -> 1067.
        assert_eq!(ResizeConfig::COCO.output_size(480, 640), (800, 1067));
    }

    #[test]
    fn bilinear_matches_pytorch_align_corners_false() {
        // F.interpolate(torch.tensor([[[[0., 1.], [2., 3.]]]]), size=(4, 4), mode="bilinear",
        // align_corners=False) rows: [0, .25, .75, 1], +0.5, +1.5, +2 per row step.
        let out = resize_bilinear(&[0.0, 1.0, 2.0, 3.0], 1, (2, 2), (4, 4));
        let row = [0.0, 0.25, 0.75, 1.0];
        let want: Vec<f32> = [0.0, 0.5, 1.5, 2.0]
            .iter()
            .flat_map(|dy| row.iter().map(move |x| x + dy))
            .collect();
        assert_eq!(out, want);
        // Downsampling 4 -> 2 samples at 0.5 and 2.5: averages of neighbours.
        let out = resize_bilinear(&[0.0, 1.0, 2.0, 3.0], 1, (1, 4), (1, 2));
        assert_eq!(out, vec![0.5, 2.5]);
    }

    fn sample() -> DetectionSample {
        // 1 channel repeated 3 times: 2x3 image with values 0..6.
        let plane: Vec<f32> = (0..6).map(|v| v as f32).collect();
        DetectionSample {
            pixels: plane.iter().chain(&plane).chain(&plane).copied().collect(),
            height: 2,
            width: 3,
            boxes: vec![BoxXyxy::new(0.0, 0.0, 1.0, 2.0)],
            labels: vec![4],
            image_id: 9,
            scale: 1.0,
        }
    }

    #[test]
    fn hflip_mirrors_pixels_and_boxes() {
        let s = hflip(sample());
        assert_eq!(&s.pixels[..6], &[2.0, 1.0, 0.0, 5.0, 4.0, 3.0]);
        assert_eq!(s.boxes, vec![BoxXyxy::new(2.0, 0.0, 3.0, 2.0)]);
        assert_eq!(hflip(s), sample());
    }

    #[test]
    fn resize_scales_boxes_with_the_image() {
        let cfg = ResizeConfig {
            min_size: 4,
            max_size: 100,
        };
        let s = resize(sample(), &cfg);
        assert_eq!((s.height, s.width), (4, 6));
        assert_eq!(s.boxes, vec![BoxXyxy::new(0.0, 0.0, 2.0, 4.0)]);
        assert_eq!(s.scale, 2.0);
        assert_eq!(s.pixels.len(), 3 * 4 * 6);
        assert_eq!((s.labels.clone(), s.image_id), (vec![4], 9));
    }
}
