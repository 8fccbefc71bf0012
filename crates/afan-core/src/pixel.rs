//! Pixel-level PGD adversarial training (Madry et al.), the baseline A-FAN's efficiency argument is
//! measured against: the attack runs through the *whole* network at every step, where A-FAN's
//! runs through the tail only.

use crate::pgd::{Ball, PgdOutcome, Projection, sign_ascent};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// Input-space PGD settings, on the 0..255 image scale like the feature attack's. Defaults are the
/// standard CIFAR setting of Madry et al.: L-inf radius 8, step 2, 7 steps, random start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PixelPgdConfig {
    /// Number of sign steps.
    pub steps: usize,
    /// Step size on the 0..255 scale.
    pub step_size: f64,
    /// L-inf radius on the 0..255 scale.
    pub epsilon: f64,
    /// Start from a uniform point of the ball.
    pub random_start: bool,
}

impl Default for PixelPgdConfig {
    fn default() -> Self {
        Self {
            steps: 7,
            step_size: 2.0,
            epsilon: 8.0,
            random_start: true,
        }
    }
}

/// Attacks images `x` (values in [0, 1], on an autodiff device): `steps` sign steps that raise
/// `loss_of`, each projected to the L-inf ball of radius `epsilon / 255` and to [0, 1].
pub fn pixel_pgd<F>(x: Tensor<4>, config: &PixelPgdConfig, loss_of: F) -> PgdOutcome
where
    F: FnMut(Tensor<4>) -> Tensor<1>,
{
    let ball = Ball {
        radius: config.epsilon / 255.0,
        projection: Projection::Linf,
        range: Some((0.0, 1.0)),
    };
    sign_ascent(
        x,
        config.steps,
        config.step_size / 255.0,
        config.random_start,
        ball,
        loss_of,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    /// loss = sum(w * x) has gradient w: each step moves every pixel by sign(w) * step until the
    /// ball (radius 8/255) or the [0, 1] range stops it.
    #[test]
    fn steps_follow_the_gradient_sign_inside_the_ball_and_the_pixel_range() {
        let device = crate::test_util::device().autodiff();
        let x = Tensor::<4>::from_data(
            TensorData::new(vec![0.5f32, 0.5, 0.999, 0.002], [1, 1, 2, 2]),
            &device,
        );
        let w = Tensor::<4>::from_data(
            TensorData::new(vec![1f32, -1.0, 1.0, -1.0], [1, 1, 2, 2]),
            &device,
        );
        let cfg = PixelPgdConfig {
            steps: 3,
            step_size: 2.0,
            epsilon: 5.0,
            random_start: false,
        };
        let out = pixel_pgd(x, &cfg, |xa| (xa * w.clone()).sum());
        let got = out
            .adversarial
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        // 3 steps of 2/255 = 6/255, clipped to 5/255; then clamped to [0, 1].
        let want = [0.5 + 5.0 / 255.0, 0.5 - 5.0 / 255.0, 1.0, 0.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        assert!((out.linf[0] - 5.0 / 255.0).abs() < 1e-6);
    }
}
