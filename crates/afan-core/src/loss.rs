//! How the losses of the clean and augmented features are combined.
//!
//! The release hard-codes a different formula per task; here each is a named preset that expands
//! to explicit weights, so any other weighting is a configuration, not a code change.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};
use serde::{Deserialize, Serialize};

/// The release's weightings, by task.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossPreset {
    /// `(L_clean + L_adv) / 2` over two points (clean, full strength).
    Classification,
    /// `(L0 + ... + L4) / 3 * (1 - w) + L5 / 3 * w`: five backbone points and one head point.
    Detection {
        /// Weight of the head (RoI) point; the release uses 0.3 to 0.5.
        head_weight: f64,
    },
    /// `0.7 L_clean + 0.1 L_se1 + 0.1 L_se2 + 0.1 L_sd`: three backbone points and one head point.
    Segmentation,
}

/// Explicit weights: one per strength point (point 0 is the clean loss) and one per head point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LossWeights {
    /// Weights of the strength points `0..N`, point 0 being the clean feature.
    pub points: Vec<f64>,
    /// Weights of extra perturbation points in a task head (detection RoI, segmentation decoder).
    #[serde(default)]
    pub head: Vec<f64>,
}

impl LossPreset {
    /// The weights this preset stands for.
    pub fn weights(&self) -> LossWeights {
        match *self {
            LossPreset::Classification => LossWeights {
                points: vec![0.5, 0.5],
                head: Vec::new(),
            },
            LossPreset::Detection { head_weight } => LossWeights {
                points: vec![(1.0 - head_weight) / 3.0; 5],
                head: vec![head_weight / 3.0],
            },
            LossPreset::Segmentation => LossWeights {
                points: vec![0.7, 0.1, 0.1],
                head: vec![0.1],
            },
        }
    }
}

impl LossWeights {
    /// `sum_i w_i L_i` over the strength points, then the head points.
    ///
    /// Missing losses contribute nothing; the config validation guarantees the counts match.
    pub fn combine(&self, points: &[Tensor<1>], head: &[Tensor<1>]) -> Tensor<1> {
        let terms = self
            .points
            .iter()
            .zip(points)
            .chain(self.head.iter().zip(head))
            .map(|(w, l)| l.clone().mul_scalar(*w));
        terms
            .reduce(|a, b| a + b)
            .expect("LossWeights::combine needs at least one loss")
    }
}

/// Mean cross-entropy of `logits` `[B, K]` against class indices `[B]`, with PyTorch's
/// `nn.CrossEntropyLoss()` semantics (mean reduction, no smoothing).
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let [b, _] = logits.dims();
    let log_p = log_softmax(logits, 1);
    let picked = log_p.gather(1, targets.reshape([b, 1]));
    picked.mean().neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::device;
    use burn::tensor::TensorData;

    fn scalar(t: Tensor<1>) -> f64 {
        t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()[0]
    }

    #[test]
    fn presets_reproduce_the_release_formulas() {
        let dev = device();
        let l = |v: f32| Tensor::<1>::from_floats([v], &dev);
        let losses: Vec<_> = [1.0, 2.0, 3.0, 4.0, 5.0].map(l).into();
        let head = [l(6.0)];
        let w = 0.3;
        let det = LossPreset::Detection { head_weight: w }.weights();
        let expected = (1.0 + 2.0 + 3.0 + 4.0 + 5.0) / 3.0 * (1.0 - w) + 6.0 / 3.0 * w;
        assert!((scalar(det.combine(&losses, &head)) - expected).abs() < 1e-5);

        let seg = LossPreset::Segmentation.weights();
        let expected = 0.7 * 1.0 + 0.1 * 2.0 + 0.1 * 3.0 + 0.1 * 6.0;
        assert!((scalar(seg.combine(&losses[..3], &head)) - expected).abs() < 1e-5);

        let cls = LossPreset::Classification.weights();
        assert!((scalar(cls.combine(&losses[..2], &[])) - 1.5).abs() < 1e-6);
    }

    #[test]
    fn cross_entropy_matches_hand_computation() {
        let dev = device();
        let logits = Tensor::<2>::from_floats([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], &dev);
        let targets = Tensor::<1, Int>::from_data(TensorData::from([2i64, 0]), &dev);
        // Row 0: -log(e^3 / (e + e^2 + e^3)); row 1: log 3.
        let lse0 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        let expected = ((lse0 - 3.0) + 3f64.ln()) / 2.0;
        assert!((scalar(cross_entropy(logits, targets)) - expected).abs() < 1e-6);
    }
}
