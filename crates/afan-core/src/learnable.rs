//! The learnable multi-layer variant (`Classification/main_learnable.py`): perturb several split
//! points at once, each adversarial feature scaled by a learned weight, the weights trained by
//! their own SGD under an L1 penalty and projected after every step.
//!
//! One step, as the release runs it (`main_learnable.py` `train`, L195-252):
//! 1. for each point `p_i` (L202-215): the detached feature `f_i = head_i(x)` (train mode) and
//!    `K` sign steps on it through `tail_i` give `a_i`;
//! 2. for each point (L218-227): `tail_i(f_i + w_i (a_i - f_i))`; then the clean `model(x)` (L228);
//! 3. `loss = (CE(clean) + mean_i CE_i) / 2 + l1_coef * |w|_1` (L236-242);
//! 4. the network's SGD and the weights' own SGD step (lr 0.01, momentum 0.9, no decay;
//!    L85-89, L247-248), then the weights are projected (L251-252).
//!
//! The release's projection, `sum_project` (L369-378), moves the weights onto the plane
//! `sum w = 1` (`w - (sum w - 1) / P`); it keeps neither sign nor bound, so a weight can go
//! negative (the point then trains on a feature moved *against* the attack) or above one.
//! [`WeightProjection::Simplex`] is the Euclidean projection onto the probability simplex
//! (`w >= 0`, `sum w = 1`; Duchi et al., ICML 2008), which is what "weights of the points" reads as.
//!
//! The weights are a handful of scalars, kept on the host in f64 ([`PointWeights`]): the
//! projections sort and shift them there anyway, the state (weights and momentum) serializes
//! with serde into the engine's checkpoints, and the update is PyTorch's SGD written out in three
//! lines — a Burn optimizer would need a module and a record for the same.
//!
//! Gradient routing is the release's only: every point's feature is detached (train-mode batch
//! norm, the attack on a copy whose parameters need no gradient), so each point trains the layers
//! after it, and the clean loss trains the whole network.

use crate::pgd::{FeaturePgdConfig, PgdOutcome, feature_pgd};
use crate::split::{SplitModel, SplitPoint};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// How the weights are brought back to a feasible set after each step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightProjection {
    /// The release's `sum_project`: the closest point of the plane `sum w = 1`.
    #[default]
    Plane,
    /// The closest point of the probability simplex: `w >= 0`, `sum w = 1`.
    Simplex,
}

impl WeightProjection {
    /// Projects `w` in place.
    pub fn apply(self, w: &mut [f64]) {
        match self {
            WeightProjection::Plane => project_plane(w),
            WeightProjection::Simplex => project_simplex(w),
        }
    }
}

/// `w - (sum w - 1) / P`: `sum_project` (main_learnable.py L369-378).
pub fn project_plane(w: &mut [f64]) {
    if w.is_empty() {
        return;
    }
    let mu = (w.iter().sum::<f64>() - 1.0) / w.len() as f64;
    w.iter_mut().for_each(|v| *v -= mu);
}

/// The Euclidean projection onto `{w : w >= 0, sum w = 1}`: sort descending, find the largest
/// `r` with `u_r > (sum_{j<=r} u_j - 1) / r`, subtract that threshold and clip at zero.
pub fn project_simplex(w: &mut [f64]) {
    if w.is_empty() {
        return;
    }
    let mut u = w.to_vec();
    u.sort_by(|a, b| b.total_cmp(a));
    let mut cumulative = 0.0;
    let mut theta = 0.0;
    for (j, &uj) in u.iter().enumerate() {
        cumulative += uj;
        let t = (cumulative - 1.0) / (j + 1) as f64;
        if uj - t > 0.0 {
            theta = t;
        }
    }
    w.iter_mut().for_each(|v| *v = (*v - theta).max(0.0));
}

/// The learnable variant's setting; defaults are `Classification/main_learnable.py`'s.
///
/// In a run's configuration it is the `[learnable]` section of `method = "afan_learnable"`
/// (the engine reads it), e.g.
///
/// ```toml
/// method = "afan_learnable"
/// [learnable]
/// splits = ["stem", "layer1.1", "layer2.2", "layer3.2"]   # ResNet-20; default: ResNet-56's nine
/// projection = "simplex"                                 # or "plane" (the release)
/// lr = 0.01
/// momentum = 0.9
/// l1_coef = 1.0
/// [learnable.pgd]
/// steps = 3
/// step_size = 1.0
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LearnableConfig {
    /// The perturbed points. Default: the release's `perturb_idx_list = [4, 8, 11, 14, 18, 21,
    /// 24, 28, 31]` (L59) of ResNet-56s's `sequential_model`, i.e. after the stem and after
    /// blocks `layer1.3`, `layer1.6`, `layer2.0`, `layer2.4`, `layer2.7`, `layer3.1`, `layer3.5`,
    /// `layer3.8` (resnet_s.py L86-109). Other models name their own points.
    pub splits: Vec<String>,
    /// The attack at every point: `--steps 3`, `--gamma 1` (L47-48), `--eps 2`, no random start,
    /// no clipping (L49-51). A `[learnable.pgd]` table read on its own fills the fields it
    /// omits from `FeaturePgdConfig::default()` (5 steps of 0.5), as every nested table does;
    /// loaders that merge the file over the serialized defaults (afan's) keep these.
    pub pgd: FeaturePgdConfig,
    /// Initial weight of every point; `None` is `1 / P`, the release's `1/9` for its nine points
    /// (`--init_weight`, L55).
    pub init_weight: Option<f64>,
    /// The weights' learning rate, constant (`--w_lr 0.01`, L54; neither the warm-up nor the
    /// schedule touch `optimizer_w`).
    pub lr: f64,
    /// The weights' SGD momentum, PyTorch's (no dampening): `--momentum 0.9` (L40, L87-89).
    pub momentum: f64,
    /// Coefficient of `|w|_1` in the loss (`--l1_coef 1`, L56, L240-242).
    pub l1_coef: f64,
    /// The projection after each step (release: `plane`, L251-252).
    pub projection: WeightProjection,
}

impl Default for LearnableConfig {
    fn default() -> Self {
        Self {
            splits: [
                "stem", "layer1.3", "layer1.6", "layer2.0", "layer2.4", "layer2.7", "layer3.1",
                "layer3.5", "layer3.8",
            ]
            .map(String::from)
            .to_vec(),
            pgd: FeaturePgdConfig {
                steps: 3,
                step_size: 1.0,
                ..FeaturePgdConfig::default()
            },
            init_weight: None,
            lr: 0.01,
            momentum: 0.9,
            l1_coef: 1.0,
            projection: WeightProjection::Plane,
        }
    }
}

/// A learnable setting whose parts do not fit together.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum LearnableConfigError {
    /// No point, or one point twice.
    #[error("learnable.splits = {splits:?}: {expected}")]
    Splits {
        /// As written.
        splits: Vec<String>,
        /// What they must be.
        expected: &'static str,
    },
    /// A number outside its domain.
    #[error("learnable.{field} = {value} is invalid: {expected}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Its value.
        value: f64,
        /// What it must be.
        expected: &'static str,
    },
}

impl LearnableConfig {
    /// Checks the parts; call it where the configuration is read.
    pub fn validate(&self) -> Result<(), LearnableConfigError> {
        if self.splits.is_empty() {
            return Err(LearnableConfigError::Splits {
                splits: self.splits.clone(),
                expected: "at least one split point",
            });
        }
        let mut seen = self.splits.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.splits.len() {
            return Err(LearnableConfigError::Splits {
                splits: self.splits.clone(),
                expected: "each point once",
            });
        }
        let checks = [
            ("lr", self.lr, 0.0..=f64::INFINITY),
            ("momentum", self.momentum, 0.0..=1.0),
            ("l1_coef", self.l1_coef, 0.0..=f64::INFINITY),
            ("pgd.step_size", self.pgd.step_size, 0.0..=f64::INFINITY),
            ("pgd.epsilon", self.pgd.epsilon, 0.0..=f64::INFINITY),
            (
                "init_weight",
                self.init_weight.unwrap_or(0.0),
                f64::NEG_INFINITY..=f64::INFINITY,
            ),
        ];
        for (field, value, range) in checks {
            if !value.is_finite() || !range.contains(&value) {
                return Err(LearnableConfigError::Invalid {
                    field,
                    value,
                    expected: if field == "momentum" {
                        "a number in [0, 1]"
                    } else if field == "init_weight" {
                        "a finite number"
                    } else {
                        "a finite, non-negative number"
                    },
                });
            }
        }
        Ok(())
    }

    /// The initial weights: `init_weight` (or `1 / P`) at every point, unprojected as in the
    /// release (its `1/9` for nine points already lies on the plane).
    pub fn initial_weights(&self) -> PointWeights {
        let p = self.splits.len();
        let init = self.init_weight.unwrap_or(1.0 / p.max(1) as f64);
        PointWeights {
            values: vec![init; p],
            velocity: None,
        }
    }
}

/// The per-point weights and their optimizer state (PyTorch SGD's momentum buffer, absent before
/// the first step).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointWeights {
    /// One weight per point, in the order of [`LearnableConfig::splits`].
    pub values: Vec<f64>,
    /// The momentum buffer.
    pub velocity: Option<Vec<f64>>,
}

impl PointWeights {
    /// The weights as a leaf that records its gradient: build it once per step, pass it to
    /// [`learnable_objective`], and after the backward pass read its gradient (before the
    /// gradients are handed to the network's optimizer, which consumes them).
    pub fn leaf(&self, device: &Device) -> Tensor<1> {
        let data = TensorData::new(
            self.values.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            [self.values.len()],
        );
        Tensor::<1>::from_data(data, device).require_grad()
    }

    /// One SGD step (PyTorch's rule: `buf = g` on the first step, then `buf = m buf + g`;
    /// `w -= lr buf`; no weight decay), then the projection.
    pub fn step(&mut self, grad: &[f64], config: &LearnableConfig) {
        assert_eq!(grad.len(), self.values.len(), "one gradient per weight");
        let velocity = match self.velocity.take() {
            Some(mut v) if config.momentum > 0.0 => {
                v.iter_mut()
                    .zip(grad)
                    .for_each(|(v, g)| *v = config.momentum * *v + g);
                v
            }
            _ => grad.to_vec(),
        };
        self.values
            .iter_mut()
            .zip(&velocity)
            .for_each(|(w, v)| *w -= config.lr * v);
        if config.momentum > 0.0 {
            self.velocity = Some(velocity);
        }
        config.projection.apply(&mut self.values);
    }

    /// [`step`](Self::step) with the gradient the backward pass left on `leaf`; a leaf that got
    /// none (no point reached the loss) counts as a zero gradient.
    pub fn step_from(
        &mut self,
        leaf: &Tensor<1>,
        grads: &burn::tensor::Gradients,
        config: &LearnableConfig,
    ) {
        let grad = self.gradient(leaf, grads);
        self.step(&grad, config);
    }

    /// The gradient the backward pass left on `leaf`, on the host (zeros where it got none):
    /// what [`step_from`](Self::step_from) steps with, for a caller that must rescale it first
    /// (a loss-scaled mixed-precision step).
    pub fn gradient(&self, leaf: &Tensor<1>, grads: &burn::tensor::Gradients) -> Vec<f64> {
        leaf.grad(grads)
            .map(|g| {
                g.into_data()
                    .convert::<f64>()
                    .try_to_vec::<f64>()
                    .expect("a float gradient")
            })
            .unwrap_or_else(|| vec![0.0; self.values.len()])
    }
}

/// Everything one step of the learnable variant produces.
#[derive(Clone, Debug)]
pub struct LearnableOutput<O> {
    /// `(L_clean + mean_i L_i) / 2 + l1_coef |w|_1`, to back-propagate.
    pub loss: Tensor<1>,
    /// The model's output on the clean input.
    pub clean_output: O,
    /// The clean loss, then each point's loss, in the order of the points.
    pub point_losses: Vec<Tensor<1>>,
    /// Each point's attack.
    pub pgd: Vec<PgdOutcome>,
}

/// One forward of the learnable variant, passes in the release's order (see the module doc).
///
/// `points` are the resolved [`LearnableConfig::splits`]; `weights` is [`PointWeights::leaf`].
/// `attacker` is [`crate::attack_copy`] of `model` with batch norm in training mode, as every
/// pass of the release is.
pub fn learnable_objective<M, L>(
    model: &M,
    attacker: &M,
    input: M::Input,
    points: &[SplitPoint],
    weights: &Tensor<1>,
    config: &LearnableConfig,
    loss_fn: L,
) -> LearnableOutput<M::Output>
where
    M: SplitModel,
    M::Input: Clone,
    L: Fn(&M::Output) -> Tensor<1>,
{
    assert_eq!(
        weights.dims()[0],
        points.len(),
        "one weight per perturbed point"
    );
    let attacked: Vec<(Tensor<4>, PgdOutcome)> = points
        .iter()
        .map(|point| {
            let feature = attacker.forward_to(input.clone(), point).detach();
            let pgd = feature_pgd(feature.clone(), &config.pgd, |f| {
                loss_fn(&attacker.forward_from(f, point))
            });
            (feature, pgd)
        })
        .collect();
    let point_losses: Vec<Tensor<1>> = attacked
        .iter()
        .zip(points)
        .enumerate()
        .map(|(i, ((feature, pgd), point))| {
            let w = weights.clone().slice(i..i + 1).reshape([1, 1, 1, 1]);
            let delta = pgd.adversarial.clone() - feature.clone();
            loss_fn(&model.forward_from(feature.clone() + delta * w, point))
        })
        .collect();
    let clean_output = model.forward(input);
    let clean_loss = loss_fn(&clean_output);

    let mean_points = point_losses
        .iter()
        .cloned()
        .reduce(|a, b| a + b)
        .expect("at least one point")
        .div_scalar(points.len() as f64);
    let l1 = weights.clone().abs().sum().mul_scalar(config.l1_coef);
    let loss = (clean_loss.clone() + mean_points).mul_scalar(0.5) + l1;
    let mut losses = Vec::with_capacity(points.len() + 1);
    losses.push(clean_loss);
    losses.extend(point_losses);
    LearnableOutput {
        loss,
        clean_output,
        point_losses: losses,
        pgd: attacked.into_iter().map(|(_, pgd)| pgd).collect(),
    }
}

#[cfg(test)]
#[path = "learnable_tests.rs"]
mod tests;
