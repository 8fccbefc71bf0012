//! The R-CNN box parametrisation: a box relative to a reference box as `(dx, dy, dw, dh)`, scaled
//! by per-coordinate weights.
//!
//! The RPN uses weights `(1, 1, 1, 1)`; the RoI head divides its targets by the release's
//! normalisation stds `(0.1, 0.1, 0.2, 0.2)`, i.e. weights `(10, 10, 5, 5)`, so both heads regress
//! values of similar magnitude.

use super::boxes::BBox;

/// `log(1000 / 16)`: the largest log-scale a decoded box may take, as in torchvision, so a wild
/// prediction cannot overflow `exp`.
pub const SCALE_CLAMP: f32 = 4.135_166_6;

/// Encodes and decodes boxes relative to reference boxes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoxCoder {
    /// Multipliers of `(dx, dy, dw, dh)`.
    pub weights: [f32; 4],
}

impl BoxCoder {
    /// A coder with the given weights.
    pub fn new(weights: [f32; 4]) -> Self {
        Self { weights }
    }

    /// The coder whose targets are divided by `stds` (the release's `BBOX_NORMALIZE_STDS`).
    pub fn with_stds(stds: [f32; 4]) -> Self {
        Self::new(stds.map(|s| 1.0 / s))
    }

    /// Regression target of `gt` relative to `reference`.
    pub fn encode(&self, gt: &BBox, reference: &BBox) -> [f32; 4] {
        let (rx, ry, rw, rh) = center_size(reference);
        let (gx, gy, gw, gh) = center_size(gt);
        let [wx, wy, ww, wh] = self.weights;
        [
            wx * (gx - rx) / rw,
            wy * (gy - ry) / rh,
            ww * (gw / rw).ln(),
            wh * (gh / rh).ln(),
        ]
    }

    /// The box that `deltas` describe relative to `reference`.
    pub fn decode(&self, deltas: &[f32; 4], reference: &BBox) -> BBox {
        let (rx, ry, rw, rh) = center_size(reference);
        let [wx, wy, ww, wh] = self.weights;
        let cx = deltas[0] / wx * rw + rx;
        let cy = deltas[1] / wy * rh + ry;
        let w = (deltas[2] / ww).min(SCALE_CLAMP).exp() * rw;
        let h = (deltas[3] / wh).min(SCALE_CLAMP).exp() * rh;
        [cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h]
    }
}

fn center_size(b: &BBox) -> (f32, f32, f32, f32) {
    let w = b[2] - b[0];
    let h = b[3] - b[1];
    (b[0] + 0.5 * w, b[1] + 0.5 * h, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn encode_matches_hand_values() {
        // Reference centre (5, 5), size 10x10; gt centre (7, 4), size 20x5.
        let reference = [0.0, 0.0, 10.0, 10.0];
        let gt = [-3.0, 1.5, 17.0, 6.5];
        let unit = BoxCoder::new([1.0; 4]);
        let e = [0.2, -0.1, 2f32.ln(), 0.5f32.ln()];
        assert!(close(&unit.encode(&gt, &reference), &e));
        let roi = BoxCoder::with_stds([0.1, 0.1, 0.2, 0.2]);
        let e = [2.0, -1.0, 5.0 * 2f32.ln(), 5.0 * 0.5f32.ln()];
        assert!(close(&roi.encode(&gt, &reference), &e));
    }

    #[test]
    fn decode_inverts_encode() {
        let coder = BoxCoder::with_stds([0.1, 0.1, 0.2, 0.2]);
        let reference = [12.0, 3.0, 40.0, 61.0];
        for gt in [
            [0.0, 0.0, 5.0, 9.0],
            [11.5, 2.0, 80.0, 30.0],
            [12.0, 3.0, 40.0, 61.0],
        ] {
            let back = coder.decode(&coder.encode(&gt, &reference), &reference);
            assert!(close(&back, &gt), "{back:?} != {gt:?}");
        }
    }

    #[test]
    fn decode_clamps_the_log_scale() {
        let coder = BoxCoder::new([1.0; 4]);
        let b = coder.decode(&[0.0, 0.0, 100.0, 0.0], &[0.0, 0.0, 1.0, 1.0]);
        assert!(((b[2] - b[0]) - SCALE_CLAMP.exp()).abs() < 1e-2);
    }
}
