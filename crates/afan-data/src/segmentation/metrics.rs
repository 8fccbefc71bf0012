//! Segmentation scores from one confusion matrix accumulated over a whole split.
//!
//! Scores are computed once from the summed matrix, never averaged over images, as in the
//! reference implementations (VainF's `StreamSegMetrics`, the Cityscapes scripts): per-image
//! averaging would weight small images like large ones. Classes that appear in neither the labels
//! nor the predictions have no IoU (`None`) and are left out of the means, like `np.nanmean`.

use super::IGNORE_LABEL;

/// `counts[t * n + p]` pixels of true class `t` predicted as `p`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfusionMatrix {
    /// Number of classes.
    pub num_classes: usize,
    /// Row-major `num_classes x num_classes` counts, rows = truth.
    pub counts: Vec<u64>,
}

/// Everything the evaluation reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SegScores {
    /// Correct pixels over labelled pixels.
    pub pixel_accuracy: f64,
    /// Mean over classes present in the labels of their pixel accuracy (recall).
    pub mean_accuracy: f64,
    /// Mean over classes with a non-empty union of their IoU.
    pub mean_iou: f64,
    /// IoU weighted by each class's share of the labelled pixels.
    pub frequency_weighted_iou: f64,
    /// IoU of each class, `None` where the class is in neither labels nor predictions.
    pub class_iou: Vec<Option<f64>>,
}

impl ConfusionMatrix {
    /// An empty matrix.
    pub fn new(num_classes: usize) -> Self {
        ConfusionMatrix {
            num_classes,
            counts: vec![0; num_classes * num_classes],
        }
    }

    /// Adds one prediction map. Pixels whose label is not a class (255 = ignore) are skipped.
    /// Panics if the lengths differ or a prediction is not a class.
    pub fn update(&mut self, predictions: &[u8], labels: &[u8]) {
        assert_eq!(predictions.len(), labels.len(), "prediction/label sizes");
        let n = self.num_classes;
        for (&p, &t) in predictions.iter().zip(labels) {
            if usize::from(t) >= n || t == IGNORE_LABEL {
                continue;
            }
            assert!(
                usize::from(p) < n,
                "prediction {p} is not a class below {n}"
            );
            self.counts[usize::from(t) * n + usize::from(p)] += 1;
        }
    }

    /// Adds the arg-max of `logits` `[batch, num_classes, pixels]` (row-major) against `labels`
    /// `[batch, pixels]` (see [`argmax_classes`]).
    pub fn update_logits(&mut self, logits: &[f32], batch: usize, labels: &[u8]) {
        self.update(&argmax_classes(logits, batch, self.num_classes), labels);
    }

    /// Adds the counts of another matrix of the same size.
    pub fn merge(&mut self, other: &ConfusionMatrix) {
        assert_eq!(self.num_classes, other.num_classes, "class counts differ");
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    fn at(&self, t: usize, p: usize) -> u64 {
        self.counts[t * self.num_classes + p]
    }

    /// The scores of the accumulated pixels (all zero before any pixel).
    pub fn scores(&self) -> SegScores {
        let n = self.num_classes;
        let total: u64 = self.counts.iter().sum();
        let diag: Vec<f64> = (0..n).map(|c| self.at(c, c) as f64).collect();
        let rows: Vec<f64> = (0..n)
            .map(|t| (0..n).map(|p| self.at(t, p)).sum::<u64>() as f64)
            .collect();
        let cols: Vec<f64> = (0..n)
            .map(|p| (0..n).map(|t| self.at(t, p)).sum::<u64>() as f64)
            .collect();
        let class_iou: Vec<Option<f64>> = (0..n)
            .map(|c| {
                let union = rows[c] + cols[c] - diag[c];
                (union > 0.0).then(|| diag[c] / union)
            })
            .collect();
        let mean = |xs: Vec<f64>| {
            if xs.is_empty() {
                0.0
            } else {
                xs.iter().sum::<f64>() / xs.len() as f64
            }
        };
        let recalls = (0..n)
            .filter(|&c| rows[c] > 0.0)
            .map(|c| diag[c] / rows[c])
            .collect();
        let fwiou = if total == 0 {
            0.0
        } else {
            (0..n)
                .filter_map(|c| class_iou[c].map(|iou| rows[c] / total as f64 * iou))
                .sum()
        };
        SegScores {
            pixel_accuracy: if total == 0 {
                0.0
            } else {
                diag.iter().sum::<f64>() / total as f64
            },
            mean_accuracy: mean(recalls),
            mean_iou: mean(class_iou.iter().flatten().copied().collect()),
            frequency_weighted_iou: fwiou,
            class_iou,
        }
    }
}

/// Per-pixel arg-max over classes of `[batch, classes, pixels]` logits: `batch * pixels` labels.
/// Ties go to the lower class, as `argmax` does.
pub fn argmax_classes(logits: &[f32], batch: usize, num_classes: usize) -> Vec<u8> {
    assert!(num_classes <= 255, "at most 255 classes fit a u8 label");
    assert!(
        batch > 0 && logits.len().is_multiple_of(batch * num_classes),
        "logits of {} values are not [{batch}, {num_classes}, pixels]",
        logits.len()
    );
    let pixels = logits.len() / (batch * num_classes);
    let mut out = Vec::with_capacity(batch * pixels);
    for image in logits.chunks_exact(num_classes * pixels) {
        out.extend((0..pixels).map(|p| {
            let mut best = 0;
            for c in 1..num_classes {
                if image[c * pixels + p] > image[best * pixels + p] {
                    best = c;
                }
            }
            best as u8
        }));
    }
    out
}
