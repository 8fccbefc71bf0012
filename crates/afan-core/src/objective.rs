//! The A-FAN training objective: attack the feature at the split point, build the strength points,
//! exchange moments where the mask says, and weigh the losses of every point.

use crate::config::{AfanConfig, AttackBatchNorm};
use crate::moments::moment_exchange;
use crate::pgd::{PgdOutcome, feature_pgd};
use crate::routing::{CleanPass, GradientRouting};
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
/// output; it is also the attack loss, as in the release. [`augmented_losses`] says which passes
/// run, in which order, and where their gradients go.
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
    M::Input: Clone,
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
///
/// The passes, as the release runs them under [`GradientRouting::TailOnly`]:
/// 1. the clean head pass `model.forward_to(x)`, whose tail pass gives the clean loss (the
///    release's separate full forward `model(x)`: the same numbers);
/// 2. with [`AttackBatchNorm::Train`], a second head pass on `attacker` — the release's detached
///    `model(x, end_point=...).detach()` — whose only effect beyond its value is the second
///    momentum update of the head's running statistics that the release makes. It builds no
///    graph (the attacker's parameters require no gradient). With
///    [`AttackBatchNorm::Frozen`] no attack-only pass may touch the statistics, so the attack
///    starts from the clean head pass, detached;
/// 3. the `K` attack passes through the tail on `attacker`;
/// 4. the tail passes of the augmented points, built from the detached feature, and of the clean
///    feature, in the order `config.clean_pass` says.
///
/// Under [`GradientRouting::HeadAndTail`] the head runs once and the augmented points are built
/// on its live output, so they train the head too.
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
    M::Input: Clone,
    L: Fn(&M::Output) -> Tensor<1>,
{
    let (clean, base) = match (config.routing, config.attack_bn) {
        (GradientRouting::TailOnly, AttackBatchNorm::Train) => {
            let clean = model.forward_to(input.clone(), point);
            (clean, attacker.forward_to(input, point).detach())
        }
        (routing, _) => {
            let clean = model.forward_to(input, point);
            let base = routing.route(clean.clone());
            (clean, base)
        }
    };
    let pgd = feature_pgd(base.clone(), &config.pgd, |f| {
        loss_fn(&attacker.forward_from(f, point))
    });
    let augmented = augmented_features(base, pgd.adversarial.clone(), config);

    let train = |features: Vec<Tensor<4>>| -> Vec<Tensor<1>> {
        features
            .into_iter()
            .map(|f| loss_fn(&model.forward_from(f, point)))
            .collect()
    };
    let (clean_output, augmented_losses) = match config.clean_pass {
        CleanPass::First => {
            let clean_output = model.forward_from(clean, point);
            (clean_output, train(augmented))
        }
        CleanPass::Last => {
            let augmented_losses = train(augmented);
            (model.forward_from(clean, point), augmented_losses)
        }
    };
    let mut point_losses = Vec::with_capacity(augmented_losses.len() + 1);
    point_losses.push(loss_fn(&clean_output));
    point_losses.extend(augmented_losses);
    (point_losses, clean_output, pgd)
}

/// The augmented features `1..N` of a step: the strength points between `base` and
/// `adversarial`, each replaced by `base` re-normalized to its moments where the mask says.
///
/// `base` is the feature the attack started from, already routed
/// ([`GradientRouting::route`]): detached, the points are constants that train only the tail;
/// live, they carry gradient back into the head.
pub fn augmented_features(
    base: Tensor<4>,
    adversarial: Tensor<4>,
    config: &AfanConfig,
) -> Vec<Tensor<4>> {
    strength_points(base.clone(), adversarial, config.strengths)
        .into_iter()
        .enumerate()
        .skip(1)
        .map(|(i, f)| {
            if config.mask.applies_to(i) {
                moment_exchange(base.clone(), f, config.stats, config.moment_epsilon)
            } else {
                f
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "objective_tests.rs"]
mod tests;
