//! Several perturbation strengths from one attack.
//!
//! One PGD run yields a single adversarial feature; the points of the segment from the clean
//! feature to it are augmentations of graded strength at no further attack cost.

use burn::tensor::Tensor;

/// `n` evenly spaced points `f + t (f_adv - f)`, `t = i / (n - 1)`, `i = 0..n`.
///
/// Point 0 is the clean feature itself and point `n - 1` the full-strength one. The difference
/// `f_adv - f` is taken as a constant (as a pixel perturbation is in adversarial training), so
/// every point carries the gradient of `clean` back into whatever produced it: pass a detached
/// `clean` (the release's routing, [`crate::GradientRouting::route`]) and the points are
/// constants that train only the tail.
///
/// `n == 1` yields only the clean feature; `n == 0` yields nothing.
pub fn strength_points(clean: Tensor<4>, adversarial: Tensor<4>, n: usize) -> Vec<Tensor<4>> {
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![clean];
    }
    let delta = (adversarial - clean.clone().detach()).detach();
    (0..n)
        .map(|i| {
            if i == 0 {
                clean.clone()
            } else {
                let t = i as f64 / (n - 1) as f64;
                clean.clone() + delta.clone().mul_scalar(t)
            }
        })
        .collect()
}

/// The interpolation weights `t_i` of [`strength_points`], for reporting.
pub fn strengths(n: usize) -> Vec<f64> {
    match n {
        0 => Vec::new(),
        1 => vec![0.0],
        _ => (0..n).map(|i| i as f64 / (n - 1) as f64).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{device, tensor4};
    use burn::tensor::{TensorData, Tolerance};

    #[test]
    fn points_lie_evenly_on_the_segment() {
        let dev = device();
        let clean = tensor4(&dev, [1, 1, 1, 2], &[0.0, 1.0]);
        let adv = tensor4(&dev, [1, 1, 1, 2], &[4.0, -3.0]);
        let points = strength_points(clean, adv, 5);
        assert_eq!(points.len(), 5);
        let expected = [
            [0.0, 1.0],
            [1.0, 0.0],
            [2.0, -1.0],
            [3.0, -2.0],
            [4.0, -3.0],
        ];
        for (p, e) in points.iter().zip(expected) {
            p.to_data().assert_approx_eq::<f32>(
                &TensorData::new(e.to_vec(), [1, 1, 1, 2]),
                Tolerance::default(),
            );
        }
    }

    #[test]
    fn degenerate_counts() {
        let dev = device();
        let clean = tensor4(&dev, [1, 1, 1, 1], &[2.0]);
        let adv = tensor4(&dev, [1, 1, 1, 1], &[5.0]);
        assert!(strength_points(clean.clone(), adv.clone(), 0).is_empty());
        let one = strength_points(clean, adv, 1);
        assert_eq!(one[0].to_data().try_to_vec::<f32>().unwrap(), vec![2.0]);
        assert_eq!(strengths(3), vec![0.0, 0.5, 1.0]);
    }

    #[test]
    fn gradient_flows_to_the_clean_feature_through_every_point() {
        let dev = device().autodiff();
        let clean = tensor4(&dev, [1, 1, 1, 1], &[1.0]).require_grad();
        let adv = tensor4(&dev, [1, 1, 1, 1], &[3.0]);
        let points = strength_points(clean.clone(), adv, 3);
        let total = points.into_iter().reduce(|a, b| a + b).unwrap().sum();
        let grads = total.backward();
        let g = clean
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        // d/dc (c + (c + 0.5 d) + (c + d)) = 3 with d constant.
        assert_eq!(g, vec![3.0]);
    }
}
