//! Greedy non-maximum suppression on the host.
//!
//! burn-vision 0.22.1 has an `nms` op, but taking it on would add a crate and its backend dispatch
//! for something that runs on a few thousand host-side boxes once per image; proposals and
//! detections are already host data here (they need no gradient), so a plain loop is used.

use super::boxes::{BBox, iou};
use serde::{Deserialize, Serialize};

/// When a box overlaps a kept one too much.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NmsRule {
    /// The release's kernel (`Detection/support/src/cpu/nms_cpu.cpp` L22, L56-60):
    /// areas in the legacy pixel convention, `(x2 - x1 + 1) * (y2 - y1 + 1)`, and suppression
    /// at IoU `>= threshold`.
    #[default]
    Release,
    /// torchvision's `nms`: continuous areas, suppression at IoU `> threshold`.
    Torchvision,
}

impl NmsRule {
    fn suppresses(self, a: &BBox, b: &BBox, threshold: f32) -> bool {
        match self {
            Self::Torchvision => iou(a, b) > threshold,
            Self::Release => {
                let area = |b: &BBox| (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0);
                let w = (a[2].min(b[2]) - a[0].max(b[0]) + 1.0).max(0.0);
                let h = (a[3].min(b[3]) - a[1].max(b[1]) + 1.0).max(0.0);
                let inter = w * h;
                inter / (area(a) + area(b) - inter) >= threshold
            }
        }
    }
}

/// Indices of the boxes kept, by decreasing score: a box is dropped when its IoU with a kept,
/// higher-scoring box exceeds `threshold` (torchvision's rule: `>`, ties by original order).
pub fn nms(boxes: &[BBox], scores: &[f32], threshold: f32) -> Vec<usize> {
    nms_by(boxes, scores, threshold, NmsRule::Torchvision)
}

/// [`nms`] under `rule`.
pub fn nms_by(boxes: &[BBox], scores: &[f32], threshold: f32, rule: NmsRule) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut keep: Vec<usize> = Vec::new();
    for i in order {
        if !keep
            .iter()
            .any(|&k| rule.suppresses(&boxes[k], &boxes[i], threshold))
        {
            keep.push(i);
        }
    }
    keep
}

/// NMS within each class separately (torchvision's `batched_nms`); kept indices by decreasing score.
pub fn batched_nms(
    boxes: &[BBox],
    scores: &[f32],
    classes: &[usize],
    threshold: f32,
    rule: NmsRule,
) -> Vec<usize> {
    let mut keep: Vec<usize> = Vec::new();
    let mut labels: Vec<usize> = classes.to_vec();
    labels.sort_unstable();
    labels.dedup();
    for c in labels {
        let idx: Vec<usize> = (0..boxes.len()).filter(|&i| classes[i] == c).collect();
        let b: Vec<BBox> = idx.iter().map(|&i| boxes[i]).collect();
        let s: Vec<f32> = idx.iter().map(|&i| scores[i]).collect();
        keep.extend(nms_by(&b, &s, threshold, rule).into_iter().map(|k| idx[k]));
    }
    keep.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppresses_overlaps_above_the_threshold_only() {
        // Box 1 lies inside box 0: IoU 81 / 100; box 2 overlaps box 0 with IoU 50 / 150.
        let boxes = [
            [0.0, 0.0, 10.0, 10.0],
            [1.0, 1.0, 10.0, 10.0],
            [5.0, 0.0, 15.0, 10.0],
            [50.0, 50.0, 60.0, 60.0],
        ];
        let scores = [0.9, 0.95, 0.8, 0.1];
        // Box 1 wins; box 0 goes (0.81 > 0.5); box 2 vs box 1: inter 5*9=45, union 81+100-45=136,
        // 0.33 <= 0.5, kept; box 3 is far away.
        assert_eq!(nms(&boxes, &scores, 0.5), vec![1, 2, 3]);
        // At 0.3 box 2 goes too (0.33 > 0.3).
        assert_eq!(nms(&boxes, &scores, 0.3), vec![1, 3]);
        // At 0.9 nothing overlaps enough.
        assert_eq!(nms(&boxes, &scores, 0.9), vec![1, 0, 2, 3]);
        assert!(nms(&[], &[], 0.5).is_empty());
    }

    #[test]
    fn equal_scores_keep_the_earlier_box() {
        let boxes = [[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 4.0, 4.0]];
        assert_eq!(nms(&boxes, &[0.5, 0.5], 0.7), vec![0]);
    }

    #[test]
    fn batched_nms_never_suppresses_across_classes() {
        let boxes = [
            [0.0, 0.0, 10.0, 10.0],
            [0.0, 0.0, 10.0, 10.0],
            [0.0, 0.0, 10.0, 9.0],
        ];
        let scores = [0.6, 0.7, 0.5];
        let t = NmsRule::Torchvision;
        assert_eq!(batched_nms(&boxes, &scores, &[1, 2, 1], 0.3, t), vec![1, 0]);
        assert_eq!(
            batched_nms(&boxes, &scores, &[1, 2, 3], 0.3, t),
            vec![1, 0, 2]
        );
    }

    #[test]
    fn the_release_counts_pixels_and_suppresses_at_the_threshold() {
        // Legacy areas: 11 x 11 = 121 and 10 x 11 = 110, overlap 110: IoU 110/121 = 0.909; the
        // continuous rule gives 90/100 = 0.9.
        let boxes = [[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 10.0, 10.0]];
        let scores = [0.9, 0.8];
        let release = NmsRule::Release;
        assert_eq!(nms_by(&boxes, &scores, 0.905, release), vec![0]);
        assert_eq!(
            nms_by(&boxes, &scores, 0.905, NmsRule::Torchvision),
            vec![0, 1]
        );
        // At exactly the IoU: the release drops (`>=`), torchvision keeps (`>`).
        let exact = [[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 4.0, 4.0]];
        assert_eq!(nms_by(&exact, &scores, 1.0, release), vec![0]);
        assert_eq!(
            nms_by(&exact, &scores, 1.0, NmsRule::Torchvision),
            vec![0, 1]
        );
    }
}
