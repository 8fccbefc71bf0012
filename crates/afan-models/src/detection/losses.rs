//! The two detection losses, written with PyTorch's formulas.

use burn::tensor::activation::relu;
use burn::tensor::{FloatDType, Tensor};

/// Elementwise smooth L1 (Huber with transition `beta`), summed: `0.5 x^2 / beta` below `beta`,
/// `|x| - 0.5 beta` above. The release uses `beta = 1/9` (sigma 3) in the RPN and 1 in the RoI
/// head.
pub fn smooth_l1_sum<const D: usize>(pred: Tensor<D>, target: Tensor<D>, beta: f64) -> Tensor<1> {
    // Host targets are f32; under mixed precision the predictions are half.
    let target = target.cast(FloatDType::from(pred.dtype()));
    let abs = (pred - target).abs();
    if beta <= 0.0 {
        return abs.sum();
    }
    let small = abs.clone().lower_elem(beta);
    let quadratic = abs.clone().powi_scalar(2).mul_scalar(0.5 / beta);
    let linear = abs.sub_scalar(0.5 * beta);
    linear.mask_where(small, quadratic).sum()
}

/// Mean binary cross-entropy of logits against 0/1 targets, in the overflow-safe form
/// `max(x, 0) - x y + log(1 + exp(-|x|))` (PyTorch's `binary_cross_entropy_with_logits`).
pub fn bce_with_logits(logits: Tensor<1>, targets: Tensor<1>) -> Tensor<1> {
    let targets = targets.cast(FloatDType::from(logits.dtype()));
    let soft = logits.clone().abs().neg().exp().add_scalar(1.0).log();
    (relu(logits.clone()) - logits * targets + soft).mean()
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
    fn bce_hand_values() {
        let dev = afan_core::device::test_device();
        let x = Tensor::<1>::from_floats([0.0, 2.0, -30.0], &dev);
        let y = Tensor::<1>::from_floats([1.0, 0.0, 0.0], &dev);
        // log 2, log(1 + e^2), ~e^-30.
        let e = (2f64.ln() + (1.0 + 2f64.exp()).ln() + (-30f64).exp()) / 3.0;
        assert!((scalar(bce_with_logits(x, y)) - e).abs() < 1e-6);
    }
}
