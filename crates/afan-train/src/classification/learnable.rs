//! The learnable multi-layer variant's classification step (`method = "afan_learnable"`,
//! `Classification/main_learnable.py`): every point of `[learnable] splits` attacked on its
//! own detached feature, the adversarial shifts scaled by the engine's point weights
//! ([`crate::task::StepContext::point_weights`]), the loss from `afan_core::learnable_objective`.
//! The weights' update, their state and checkpoints are the engine's (`crate::train`).

use crate::error::{Result, TrainError};
use crate::task::{Measure, StepContext};
use afan_core::{
    AttackBatchNorm, LearnableConfig, SplitModel, SplitPoint, attack_copy, cross_entropy,
    learnable_objective,
};
use afan_models::Classifier;
use burn::tensor::{Int, Tensor};

/// The points of `config.splits` on `model`, or an error naming the field, the point and the
/// model's valid points.
pub(crate) fn points(model: &Classifier, config: &LearnableConfig) -> Result<Vec<SplitPoint>> {
    config
        .splits
        .iter()
        .map(|s| {
            model
                .split_point(s)
                .map_err(|e| TrainError::Config(format!("learnable.splits: {e}")))
        })
        .collect()
}

/// The loss to back-propagate, the clean logits, and the step's measures beyond accuracy: the
/// clean loss, each point's loss (`point_losses`, clean first) and the mean attack norms over
/// the points.
pub(crate) fn loss(
    model: &Classifier,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    config: &LearnableConfig,
    ctx: &StepContext,
) -> Result<(Tensor<1>, Tensor<2>, Vec<Measure>)> {
    let Some(weights) = ctx.point_weights else {
        return Err(TrainError::Config(
            "method = \"afan_learnable\" needs the engine's point weights (train it with \
             afan_train::train)"
                .into(),
        ));
    };
    let points = points(model, config)?;
    // Every pass of the release runs in train mode (`model.train()`, L181).
    let attacker = attack_copy(model, AttackBatchNorm::Train);
    // The weights are f32 leaves; under mixed precision they meet half features.
    let w = ctx.input(weights.clone());
    let out = learnable_objective(model, &attacker, x, &points, &w, config, |o| {
        cross_entropy(o.clone(), y.clone())
    });
    let losses: Vec<f64> = out
        .point_losses
        .into_iter()
        .map(|p| p.into_scalar::<f64>())
        .collect();
    let n = out.pgd.len().max(1) as f64;
    let l2 = out.pgd.iter().map(|p| p.mean_l2() as f64).sum::<f64>() / n;
    let linf = out.pgd.iter().map(|p| p.mean_linf() as f64).sum::<f64>() / n;
    let measures = vec![
        Measure::scalar("clean_loss", losses[0]),
        Measure::scalar("pgd_l2", l2),
        Measure::scalar("pgd_linf", linf),
        Measure::vector("point_losses", losses),
    ];
    Ok((out.loss, out.clean_output, measures))
}

#[cfg(test)]
#[path = "learnable_tests.rs"]
mod tests;
