//! Feature-space PGD: a few sign-gradient steps that raise the task loss of an intermediate
//! feature map.
//!
//! The attack is the costly half of A-FAN, so it only ever differentiates with respect to the
//! feature: the caller supplies the loss through the model's tail, ideally from a copy of the model
//! whose parameters require no gradient (see `attack_copy` in the `objective` module), so the backward
//! passes of the attack never compute parameter gradients.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// Which ball the perturbation is kept inside after each step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Projection {
    /// No projection: the release's default, where the perturbation grows by at most
    /// `steps * step_size` per element.
    #[default]
    None,
    /// Element-wise clip to `[f - eps, f + eps]`.
    Linf,
    /// Rescale each sample's perturbation to an L2 norm of at most `eps`.
    L2,
}

/// Feature PGD settings. Step size and radius are given on the 0..255 image scale, as the
/// release's command-line flags are, and divided by 255 when used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeaturePgdConfig {
    /// Number of sign steps `K`. The release trains classification with 5 (3 for the learnable
    /// variant) and detection/segmentation with 1 (FGSM).
    pub steps: usize,
    /// Step size `gamma`, on the 0..255 scale (release: 0.5, 1.0 or 1.5).
    pub step_size: f64,
    /// Radius `eps` for random start and projection, on the 0..255 scale (release: 2).
    pub epsilon: f64,
    /// Start from `f + U(-eps, eps)` instead of `f` (release: off).
    pub random_start: bool,
    /// Projection after each step (release: none).
    pub projection: Projection,
}

impl Default for FeaturePgdConfig {
    fn default() -> Self {
        Self {
            steps: 5,
            step_size: 0.5,
            epsilon: 2.0,
            random_start: false,
            projection: Projection::None,
        }
    }
}

impl FeaturePgdConfig {
    /// FGSM: a single step of size `step_size` (the detection/segmentation setting).
    pub fn fgsm(step_size: f64) -> Self {
        Self {
            steps: 1,
            step_size,
            ..Self::default()
        }
    }

    fn step(&self) -> f64 {
        self.step_size / 255.0
    }

    fn radius(&self) -> f64 {
        self.epsilon / 255.0
    }
}

/// The attacked feature and the size of the perturbation that produced it.
#[derive(Clone, Debug)]
pub struct PgdOutcome {
    /// `f_adv`, detached from any graph.
    pub adversarial: Tensor<4>,
    /// Per-sample L2 norm of `f_adv - f`.
    pub l2: Vec<f32>,
    /// Per-sample L-inf norm of `f_adv - f`.
    pub linf: Vec<f32>,
}

impl PgdOutcome {
    /// Batch mean of the per-sample L2 norms.
    pub fn mean_l2(&self) -> f32 {
        mean(&self.l2)
    }

    /// Batch mean of the per-sample L-inf norms.
    pub fn mean_linf(&self) -> f32 {
        mean(&self.linf)
    }
}

fn mean(values: &[f32]) -> f32 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f32>() / values.len() as f32
    }
}

/// Runs `config.steps` sign-gradient ascent steps on `feature`.
///
/// `feature` must live on an autodiff device; it is detached first, so no gradient reaches the
/// network that produced it. `loss_of` maps a feature to the scalar loss to increase (the task loss
/// through the tail). A step whose loss does not depend on the feature moves nothing.
pub fn feature_pgd<F>(feature: Tensor<4>, config: &FeaturePgdConfig, loss_of: F) -> PgdOutcome
where
    F: FnMut(Tensor<4>) -> Tensor<1>,
{
    let ball = Ball {
        radius: config.radius(),
        projection: config.projection,
        range: None,
    };
    sign_ascent(
        feature,
        config.steps,
        config.step(),
        config.random_start,
        ball,
        loss_of,
    )
}

/// Where the perturbed tensor may go: a ball around the clean one, and optionally a value range
/// (pixels stay in [0, 1]).
pub(crate) struct Ball {
    pub radius: f64,
    pub projection: Projection,
    pub range: Option<(f64, f64)>,
}

impl Ball {
    fn keep(&self, adv: Tensor<4>, clean: &Tensor<4>) -> Tensor<4> {
        let adv = project(adv, clean, self.projection, self.radius);
        match self.range {
            Some((lo, hi)) => adv.clamp(lo, hi),
            None => adv,
        }
    }
}

/// The sign-gradient ascent shared by feature and pixel PGD.
pub(crate) fn sign_ascent<F>(
    start: Tensor<4>,
    steps: usize,
    step_size: f64,
    random_start: bool,
    ball: Ball,
    mut loss_of: F,
) -> PgdOutcome
where
    F: FnMut(Tensor<4>) -> Tensor<1>,
{
    let clean = start.detach();
    let radius = ball.radius;
    let mut adv = clean.clone();
    if random_start && radius > 0.0 {
        adv = adv.clone() + crate::draw::uniform_like(&adv, -radius, radius);
        adv = ball.keep(adv, &clean);
    }
    for _ in 0..steps {
        let leaf = adv.detach().require_grad();
        let loss = loss_of(leaf.clone());
        let grads = loss.backward();
        let Some(grad) = leaf.grad(&grads) else {
            adv = leaf.detach();
            continue;
        };
        // The gradient comes back on the inner (non-autodiff) device; lift it so the update stays
        // on the same device kind as the feature.
        let step = grad.sign().mul_scalar(step_size).autodiff();
        adv = ball.keep(leaf.detach() + step, &clean);
    }
    let (l2, linf) = perturbation_norms(adv.clone() - clean);
    PgdOutcome {
        adversarial: adv.detach(),
        l2,
        linf,
    }
}

fn project(adv: Tensor<4>, clean: &Tensor<4>, projection: Projection, radius: f64) -> Tensor<4> {
    match projection {
        Projection::None => adv,
        Projection::Linf => {
            let delta = (adv - clean.clone()).clamp(-radius, radius);
            clean.clone() + delta
        }
        Projection::L2 => {
            let delta = adv - clean.clone();
            let [b, c, h, w] = delta.dims();
            let norm = delta
                .clone()
                .reshape([b, c * h * w])
                .square()
                .sum_dim(1)
                .sqrt()
                .reshape([b, 1, 1, 1]);
            // Scale only the samples outside the ball: factor = min(1, r / ||delta||).
            let factor = norm
                .add_scalar(1e-12)
                .recip()
                .mul_scalar(radius)
                .clamp_max(1.0);
            clean.clone() + delta * factor
        }
    }
}

/// Per-sample L2 and L-inf norms of a perturbation, read back to the host.
pub fn perturbation_norms(delta: Tensor<4>) -> (Vec<f32>, Vec<f32>) {
    let [b, c, h, w] = delta.dims();
    let flat = delta.detach().reshape([b, c * h * w]);
    let l2 = flat.clone().square().sum_dim(1).sqrt().reshape([b]);
    let linf = flat.abs().max_dim(1).reshape([b]);
    let l2 = l2
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default();
    let linf = linf
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default();
    (l2, linf)
}
