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

    /// Output `(height, width)` for an input of `(height, width)`, as the release's
    /// `preprocess` (`Detection/dataset/base.py` L74-86) computes it: scale the short side to
    /// `min_size`, shrink further if the long side then exceeds `max_size`, and Python's
    /// `round` (half to even) of each side times that scale, in the release's order of
    /// operations.
    pub fn output_size(&self, height: usize, width: usize) -> (usize, usize) {
        let (h, w) = (height as f64, width as f64);
        let scale_for_shorter_side = self.min_size as f64 / h.min(w);
        let longer_side_after_scaling = h.max(w) * scale_for_shorter_side;
        let scale_for_longer_side = if longer_side_after_scaling > self.max_size as f64 {
            self.max_size as f64 / longer_side_after_scaling
        } else {
            1.0
        };
        let scale = scale_for_shorter_side * scale_for_longer_side;
        let side = |v: f64| ((v * scale).round_ties_even() as usize).max(1);
        (side(h), side(w))
    }
}

/// Resizes `[c, h, w]` pixels in `[0, 1]` to `[c, out_h, out_w]` as the release's
/// `transforms.Resize` on its PIL image does: each plane as 8-bit values (exact for decoded
/// images; generated ones are rounded to the nearest level, as saving them would), Pillow's
/// antialiased bilinear ([`crate::resize::pil_bilinear`]), back to `[0, 1]`.
pub fn resize_pil_bilinear(
    pixels: &[f32],
    channels: usize,
    (h, w): (usize, usize),
    (out_h, out_w): (usize, usize),
) -> Vec<f32> {
    pixels
        .chunks_exact(h * w)
        .take(channels)
        .flat_map(|plane| {
            let bytes: Vec<u8> = plane
                .iter()
                .map(|&v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
                .collect();
            crate::resize::pil_bilinear(&bytes, (w, h), 1, (out_w, out_h))
        })
        .map(|v| f32::from(v) / 255.0)
        .collect()
}

/// Resizes a sample by `config`, scaling its boxes by the exact per-axis factors.
pub fn resize(sample: DetectionSample, config: &ResizeConfig) -> DetectionSample {
    let (nh, nw) = config.output_size(sample.height, sample.width);
    let (sy, sx) = (
        nh as f64 / sample.height as f64,
        nw as f64 / sample.width as f64,
    );
    DetectionSample {
        pixels: resize_pil_bilinear(&sample.pixels, 3, (sample.height, sample.width), (nh, nw)),
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
    fn pixels_resize_as_pillow_does_their_8_bit_planes() {
        // 2 -> 1 across: Pillow averages the two levels (0 and 255 give 128); each plane alone.
        let out = resize_pil_bilinear(&[0.0, 1.0, 1.0, 1.0], 2, (1, 2), (1, 1));
        assert_eq!(out, vec![128.0 / 255.0, 1.0]);
    }

    #[test]
    fn output_sizes_round_half_to_even_as_the_release() {
        // Ties: 5x2 (h x w) to short side 3 is 7.5 -> 8 (even), 7x2 is 10.5 -> 10 (half up,
        // as Detectron2 rounds, would give 11).
        let r = ResizeConfig {
            min_size: 3,
            max_size: 100,
        };
        assert_eq!(r.output_size(5, 2), (8, 3));
        assert_eq!(r.output_size(7, 2), (10, 3));
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
