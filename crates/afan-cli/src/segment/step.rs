//! One segmentation SGD step, baseline or A-FAN, shared by training and `afan bench --task
//! segment` so the benchmark times exactly what training runs.

use super::config::{SegAfanConfig, SegTrainConfig};
use super::loss::seg_cross_entropy;
use super::objective::seg_afan_objective;
use crate::config::{Method, OptimConfig};
use crate::step::sgd;
use afan_core::{SplitModel, SplitPoint, attack_copy};
use afan_models::DeepLabV3Plus;
use anyhow::Result;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Int, Tensor};

/// The backbone and decoder A-FAN points of `config` (none for the baseline).
pub type SegPoints = Option<(SplitPoint, SplitPoint)>;

/// Resolves the A-FAN points of `config` on `model`.
pub fn seg_points(model: &DeepLabV3Plus, config: &SegTrainConfig) -> Result<SegPoints> {
    Ok(match config.method {
        Method::Baseline | Method::PixelPgd => None,
        Method::Afan => Some((
            model.split_point(&config.afan.backbone.split)?,
            model.split_point(&config.afan.decoder_split)?,
        )),
    })
}

/// The release's SGD (PyTorch semantics: no dampening).
pub fn seg_sgd(config: &SegTrainConfig) -> ModuleOptimizer {
    sgd(&OptimConfig {
        lr: config.lr,
        momentum: config.momentum,
        dampening: 0.0,
        weight_decay: config.weight_decay,
        nesterov: false,
    })
}

/// Forward, backward and update at head rate `lr` (the backbone at `lr * backbone_lr_mult`);
/// returns the updated model and the loss before the update.
#[allow(clippy::too_many_arguments)]
pub fn seg_step(
    model: DeepLabV3Plus,
    optim: &mut ModuleOptimizer,
    (x, y): (Tensor<4>, Tensor<3, Int>),
    points: &SegPoints,
    afan: &SegAfanConfig,
    lr: f64,
    backbone_lr_mult: f64,
) -> (DeepLabV3Plus, f64) {
    let loss = match points {
        None => seg_cross_entropy(model.forward(x), y),
        Some((se, sd)) => {
            let attacker = attack_copy(&model, afan.backbone.attack_bn);
            seg_afan_objective(&model, &attacker, x, (se, sd), afan, |o| {
                seg_cross_entropy(o.clone(), y.clone())
            })
            .loss
        }
    };
    let value = f64::from(loss.clone().into_scalar::<f32>());
    let mut grads = loss.backward();
    let head = GradientsParams::from_module(&mut grads, &model.head);
    let backbone = GradientsParams::from_grads(grads, &model);
    let model = optim.step(lr * backbone_lr_mult, model, backbone);
    (optim.step(lr, model, head), value)
}
