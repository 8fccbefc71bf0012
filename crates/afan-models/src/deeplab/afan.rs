//! The release's A-FAN objective for DeepLabV3+ (`Segmentation/main_aug_final.py`): a backbone
//! (`se`) point with three strength points and a decoder (`sd`) point with one adversarial
//! feature, `0.7 L_clean + 0.1 L_se1 + 0.1 L_se2 + 0.1 L_sd` ([`LossPreset::Segmentation`]).
//!
//! [`SegmentationAfanConfig::voc`] and [`SegmentationAfanConfig::cityscapes`] are the release's
//! settings, field by field; the rest are named options (docs/method.md).
//!
//! # The skip feature
//!
//! DeepLabV3+'s tail needs the low-level (stride-4) feature besides the one at the split point.
//! The release hands it over as a second input, untouched: the head pass returns it
//! (`network/backbone/resnet.py` L210-236, `out['low_level']`) and every tail pass at that point
//! reuses it (L255-284, `out['low_level'] = input_dict['low_level_feat']`), live, so the
//! augmented points' losses train the stem and `layer1` through it ([`SkipFeature::Passthrough`]).
//! afan before issue 17 packed it with the deep feature into the one tensor its split-model
//! contract passes ([`super::pack::pack`]), so the attack and the moment exchange acted on it too
//! ([`SkipFeature::Packed`]).

use super::DeepLabV3Plus;
use crate::norm::{RunningUpdates, record_running_updates};
use afan_core::{
    AfanConfig, AfanOutput, AttackBatchNorm, CleanPass, FeaturePgdConfig, GradientRouting,
    LossPreset, MomentStats, SplitError, SplitModel, SplitPoint, augmented_features,
    augmented_losses, feature_pgd, moment_exchange,
};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// How the tail at a backbone point gets the low-level feature (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipFeature {
    /// The head pass's own low-level feature, unperturbed and live (the release).
    #[default]
    Passthrough,
    /// Packed into the perturbed tensor (afan before issue 17).
    Packed,
}

/// The segmentation A-FAN setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegmentationAfanConfig {
    /// The backbone point (`layer1`..`layer4`, or MobileNetV2's `features.*`), its attack,
    /// strength points, mask, routing and the loss weights (one head weight: the decoder
    /// point's).
    pub backbone: AfanConfig,
    /// The decoder point: `aspp` (the ASPP output) or `decoder` (the concatenated decoder
    /// input, the release's `concat`).
    pub decoder_split: String,
    /// The decoder attack.
    pub decoder_pgd: FeaturePgdConfig,
    /// Re-inject the adversarial decoder feature's moments into the clean one (`--mix_sd`,
    /// main_aug_final.py L200-201).
    pub decoder_mix: bool,
    /// How backbone-point tails get the low-level feature.
    pub skip: SkipFeature,
}

impl Default for SegmentationAfanConfig {
    /// [`SegmentationAfanConfig::voc`].
    fn default() -> Self {
        Self::voc()
    }
}

impl SegmentationAfanConfig {
    /// The release's Pascal VOC 2012 setting, the first run of
    /// `Segmentation/sh/voc/2012/clean50/01_final50.sh` (the command its README gives), with
    /// `main_aug_final.py` and `args.py` defaults, field by field:
    ///
    /// - `backbone.split = "layer3"`: `SELAYER=3` (01_final50.sh L3), `--pertub_idx_se`.
    /// - `backbone.pgd`: FGSM, `--steps` default 1 (args.py L21), `GAMMASE=0.01` (L8) / 255
    ///   (main_aug_final.py L181), `eps = 2/255` (args.py L28), no random start, no clipping
    ///   (`--randinit`, `--clip` unset; `attack_algo.py` L40-59).
    /// - `backbone.strengths = 3`: `get_sample_points(..., 3)` (main_aug_final.py L206).
    /// - `backbone.mask = "11"`: `MIX=11` (L9), `--mix_layer` (main_aug_final.py L207-210);
    ///   positional moments, epsilon 1e-5 (`attack_algo.py` L121-130).
    /// - `backbone.preset = segmentation`: `0.7 loss0 + 0.1 loss1 + 0.1 loss2 + 0.1 loss3`
    ///   (main_aug_final.py L229; `--adv_loss_weight_sd 0.3` is passed but unused).
    /// - `backbone.attack_bn = train`: `model.train()` (L150) for every pass.
    /// - `backbone.routing = tail_only`: `output_dict_se['out'].detach()` (L170),
    ///   `decoder_feature_map_dict['adv'].detach()` (L167); the clean loss from a full forward
    ///   (L217). `backbone.clean_pass = first` (L217-220).
    /// - `decoder_split = "aspp"`: `SDLAYER=aspp` (L4), `--pertub_idx_sd`.
    /// - `decoder_pgd`: FGSM of `GAMMASD=0.4` (L5) / 255 (main_aug_final.py L194).
    /// - `decoder_mix = false`: no `--mix_sd`.
    /// - `skip = passthrough` (see the module documentation).
    pub fn voc() -> Self {
        Self {
            backbone: AfanConfig {
                split: "layer3".into(),
                pgd: FeaturePgdConfig::fgsm(0.01),
                strengths: 3,
                mask: "11".parse().expect("valid mask"),
                stats: MomentStats::Positional,
                preset: LossPreset::Segmentation,
                attack_bn: AttackBatchNorm::Train,
                routing: GradientRouting::TailOnly,
                clean_pass: CleanPass::First,
                ..AfanConfig::default()
            },
            decoder_split: "aspp".into(),
            decoder_pgd: FeaturePgdConfig::fgsm(0.4),
            decoder_mix: false,
            skip: SkipFeature::Passthrough,
        }
    }

    /// The release's Cityscapes setting, the first run of
    /// `Segmentation/sh/city/clean50/091_city_final01.sh` (the script its README gives):
    /// `SELAYER=2` (L5), `GAMMASE=0.02` (L7), `MIX=01` (L9), `SDLAYER=concat` (L4, this crate's
    /// `decoder`), `GAMMASD=1.5` (L8), `--mix_sd` (L25); the rest as [`Self::voc`]. (Its second
    /// run, FINAL02, uses `GAMMASE=0.04`, `MIX=10`.)
    pub fn cityscapes() -> Self {
        let mut c = Self::voc();
        c.backbone.split = "layer2".into();
        c.backbone.pgd = FeaturePgdConfig::fgsm(0.02);
        c.backbone.mask = "01".parse().expect("valid mask");
        c.decoder_split = "decoder".into();
        c.decoder_pgd = FeaturePgdConfig::fgsm(1.5);
        c.decoder_mix = true;
        c
    }

    /// Checks that the parts agree with each other and with `model`; returns the two points.
    pub fn validate(
        &self,
        model: &DeepLabV3Plus,
    ) -> Result<(SplitPoint, SplitPoint), SegmentationAfanError> {
        self.backbone.validate()?;
        let found = self.backbone.loss_weights().head.len();
        if found != 1 {
            return Err(SegmentationAfanError::HeadWeights { found });
        }
        let se = model.split_point(&self.backbone.split)?;
        let sd = model.split_point(&self.decoder_split)?;
        if se.index > 3 {
            return Err(SegmentationAfanError::Point {
                field: "backbone.split",
                name: se.name,
                expected: "a backbone stage",
            });
        }
        if sd.index <= 3 {
            return Err(SegmentationAfanError::Point {
                field: "decoder_split",
                name: sd.name,
                expected: "`aspp` or `decoder`",
            });
        }
        Ok((se, sd))
    }
}

/// A segmentation A-FAN setting that does not fit together or with the model.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum SegmentationAfanError {
    /// The backbone part is inconsistent.
    #[error(transparent)]
    Config(#[from] afan_core::config::AfanConfigError),
    /// The decoder point needs exactly one head weight.
    #[error("afan loss weights give {found} head weights; the decoder point needs 1")]
    HeadWeights {
        /// Head weights given.
        found: usize,
    },
    /// A point of the wrong kind.
    #[error("afan.{field} = `{name}` is not {expected}")]
    Point {
        /// The field.
        field: &'static str,
        /// The point named.
        name: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A split point the model does not have.
    #[error(transparent)]
    Split(#[from] SplitError),
}

/// One A-FAN forward of DeepLabV3+; `loss_fn` is the task loss of the model's output (logits at
/// stride 4, see [`super`]). `point_losses` holds L0, L_se1, L_se2, L_sd.
///
/// With [`SkipFeature::Passthrough`] the passes are the release's, in its order
/// (main_aug_final.py L160-229) — the `se` head pass, the `sd` head pass, the `se` attack, the
/// `sd` attack, the clean pass, the two `se` points, the `sd` point —, except that the two head
/// passes and the clean pass's head are one pass (`SharedHead`: the same values, gradients and
/// running statistics, three passes' work done once). With batch norm in training mode every
/// pass moves the running statistics of the layers it runs, as in the release.
pub fn segmentation_afan_objective<L>(
    model: &DeepLabV3Plus,
    attacker: &DeepLabV3Plus,
    input: Tensor<4>,
    config: &SegmentationAfanConfig,
    loss_fn: L,
) -> Result<AfanOutput<Tensor<4>>, SegmentationAfanError>
where
    L: Fn(&Tensor<4>) -> Tensor<1>,
{
    let (se, sd) = config.validate(model)?;
    let cfg = &config.backbone;
    let (mut point_losses, clean_output, pgd, head_loss) = match config.skip {
        SkipFeature::Passthrough => {
            // L160-170 and L161, L166-167: the se and sd head passes, and the clean pass's head
            // (L217), as one pass (see `SharedHead`).
            let head = SharedHead::run(model, input, &se, &sd);
            let low = head.low;
            let base_se = cfg.routing.route(head.feature_se);
            let base_sd = cfg.routing.route(head.feature_sd);
            // L172-184: the se attack (the attack's backward needs no path into the head).
            let attack_low = low.clone().detach();
            let pgd = feature_pgd(base_se.clone().detach(), &cfg.pgd, |f| {
                loss_fn(&attacker.forward_from_parts(f, attack_low.clone(), &se))
            });
            // L186-204: the sd attack, then its point (moments exchanged with `--mix_sd`).
            let sd_pgd = feature_pgd(base_sd.clone().detach(), &config.decoder_pgd, |f| {
                loss_fn(&attacker.forward_from_parts(f, attack_low.clone(), &sd))
            });
            let adv_sd = decoder_point(base_sd, sd_pgd.adversarial, config);
            // L206-210: the strength points (routed: detached under tail_only).
            let points = augmented_features(base_se, pgd.adversarial.clone(), cfg);
            // L217-225.
            let tail = |f| loss_fn(&model.forward_from_parts(f, low.clone(), &se));
            let clean = || {
                head.clean_updates.replay();
                let decoder_input = model.head.decoder_input(head.clean_aspp, low.clone());
                model.head.classify(decoder_input)
            };
            let (clean_output, augmented) = match cfg.clean_pass {
                CleanPass::First => {
                    let clean = clean();
                    (clean, points.into_iter().map(tail).collect::<Vec<_>>())
                }
                CleanPass::Last => {
                    let augmented: Vec<_> = points.into_iter().map(tail).collect();
                    (clean(), augmented)
                }
            };
            let head_loss = loss_fn(&model.forward_from_parts(adv_sd, low, &sd));
            let mut losses = vec![loss_fn(&clean_output)];
            losses.extend(augmented);
            (losses, clean_output, pgd, head_loss)
        }
        SkipFeature::Packed => {
            let (losses, clean_output, pgd) =
                augmented_losses(model, attacker, input.clone(), &se, cfg, &loss_fn);
            let feature_sd = model.forward_to(input, &sd);
            let base_sd = cfg.routing.route(feature_sd);
            let sd_pgd = feature_pgd(base_sd.clone().detach(), &config.decoder_pgd, |f| {
                loss_fn(&attacker.forward_from(f, &sd))
            });
            let adv_sd = decoder_point(base_sd, sd_pgd.adversarial, config);
            let head_loss = loss_fn(&model.forward_from(adv_sd, &sd));
            (losses, clean_output, pgd, head_loss)
        }
    };
    let loss = cfg
        .loss_weights()
        .combine(&point_losses, std::slice::from_ref(&head_loss));
    point_losses.push(head_loss);
    Ok(AfanOutput {
        loss,
        clean_output,
        point_losses,
        pgd,
    })
}

/// The release's two head passes and the head of its clean pass, as one pass.
///
/// With batch norm in training mode the three compute the same values from the same images (the
/// se head pass is the first part of the sd head pass, which is the first part of the clean
/// pass); only two things tell them apart, and both are kept:
/// - the release moves the running statistics once per pass: the layers up to the se point
///   replay their update twice (no other pass runs them, so when does not matter), the layers
///   from there to the ASPP output once more where the clean pass runs (after the se attack,
///   which moves them too);
/// - the ASPP dropout draws a mask per pass: the sd feature and the clean pass take one each
///   from the undropped ASPP output.
///
/// The gradients of the three passes' heads add up in one backward (the losses of the se and sd
/// points reach the stem and `layer1` through the low-level feature, the clean loss through
/// everything). Saved: two forwards of the backbone to the se point, one of the rest of the
/// backbone and ASPP, and two backwards of the stem and `layer1`.
struct SharedHead {
    low: Tensor<4>,
    feature_se: Tensor<4>,
    feature_sd: Tensor<4>,
    clean_aspp: Tensor<4>,
    /// The se-to-ASPP layers' updates, made again by the clean pass.
    clean_updates: RunningUpdates,
}

impl SharedHead {
    fn run(model: &DeepLabV3Plus, input: Tensor<4>, se: &SplitPoint, sd: &SplitPoint) -> Self {
        let stage = se.index + 1;
        let ((low, feature_se), se_updates) = record_running_updates(|| {
            let low = model.stage(1, input);
            let feature = (2..=stage).fold(low.clone(), |f, s| model.stage(s, f));
            (low, feature)
        });
        // The sd head pass's and the clean pass's moves of these layers.
        se_updates.replay();
        se_updates.replay();
        let (undropped, clean_updates) = record_running_updates(|| {
            let deep = model.stages(feature_se.clone(), stage + 1);
            model.head.aspp.forward_undropped(deep)
        });
        let dropout = &model.head.aspp.dropout;
        let aspp_sd = crate::dropout::apply(dropout, undropped.clone());
        let feature_sd = match sd.index {
            super::ASPP => aspp_sd,
            _ => model.head.decoder_input(aspp_sd, low.clone()),
        };
        Self {
            clean_aspp: crate::dropout::apply(dropout, undropped),
            low,
            feature_se,
            feature_sd,
            clean_updates,
        }
    }
}

/// The decoder point: the routed clean feature plus the attack's (constant) perturbation, with
/// the adversarial moments re-injected into the clean feature if `decoder_mix`.
fn decoder_point(
    base: Tensor<4>,
    adversarial: Tensor<4>,
    config: &SegmentationAfanConfig,
) -> Tensor<4> {
    let adv = base.clone() + (adversarial - base.clone().detach()).detach();
    if config.decoder_mix {
        let b = &config.backbone;
        moment_exchange(base, adv, b.stats, b.moment_epsilon)
    } else {
        adv
    }
}

#[cfg(test)]
#[path = "afan_tests.rs"]
mod tests;
