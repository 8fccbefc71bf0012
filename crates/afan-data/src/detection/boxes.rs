//! Axis-aligned boxes in continuous pixel coordinates.
//!
//! Every box inside this crate is `[x1, y1, x2, y2]` with `x2 - x1` its width:
//! the corners of the box on the continuous image plane, where pixel `i`
//! (0-based) covers `[i, i + 1)`. Dataset formats are converted on load:
//!
//! - Pascal VOC stores 1-based *inclusive* pixel indices `xmin..=xmax`. The
//!   object covers 0-based pixels `xmin - 1 ..= xmax - 1`, i.e. the continuous
//!   span `[xmin - 1, xmax)`, so we subtract 1 from `xmin`/`ymin` only — the
//!   torchvision/Detectron convention. The devkit's `+ 1` in widths and areas
//!   then becomes a plain difference, and IoUs equal the devkit's exactly.
//! - COCO stores `[x, y, w, h]` already continuous: `[x, y, x + w, y + h]`.

use serde::{Deserialize, Serialize};

/// A box `[x1, y1, x2, y2]` in continuous pixel coordinates (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoxXyxy {
    /// Left edge.
    pub x1: f64,
    /// Top edge.
    pub y1: f64,
    /// Right edge.
    pub x2: f64,
    /// Bottom edge.
    pub y2: f64,
}

impl BoxXyxy {
    /// A box from its corners.
    pub fn new(x1: f64, y1: f64, x2: f64, y2: f64) -> Self {
        BoxXyxy { x1, y1, x2, y2 }
    }

    /// COCO's `[x, y, w, h]`.
    pub fn from_xywh([x, y, w, h]: [f64; 4]) -> Self {
        BoxXyxy::new(x, y, x + w, y + h)
    }

    /// VOC's 1-based inclusive pixel indices (see the module docs).
    pub fn from_voc_pixels(xmin: f64, ymin: f64, xmax: f64, ymax: f64) -> Self {
        BoxXyxy::new(xmin - 1.0, ymin - 1.0, xmax, ymax)
    }

    /// Back to COCO's `[x, y, w, h]`, e.g. for writing result files.
    pub fn to_xywh(&self) -> [f64; 4] {
        [self.x1, self.y1, self.width(), self.height()]
    }

    /// Width (negative for a degenerate box).
    pub fn width(&self) -> f64 {
        self.x2 - self.x1
    }

    /// Height (negative for a degenerate box).
    pub fn height(&self) -> f64 {
        self.y2 - self.y1
    }

    /// Area; zero for degenerate boxes.
    pub fn area(&self) -> f64 {
        self.width().max(0.0) * self.height().max(0.0)
    }

    /// True when the box has positive width and height and finite corners.
    pub fn is_proper(&self) -> bool {
        [self.x1, self.y1, self.x2, self.y2]
            .iter()
            .all(|v| v.is_finite())
            && self.x2 > self.x1
            && self.y2 > self.y1
    }

    /// Area of the intersection with `other`.
    pub fn intersection(&self, other: &BoxXyxy) -> f64 {
        let w = self.x2.min(other.x2) - self.x1.max(other.x1);
        let h = self.y2.min(other.y2) - self.y1.max(other.y1);
        if w <= 0.0 || h <= 0.0 { 0.0 } else { w * h }
    }

    /// Intersection over union.
    pub fn iou(&self, other: &BoxXyxy) -> f64 {
        let i = self.intersection(other);
        if i == 0.0 {
            return 0.0;
        }
        i / (self.area() + other.area() - i)
    }

    /// The same box in an image scaled by `(sx, sy)`.
    pub fn scaled(&self, sx: f64, sy: f64) -> Self {
        BoxXyxy::new(self.x1 * sx, self.y1 * sy, self.x2 * sx, self.y2 * sy)
    }

    /// The same box in an image of width `image_width` mirrored left to right.
    pub fn hflipped(&self, image_width: f64) -> Self {
        BoxXyxy::new(
            image_width - self.x2,
            self.y1,
            image_width - self.x1,
            self.y2,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voc_pixels_become_continuous_spans() {
        // A VOC box covering pixels 1..=10 (1-based) is 10 pixels wide: the devkit's
        // `xmax - xmin + 1`.
        let b = BoxXyxy::from_voc_pixels(1.0, 1.0, 10.0, 5.0);
        assert_eq!(b, BoxXyxy::new(0.0, 0.0, 10.0, 5.0));
        assert_eq!(b.area(), 50.0);
    }

    #[test]
    fn iou_matches_hand_computed_values() {
        let a = BoxXyxy::from_xywh([0.0, 0.0, 4.0, 4.0]);
        let b = BoxXyxy::from_xywh([2.0, 2.0, 4.0, 4.0]);
        // Intersection 2x2 = 4, union 16 + 16 - 4 = 28.
        assert_eq!(a.iou(&b), 4.0 / 28.0);
        assert_eq!(a.iou(&a), 1.0);
        // Touching edges do not overlap.
        assert_eq!(a.iou(&BoxXyxy::from_xywh([4.0, 0.0, 1.0, 1.0])), 0.0);
        assert_eq!(b.to_xywh(), [2.0, 2.0, 4.0, 4.0]);
    }

    #[test]
    fn flip_and_scale_move_corners() {
        let b = BoxXyxy::new(1.0, 2.0, 3.0, 6.0);
        assert_eq!(b.hflipped(10.0), BoxXyxy::new(7.0, 2.0, 9.0, 6.0));
        assert_eq!(b.scaled(2.0, 0.5), BoxXyxy::new(2.0, 1.0, 6.0, 3.0));
        assert!(b.is_proper());
        assert!(!BoxXyxy::new(3.0, 0.0, 1.0, 1.0).is_proper());
    }
}
