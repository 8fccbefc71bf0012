//! The two detection losses, written with PyTorch's formulas, and how they are reduced over a
//! batch ([`LossNormalization`]).

use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// How the per-sample terms of a detector loss (anchors of the RPN, regions of the RoI head)
/// become one number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossNormalization {
    /// The release: per image, the mean cross-entropy over the image's sample and the smooth-L1
    /// sum over its foreground divided by `4 n_fg + 1e-8` (`Detection/extension/functional.py`
    /// L9, called per image at `rpn/region_proposal_network.py` L182-194 and `model.py`
    /// L365-377), then the mean over the images (`attack_algo.py` L21-27, `compute_loss`). An
    /// image with no sample adds 0 to that mean (the release would make it NaN).
    #[default]
    PerImage,
    /// torchvision: the mean cross-entropy over the batch's whole sample and the smooth-L1 sum
    /// divided by the number of samples (afan before issue 17).
    PerBatch,
}

impl LossNormalization {
    /// Per-sample weights of the classification terms, for images with `sampled[i]` samples
    /// each (samples in image order): the loss is `sum_j w_j ce_j`.
    pub fn class_weights(self, sampled: &[usize]) -> Vec<f32> {
        let total: usize = sampled.iter().sum();
        let images = sampled.len() as f64;
        sampled
            .iter()
            .flat_map(|&n| {
                let w = match self {
                    Self::PerImage => 1.0 / (images * n as f64),
                    Self::PerBatch => 1.0 / total as f64,
                };
                std::iter::repeat_n(w as f32, n)
            })
            .collect()
    }

    /// Per-foreground weights of the box terms (each the smooth-L1 sum over four coordinates),
    /// for images with `foreground[i]` foreground and `sampled[i]` samples in all.
    pub fn box_weights(self, foreground: &[usize], sampled: &[usize]) -> Vec<f32> {
        let total: usize = sampled.iter().sum();
        let images = foreground.len() as f64;
        foreground
            .iter()
            .flat_map(|&n| {
                let w = match self {
                    Self::PerImage => 1.0 / (images * (4.0 * n as f64 + 1e-8)),
                    Self::PerBatch => 1.0 / total.max(1) as f64,
                };
                std::iter::repeat_n(w as f32, n)
            })
            .collect()
    }
}

/// `sum_j weights_j terms_j` (at least one term).
pub fn weighted_sum(terms: Tensor<1>, weights: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = weights.len();
    (terms * Tensor::<1>::from_data(TensorData::new(weights, [n]), device)).sum()
}

/// Smooth L1 of each row of `[N, 4]` predictions against targets, summed over the row: `[N]`.
pub fn smooth_l1_rows(pred: Tensor<2>, target: Tensor<2>, beta: f64) -> Tensor<1> {
    let n = pred.dims()[0];
    smooth_l1(pred, target, beta).sum_dim(1).reshape([n])
}

/// Elementwise smooth L1 (Huber with transition `beta`), summed: `0.5 x^2 / beta` below `beta`,
/// `|x| - 0.5 beta` above. The release uses `beta = 1/9` (sigma 3) in the RPN and 1 in the RoI
/// head.
pub fn smooth_l1_sum<const D: usize>(pred: Tensor<D>, target: Tensor<D>, beta: f64) -> Tensor<1> {
    smooth_l1(pred, target, beta).sum()
}

/// Elementwise smooth L1 (see [`smooth_l1_sum`]).
pub fn smooth_l1<const D: usize>(pred: Tensor<D>, target: Tensor<D>, beta: f64) -> Tensor<D> {
    let abs = (pred - target).abs();
    if beta <= 0.0 {
        return abs;
    }
    let small = abs.clone().lower_elem(beta);
    let quadratic = abs.clone().powi_scalar(2).mul_scalar(0.5 / beta);
    let linear = abs.sub_scalar(0.5 * beta);
    linear.mask_where(small, quadratic)
}

/// Mean binary cross-entropy of logits against 0/1 targets, in the overflow-safe form
/// `max(x, 0) - x y + log(1 + exp(-|x|))` (PyTorch's `binary_cross_entropy_with_logits`).
pub fn bce_with_logits(logits: Tensor<1>, targets: Tensor<1>) -> Tensor<1> {
    bce_terms(logits, targets).mean()
}

/// The terms of [`bce_with_logits`], one per logit.
pub fn bce_terms(logits: Tensor<1>, targets: Tensor<1>) -> Tensor<1> {
    let soft = logits.clone().abs().neg().exp().add_scalar(1.0).log();
    relu(logits.clone()) - logits * targets + soft
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(t: Tensor<1>) -> f64 {
        t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()[0]
    }

    #[test]
    fn smooth_l1_hand_values() {
        let dev = afan_core::device::test_device();
        let p = Tensor::<1>::from_floats([0.05, 1.0, -2.0, 0.0], &dev);
        let t = Tensor::<1>::zeros([4], &dev);
        // beta 1/9: 0.5 * 0.0025 * 9 + (1 - 1/18) + (2 - 1/18) + 0.
        let e = 0.5 * 0.0025 * 9.0 + (1.0 - 1.0 / 18.0) + (2.0 - 1.0 / 18.0);
        assert!((scalar(smooth_l1_sum(p.clone(), t.clone(), 1.0 / 9.0)) - e).abs() < 1e-6);
        // beta 1: 0.5 * 0.0025 + 0.5 + 1.5.
        assert!((scalar(smooth_l1_sum(p, t, 1.0)) - (0.00125 + 0.5 + 1.5)).abs() < 1e-6);
    }

    #[test]
    fn release_normalisation_is_per_image_then_the_mean() {
        // Two images: 3 and 1 samples, 2 and 0 foreground.
        let n = LossNormalization::PerImage;
        assert_eq!(
            n.class_weights(&[3, 1]),
            vec![1.0 / 6.0, 1.0 / 6.0, 1.0 / 6.0, 0.5]
        );
        let b = n.box_weights(&[2, 0], &[3, 1]);
        assert_eq!(b.len(), 2);
        assert!((b[0] - 1.0 / 16.0).abs() < 1e-9, "{b:?}");
        let t = LossNormalization::PerBatch;
        assert_eq!(t.class_weights(&[3, 1]), vec![0.25; 4]);
        assert_eq!(t.box_weights(&[2, 0], &[3, 1]), vec![0.25; 2]);
        let dev = afan_core::device::test_device();
        let terms = Tensor::<1>::from_floats([1.0, 2.0, 4.0], &dev);
        assert_eq!(scalar(weighted_sum(terms, vec![0.5, 0.25, 1.0], &dev)), 5.0);
    }

    #[test]
    fn bce_hand_values() {
        let dev = afan_core::device::test_device();
        let x = Tensor::<1>::from_floats([0.0, 2.0, -30.0], &dev);
        let y = Tensor::<1>::from_floats([1.0, 0.0, 0.0], &dev);
        // log 2, log(1 + e^2), ~e^-30.
        let e = (2f64.ln() + (1.0 + 2f64.exp()).ln() + (-30f64).exp()) / 3.0;
        assert!((scalar(bce_with_logits(x, y)) - e).abs() < 1e-6);
    }
}
