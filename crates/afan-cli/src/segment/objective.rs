//! The segmentation A-FAN objective: `0.7 L_clean + 0.1 L_se1 + 0.1 L_se2 + 0.1 L_sd`.
//!
//! The backbone (`se`) point follows afan-core's recipe (FGSM on the feature, three strength
//! points, moment exchange where the mask says); the decoder (`sd`) point adds one adversarial
//! feature of its own, attacked with its own (smaller) step. The decoder feature is taken by a
//! second clean pass up to that point: the split-model contract only exposes one cut per pass.

use super::config::SegAfanConfig;
use afan_core::{
    AfanOutput, SplitModel, SplitPoint, feature_pgd, moment_exchange, strength_points,
};
use burn::tensor::Tensor;

/// One A-FAN forward for segmentation; `loss_fn` is the task loss of the model's output.
pub fn seg_afan_objective<M, L>(
    model: &M,
    attacker: &M,
    input: Tensor<4>,
    (se, sd): (&SplitPoint, &SplitPoint),
    config: &SegAfanConfig,
    loss_fn: L,
) -> AfanOutput<M::Output>
where
    M: SplitModel<Input = Tensor<4>>,
    L: Fn(&M::Output) -> Tensor<1>,
{
    let cfg = &config.backbone;
    let feature = model.forward_to(input.clone(), se);
    let pgd = feature_pgd(feature.clone(), &cfg.pgd, |f| {
        loss_fn(&attacker.forward_from(f, se))
    });
    let points = strength_points(feature.clone(), pgd.adversarial.clone(), cfg.strengths);
    let mut clean_output = None;
    let mut point_losses = Vec::with_capacity(points.len());
    for (i, f) in points.into_iter().enumerate() {
        let f = if cfg.mask.applies_to(i) {
            moment_exchange(feature.clone(), f, cfg.stats, cfg.moment_epsilon)
        } else {
            f
        };
        let output = model.forward_from(f, se);
        point_losses.push(loss_fn(&output));
        if i == 0 {
            clean_output = Some(output);
        }
    }

    let decoder = model.forward_to(input, sd);
    let decoder_pgd = feature_pgd(decoder.clone(), &config.decoder_pgd, |f| {
        loss_fn(&attacker.forward_from(f, sd))
    });
    let [_, adversarial] =
        <[Tensor<4>; 2]>::try_from(strength_points(decoder, decoder_pgd.adversarial, 2))
            .unwrap_or_else(|_| unreachable!("two strength points"));
    let head_loss = loss_fn(&model.forward_from(adversarial, sd));

    let loss = cfg
        .loss_weights()
        .combine(&point_losses, std::slice::from_ref(&head_loss));
    point_losses.push(head_loss);
    AfanOutput {
        loss,
        clean_output: clean_output.expect("validated configs have at least two points"),
        point_losses,
        pgd,
    }
}
