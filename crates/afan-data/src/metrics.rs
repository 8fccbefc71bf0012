//! Accuracy and loss bookkeeping on plain logits.
//!
//! Metrics work on `&[f32]` so that the training code can copy a batch of
//! logits off the device once and score it here, independently of Burn.

/// Number of samples whose true class is among the top `k` logits.
///
/// `logits` is `[batch, num_classes]` row-major and `labels` has `batch`
/// entries. Tie rule: a sample counts as correct when *strictly fewer* than
/// `k` classes score *strictly higher* than the true class, so ties are
/// resolved in the model's favour, and a constant output is top-1 correct.
/// (This matches `torch.topk` only up to tie order, which is arbitrary there.)
/// A NaN true-class score is never correct; NaN elsewhere never outranks.
///
/// Panics if the sizes disagree or a label is not a class index.
pub fn topk_correct(logits: &[f32], num_classes: usize, labels: &[i64], k: usize) -> usize {
    assert!(num_classes > 0, "num_classes must be positive");
    assert_eq!(
        logits.len(),
        labels.len() * num_classes,
        "logits must be [batch = {}, num_classes = {num_classes}]",
        labels.len()
    );
    logits
        .chunks_exact(num_classes)
        .zip(labels)
        .filter(|&(row, &label)| {
            let label = usize::try_from(label)
                .ok()
                .filter(|&l| l < num_classes)
                .unwrap_or_else(|| panic!("label {label} is not in 0..{num_classes}"));
            let truth = row[label];
            !truth.is_nan() && row.iter().filter(|&&v| v > truth).count() < k
        })
        .count()
}

/// The `k` most probable classes of one row of logits, with their softmax probabilities, most
/// probable first (ties keep the lower class index first, as `torch.topk` does on CPU).
pub fn top_k(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let exp: Vec<f64> = logits.iter().map(|&v| (v as f64 - max).exp()).collect();
    let total: f64 = exp.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|i| (i, (exp[i] / total) as f32))
        .collect()
}

/// Running totals over an epoch: summed loss, top-1/top-5 hits and samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AccuracyMeter {
    /// Sum over samples of the per-sample loss.
    pub loss_sum: f64,
    /// Samples whose true class scored highest (see [`topk_correct`]).
    pub top1_correct: usize,
    /// Samples whose true class was among the five highest.
    pub top5_correct: usize,
    /// Samples seen.
    pub samples: usize,
}

impl AccuracyMeter {
    /// An empty meter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one batch: `mean_loss` is the batch's mean per-sample loss (as
    /// returned by a cross-entropy with mean reduction), `logits` are
    /// `[batch, num_classes]`.
    pub fn update(&mut self, mean_loss: f64, logits: &[f32], num_classes: usize, labels: &[i64]) {
        self.add(
            mean_loss,
            labels.len(),
            topk_correct(logits, num_classes, labels, 1),
            topk_correct(logits, num_classes, labels, 5),
        );
    }

    /// Adds already-counted results of `samples` samples.
    pub fn add(
        &mut self,
        mean_loss: f64,
        samples: usize,
        top1_correct: usize,
        top5_correct: usize,
    ) {
        self.loss_sum += mean_loss * samples as f64;
        self.top1_correct += top1_correct;
        self.top5_correct += top5_correct;
        self.samples += samples;
    }

    /// Combines the totals of another meter (e.g. from another worker).
    pub fn merge(&mut self, other: &AccuracyMeter) {
        self.loss_sum += other.loss_sum;
        self.top1_correct += other.top1_correct;
        self.top5_correct += other.top5_correct;
        self.samples += other.samples;
    }

    fn ratio(&self, x: f64) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            x / self.samples as f64
        }
    }

    /// Top-1 accuracy in `0..=1` (0 before any sample).
    pub fn top1(&self) -> f64 {
        self.ratio(self.top1_correct as f64)
    }

    /// Top-5 accuracy in `0..=1` (0 before any sample).
    pub fn top5(&self) -> f64 {
        self.ratio(self.top5_correct as f64)
    }

    /// Mean per-sample loss (0 before any sample).
    pub fn mean_loss(&self) -> f64 {
        self.ratio(self.loss_sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// softmax([ln 1, ln 2, ln 3, ln 2]) = [1, 2, 3, 2] / 8; the tie keeps class 1 before 3.
    #[test]
    fn top_k_gives_softmax_probabilities_in_rank_order() {
        let logits = [1f32.ln(), 2f32.ln(), 3f32.ln(), 2f32.ln()];
        let top = top_k(&logits, 3);
        let want = [(2, 0.375), (1, 0.25), (3, 0.25)];
        for ((i, p), (wi, wp)) in top.iter().zip(want) {
            assert_eq!(*i, wi);
            assert!((p - wp).abs() < 1e-6, "{p} vs {wp}");
        }
        // Large logits must not overflow.
        assert_eq!(
            top_k(&[1000.0, 999.0], 1),
            vec![(0, (1.0 / (1.0 + (-1f64).exp())) as f32)]
        );
    }

    /// Four samples over 6 classes; the true class's rank is 1, 3, 6 and 2.
    fn example() -> (Vec<f32>, Vec<i64>) {
        #[rustfmt::skip]
        let logits = vec![
            0.9, 0.1, 0.0, 0.0, 0.0, 0.0,   // label 0: rank 1
            0.5, 0.4, 0.3, 0.2, 0.1, 0.0,   // label 2: rank 3
            0.5, 0.4, 0.3, 0.2, 0.1, 0.0,   // label 5: rank 6
            1.0, 3.0, 2.0, 0.0, -1.0, 0.5,  // label 2: rank 2
        ];
        (logits, vec![0, 2, 5, 2])
    }

    #[test]
    fn topk_by_hand() {
        let (logits, labels) = example();
        assert_eq!(topk_correct(&logits, 6, &labels, 1), 1);
        assert_eq!(topk_correct(&logits, 6, &labels, 2), 2);
        assert_eq!(topk_correct(&logits, 6, &labels, 3), 3);
        assert_eq!(topk_correct(&logits, 6, &labels, 5), 3);
        assert_eq!(topk_correct(&logits, 6, &labels, 6), 4);
    }

    #[test]
    fn ties_and_nan() {
        // True class ties with one other for the top: correct at top-1.
        assert_eq!(topk_correct(&[1.0, 1.0, 0.0], 3, &[1], 1), 1);
        // Two classes strictly above: wrong at top-2, right at top-3.
        assert_eq!(topk_correct(&[2.0, 2.0, 1.0], 3, &[2], 2), 0);
        assert_eq!(topk_correct(&[2.0, 2.0, 1.0], 3, &[2], 3), 1);
        assert_eq!(topk_correct(&[f32::NAN, 1.0], 2, &[0], 2), 0);
        assert_eq!(topk_correct(&[f32::NAN, 1.0], 2, &[1], 1), 1);
    }

    #[test]
    #[should_panic(expected = "label 6")]
    fn label_out_of_range_panics() {
        topk_correct(&[0.0; 6], 6, &[6], 1);
    }

    #[test]
    fn meter_accumulates() {
        let (logits, labels) = example();
        let mut m = AccuracyMeter::new();
        assert_eq!((m.top1(), m.mean_loss()), (0.0, 0.0));
        m.update(2.0, &logits, 6, &labels);
        m.update(1.0, &logits[..12], 6, &labels[..2]);
        assert_eq!(m.samples, 6);
        assert_eq!(m.top1_correct, 2);
        assert_eq!(m.top5_correct, 5);
        assert!((m.top1() - 2.0 / 6.0).abs() < 1e-12);
        assert!((m.top5() - 5.0 / 6.0).abs() < 1e-12);
        assert!((m.mean_loss() - 10.0 / 6.0).abs() < 1e-12);
        let mut total = AccuracyMeter::new();
        total.merge(&m);
        total.merge(&m);
        assert_eq!((total.samples, total.top1()), (12, m.top1()));
    }
}
