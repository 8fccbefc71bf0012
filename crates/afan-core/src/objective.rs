//! The A-FAN training objective: attack the feature at the split point, build the strength points,
//! exchange moments where the mask says, and weigh the losses of every point.

use crate::config::{AfanConfig, AttackBatchNorm};
use crate::moments::moment_exchange;
use crate::pgd::{PgdOutcome, feature_pgd};
use crate::split::{SplitModel, SplitPoint};
use crate::strength::strength_points;
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;

/// Everything one A-FAN step produces.
#[derive(Clone, Debug)]
pub struct AfanOutput<O> {
    /// The combined loss to back-propagate.
    pub loss: Tensor<1>,
    /// The model's output on the clean input (for accuracy).
    pub clean_output: O,
    /// The loss of each strength point, point 0 being the clean loss.
    pub point_losses: Vec<Tensor<1>>,
    /// The attack's outcome (perturbation norms).
    pub pgd: PgdOutcome,
}

/// Gives every lazily initialised parameter its value now.
///
/// A lazy parameter keeps its initialisation — including whether it will require a gradient — in
/// state shared by all clones of the module. `model.clone().no_grad()` on a fresh model therefore
/// switches gradients off for the *original* too, and training silently stops updating it. Call this
/// once after building or loading a model, before taking attack copies.
pub fn materialize<M: Module>(model: M) -> M {
    struct Materialize;
    impl ModuleMapper for Materialize {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|tensor| tensor)
        }
    }
    model.map(&mut Materialize)
}

/// A copy of `model` for the attack passes: parameters require no gradient, so the attack's
/// backward passes compute only the gradient of the feature; batch norm per `bn`.
///
/// The copy shares the parameter values and running statistics with `model`, so it is cheap to
/// take once per step (after the optimizer has updated `model`). `model` must be materialized.
pub fn attack_copy<M: Module>(model: &M, bn: AttackBatchNorm) -> M {
    match bn {
        AttackBatchNorm::Train => model.clone().no_grad(),
        AttackBatchNorm::Frozen => model.clone().freeze(),
    }
}

/// One A-FAN forward: the combined loss of the clean and augmented features.
///
/// `model` runs the training passes (gradients reach its parameters); `attacker` — normally
/// [`attack_copy`] of the same model — runs the attack passes. `loss_fn` is the task loss of an
/// output; it is also the attack loss, as in the release.
pub fn afan_objective<M, L>(
    model: &M,
    attacker: &M,
    input: M::Input,
    point: &SplitPoint,
    config: &AfanConfig,
    loss_fn: L,
) -> AfanOutput<M::Output>
where
    M: SplitModel,
    L: Fn(&M::Output) -> Tensor<1>,
{
    let (point_losses, clean_output, pgd) =
        augmented_losses(model, attacker, input, point, config, loss_fn);
    AfanOutput {
        loss: config.loss_weights().combine(&point_losses, &[]),
        clean_output,
        point_losses,
        pgd,
    }
}

/// The part of [`afan_objective`] tasks with extra points build on (segmentation adds a decoder
/// point, detection a RoI point): attack the feature at `point`, take the strength points, exchange
/// moments where the mask says, and return each point's loss (point 0 clean), the clean output and
/// the attack — leaving the weighting to the caller.
pub fn augmented_losses<M, L>(
    model: &M,
    attacker: &M,
    input: M::Input,
    point: &SplitPoint,
    config: &AfanConfig,
    loss_fn: L,
) -> (Vec<Tensor<1>>, M::Output, crate::PgdOutcome)
where
    M: SplitModel,
    L: Fn(&M::Output) -> Tensor<1>,
{
    let feature = model.forward_to(input, point);
    let pgd = feature_pgd(feature.clone(), &config.pgd, |f| {
        loss_fn(&attacker.forward_from(f, point))
    });
    let points = strength_points(feature.clone(), pgd.adversarial.clone(), config.strengths);

    let mut clean_output = None;
    let mut point_losses = Vec::with_capacity(points.len());
    for (i, f) in points.into_iter().enumerate() {
        let f = if config.mask.applies_to(i) {
            moment_exchange(feature.clone(), f, config.stats, config.moment_epsilon)
        } else {
            f
        };
        let output = model.forward_from(f, point);
        point_losses.push(loss_fn(&output));
        if i == 0 {
            clean_output = Some(output);
        }
    }
    let clean = clean_output.expect("validated configs have at least two points");
    (point_losses, clean, pgd)
}

#[cfg(test)]
#[path = "objective_tests.rs"]
mod tests;
