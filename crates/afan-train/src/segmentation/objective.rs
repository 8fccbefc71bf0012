//! The segmentation A-FAN objective: `0.7 L_clean + 0.1 L_se1 + 0.1 L_se2 + 0.1 L_sd`.
//!
//! The backbone (`se`) point follows afan-core's recipe (FGSM on the feature, three strength
//! points, moment exchange where the mask says); the decoder (`sd`) point adds one adversarial
//! feature of its own, attacked with its own (smaller) step. The decoder feature is taken by a
//! second clean pass up to that point: the split-model contract only exposes one cut per pass.

use super::config::SegmentationAfanConfig as SegAfanConfig;
use afan_core::{
    AfanOutput, SplitModel, SplitPoint, augmented_losses, feature_pgd, strength_points,
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
    let (mut point_losses, clean_output, pgd) =
        augmented_losses(model, attacker, input.clone(), se, cfg, &loss_fn);

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
        clean_output,
        point_losses,
        pgd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segmentation::loss::seg_cross_entropy;
    use afan_core::{ExchangeMask, attack_copy, materialize};
    use afan_models::{DeepLabBackbone, DeepLabConfig, DeepLabV3Plus};
    use burn::tensor::{Device, Distribution, Int};

    fn scalar(t: &Tensor<1>) -> f64 {
        f64::from(t.clone().into_scalar::<f32>())
    }

    /// A tiny model on an autodiff device, dropout off so that passes are comparable.
    fn setup() -> (DeepLabV3Plus, Tensor<4>, Tensor<3, Int>) {
        let device = Device::default().autodiff();
        device.seed(3);
        let mut model = DeepLabConfig {
            backbone: DeepLabBackbone::MobilenetV2 { width_mult: 0.25 },
            num_classes: 3,
            output_stride: 16,
            aspp_channels: 256,
        }
        .init(&device);
        model.head.aspp.dropout.prob = 0.0;
        let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Default, &device);
        let y = Tensor::<3, Int>::random([2, 32, 32], Distribution::Uniform(0.0, 3.0), &device);
        (materialize(model), x, y)
    }

    fn objective(step_se: f64, step_sd: f64, mask: &str) -> (AfanOutput<Tensor<4>>, f64) {
        let _rng = crate::test_lock::device_rng();
        let (model, x, y) = setup();
        let mut config = SegAfanConfig::default();
        config.backbone.split = "features.6".into();
        config.backbone.pgd.step_size = step_se;
        config.backbone.mask = mask.parse::<ExchangeMask>().unwrap();
        config.decoder_pgd.step_size = step_sd;
        // The attack sees the batch-statistics BN the training passes use (the release's way).
        config.backbone.attack_bn = afan_core::AttackBatchNorm::Train;
        let attacker = attack_copy(&model, config.backbone.attack_bn);
        let (se, sd) = (
            model.split_point("features.6").unwrap(),
            model.split_point("decoder").unwrap(),
        );
        let clean = scalar(&seg_cross_entropy(model.forward(x.clone()), y.clone()));
        let out = seg_afan_objective(&model, &attacker, x, (&se, &sd), &config, |o| {
            seg_cross_entropy(o.clone(), y.clone())
        });
        (out, clean)
    }

    #[test]
    fn zero_steps_reduce_to_the_clean_loss() {
        let (out, clean) = objective(0.0, 0.0, "01");
        let losses: Vec<f64> = out.point_losses.iter().map(scalar).collect();
        assert_eq!(losses.len(), 4, "3 backbone points and the decoder point");
        for l in &losses {
            assert!((l - clean).abs() < 1e-4, "{losses:?} vs clean {clean}");
        }
        // The weights sum to one.
        assert!((scalar(&out.loss) - clean).abs() < 1e-4);
    }

    #[test]
    fn attacks_raise_the_loss_and_weights_are_the_release_preset() {
        // Through a deep tail (ReLU6 kinks, batch statistics) a small backbone step changes the
        // loss by too little, and in no reliable direction, to assert more than that it acts; one
        // large FGSM step right before the classifier reliably raises it.
        let (out, clean) = objective(4.0, 40.0, "00");
        let l: Vec<f64> = out.point_losses.iter().map(scalar).collect();
        assert!((l[0] - clean).abs() < 1e-4, "point 0 is the clean loss");
        assert!(
            (l[1] - clean).abs() > 1e-4 && (l[2] - l[1]).abs() > 1e-4,
            "{l:?}"
        );
        assert!(
            l[3] > clean + 0.1,
            "the decoder attack raises the loss: {l:?}"
        );
        let expected = 0.7 * l[0] + 0.1 * l[1] + 0.1 * l[2] + 0.1 * l[3];
        assert!((scalar(&out.loss) - expected).abs() < 1e-5);
    }
}
