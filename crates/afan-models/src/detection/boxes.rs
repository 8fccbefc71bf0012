//! Axis-aligned boxes on the host: the geometry every other detection part shares.
//!
//! Boxes are `[x1, y1, x2, y2]` in pixels with torchvision's continuous convention (width `x2 - x1`,
//! no `+ 1`). Matching, sampling and NMS decide *which* boxes take part and never need a gradient,
//! so they work on plain `Vec` data; only the network's outputs stay tensors.

/// `[x1, y1, x2, y2]` in pixels.
pub type BBox = [f32; 4];

/// Width times height; zero for degenerate boxes.
pub fn area(b: &BBox) -> f32 {
    (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
}

/// Intersection over union; zero when either box is empty.
pub fn iou(a: &BBox, b: &BBox) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// `m[i][j] = iou(a[i], b[j])`.
pub fn iou_matrix(a: &[BBox], b: &[BBox]) -> Vec<Vec<f32>> {
    a.iter()
        .map(|x| b.iter().map(|y| iou(x, y)).collect())
        .collect()
}

/// Clips a box to an image of `[height, width]`.
pub fn clip(b: &BBox, size: [usize; 2]) -> BBox {
    let (h, w) = (size[0] as f32, size[1] as f32);
    [
        b[0].clamp(0.0, w),
        b[1].clamp(0.0, h),
        b[2].clamp(0.0, w),
        b[3].clamp(0.0, h),
    ]
}

/// Whether a box lies inside an image of `[height, width]`, up to `border` pixels outside.
pub fn inside(b: &BBox, size: [usize; 2], border: f32) -> bool {
    b[0] >= -border
        && b[1] >= -border
        && b[2] <= size[1] as f32 + border
        && b[3] <= size[0] as f32 + border
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_hand_drawn_boxes() {
        // Two 2x2 squares overlapping in a 1x2 strip: 2 / (4 + 4 - 2).
        assert!((iou(&[0.0, 0.0, 2.0, 2.0], &[1.0, 0.0, 3.0, 2.0]) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&[0.0, 0.0, 1.0, 1.0], &[2.0, 2.0, 3.0, 3.0]), 0.0);
        assert_eq!(iou(&[0.0, 0.0, 4.0, 4.0], &[0.0, 0.0, 4.0, 4.0]), 1.0);
        // A box inside another: 1 / 16.
        assert!((iou(&[0.0, 0.0, 4.0, 4.0], &[1.0, 1.0, 2.0, 2.0]) - 1.0 / 16.0).abs() < 1e-6);
        assert_eq!(iou(&[1.0, 1.0, 1.0, 5.0], &[1.0, 1.0, 1.0, 5.0]), 0.0);
    }

    #[test]
    fn clip_and_inside_follow_height_then_width() {
        let size = [10, 20];
        assert_eq!(
            clip(&[-3.0, -1.0, 25.0, 12.0], size),
            [0.0, 0.0, 20.0, 10.0]
        );
        assert!(inside(&[0.0, 0.0, 20.0, 10.0], size, 0.0));
        assert!(!inside(&[0.0, 0.0, 20.5, 10.0], size, 0.0));
        assert!(inside(&[-1.0, 0.0, 20.0, 10.0], size, 1.0));
    }
}
