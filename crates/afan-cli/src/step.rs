//! One training step's loss, shared by `afan train` and `afan bench` so the benchmark times exactly
//! what training runs (the same optimizer, the same objective).

use crate::config::OptimConfig;
use afan_core::{
    AfanConfig, PgdOutcome, SplitModel, SplitPoint, afan_objective, attack_copy, cross_entropy,
};
use afan_models::Classifier;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{ModuleOptimizer, SgdConfig};
use burn::tensor::{Int, Tensor};

/// SGD with PyTorch's semantics, from the configuration (dampening set explicitly: Burn's default
/// is 0.1, PyTorch's 0).
pub fn sgd(o: &OptimConfig) -> ModuleOptimizer {
    let momentum = (o.momentum > 0.0).then(|| MomentumConfig {
        momentum: o.momentum,
        dampening: o.dampening,
        nesterov: o.nesterov,
    });
    let decay = (o.weight_decay > 0.0).then(|| WeightDecayConfig {
        penalty: o.weight_decay as f32,
    });
    SgdConfig::new()
        .with_momentum(momentum)
        .with_weight_decay(decay)
        .init()
}

/// What the attack produced, for the metrics.
pub struct AttackReport {
    /// Perturbation norms.
    pub pgd: PgdOutcome,
    /// Loss of each strength point, point 0 clean.
    pub point_losses: Vec<Tensor<1>>,
}

/// The loss to back-propagate and the clean logits: cross-entropy of the plain forward
/// (`point = None`, the baseline) or the A-FAN objective at `point`.
pub fn training_loss(
    model: &Classifier,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    point: Option<&SplitPoint>,
    afan: &AfanConfig,
) -> (Tensor<1>, Tensor<2>, Option<AttackReport>) {
    match point {
        Some(point) => {
            let attacker = attack_copy(model, afan.attack_bn);
            let out = afan_objective(model, &attacker, x, point, afan, |o| {
                cross_entropy(o.clone(), y.clone())
            });
            let report = AttackReport {
                pgd: out.pgd,
                point_losses: out.point_losses,
            };
            (out.loss, out.clean_output, Some(report))
        }
        None => {
            let logits = model.forward(x);
            (cross_entropy(logits.clone(), y), logits, None)
        }
    }
}
