//! The release's A-FAN objective for Faster R-CNN (`Detection/train_aug_final.py`): a backbone
//! point with five strength points and a second, head point at the RoI features,
//! `(L0 + ... + L4) / 3 * (1 - w) + L5 / 3 * w` with the weights of
//! [`afan_core::LossPreset::Detection`].
//!
//! [`DetectionAfanConfig::voc`] and [`DetectionAfanConfig::coco`] are the release's settings,
//! field by field; the rest are named options (docs/method.md).

use super::step::{DetectionInput, DetectionLosses, DetectorStep, RoiPass, Sampling};
use afan_core::{
    AfanConfig, AfanOutput, AttackBatchNorm, CleanPass, FeaturePgdConfig, GradientRouting,
    LossPreset, MomentStats, SplitError, SplitModel, augmented_losses, feature_pgd,
    moment_exchange,
};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// The attack at the head point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadAttackConfig {
    /// The head point: `roi` (the release: each region's vector after `layer4` and its
    /// max-pool) or `roi_pooled` (the pooled regions before `layer4`, afan before issue 17).
    pub split: String,
    /// Its attack: FGSM with `gamma_sd` = 0.1/255 in the release. The attack loss is the RoI
    /// terms (`--only_roi_sd`); the RPN terms do not depend on a RoI feature either way.
    pub pgd: FeaturePgdConfig,
    /// Re-inject the adversarial RoI feature's moments into the clean one (`--mix_sd`,
    /// `train_aug_final.py` L111-112; off in the scripts the README runs).
    pub mix: bool,
    /// Add the clean pass's RPN losses to L5, as the release does (`model.py` L140-150 returns
    /// the anchor losses of the `roi_head` pass); off, L5 is the RoI terms alone (afan before
    /// issue 17).
    pub rpn_losses: bool,
}

impl Default for HeadAttackConfig {
    fn default() -> Self {
        Self {
            split: "roi".into(),
            pgd: FeaturePgdConfig::fgsm(0.1),
            mix: false,
            rpn_losses: true,
        }
    }
}

/// A-FAN for the detector: the backbone setting plus the optional head point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectionAfanConfig {
    /// The backbone point (`layer1`..`layer3`), its attack, strength points, mask, routing and
    /// weights.
    pub backbone: AfanConfig,
    /// The head point; `None` (`head = "none"` in TOML) trains on the backbone points only
    /// (then the weights need no head entry).
    #[serde(with = "super::optional")]
    pub head: Option<HeadAttackConfig>,
    /// When the step's passes draw anchors, proposals and RoIs (release: every pass).
    pub sampling: Sampling,
}

impl Default for DetectionAfanConfig {
    /// [`DetectionAfanConfig::voc`].
    fn default() -> Self {
        Self::voc()
    }
}

impl DetectionAfanConfig {
    /// The release's VOC setting, `Detection/sh/voc2007/clean50/090_final_setting1.sh` (the
    /// script the README runs; "script L") with `train_aug_final.py` (bare "L"), field by
    /// field:
    ///
    /// - `backbone.split = "layer2"`: `LAYER=2` (script L12), `--pertub_idx_se`.
    /// - `backbone.pgd`: FGSM, one step (`steps = 1`, train_aug_final.py L90) of `GAMMA_se=1.0`
    ///   (script L11) / 255 (L92), `eps = 2/255` (L91), no random start or clipping (`--randinit`,
    ///   `--clip` unset; `attack_algo.py` L52-72).
    /// - `backbone.strengths = 5`: `get_sample_points(..., 5)` (L117).
    /// - `backbone.mask = "0011"`: `MASK=0011` (script L13), `--mix_layer`; positional moments,
    ///   epsilon 1e-5 (`attack_algo.py` L254-265).
    /// - `backbone.preset = detection { head_weight = 0.3 }`: `AdvWeight=0.3` (script L16), the
    ///   formula of train_aug_final.py L156.
    /// - `backbone.attack_bn = frozen`: every batch norm is in eval mode in every pass
    ///   (`model.py` L47-48, L60-61).
    /// - `backbone.routing = tail_only`: `feature_map_se.detach()` (L82), the clean loss from a
    ///   full forward (L135-136); `backbone.clean_pass = first` (L135-146).
    /// - `head.split = "roi"`: `--pertub_idx_sd` default `roi` (L200), the vector of
    ///   `return_type == 'head'` (`model.py` L298-335).
    /// - `head.pgd`: FGSM of `GAMMA_sd=0.1` (script L15) / 255 (L104), one step (L102).
    /// - `head.mix = false` (`--mix_sd` unset), `head.rpn_losses = true` (model.py L140-150).
    /// - `sampling = per_pass`: every `model.train().forward` draws (model.py L56-75).
    pub fn voc() -> Self {
        Self {
            backbone: AfanConfig {
                split: "layer2".into(),
                pgd: FeaturePgdConfig::fgsm(1.0),
                strengths: 5,
                mask: "0011".parse().expect("valid mask"),
                stats: MomentStats::Positional,
                preset: LossPreset::Detection { head_weight: 0.3 },
                attack_bn: AttackBatchNorm::Frozen,
                routing: GradientRouting::TailOnly,
                clean_pass: CleanPass::First,
                ..AfanConfig::default()
            },
            head: Some(HeadAttackConfig::default()),
            sampling: Sampling::PerPass,
        }
    }

    /// The release's COCO setting, `Detection/sh/coco/clean50/090_final_setting1_gpu01.sh`: the
    /// VOC setting with `GAMMA_se=0.1` (script L11).
    pub fn coco() -> Self {
        let mut c = Self::voc();
        c.backbone.pgd = FeaturePgdConfig::fgsm(0.1);
        c
    }
}

/// A detection A-FAN setting whose parts do not fit together.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum DetectionAfanError {
    /// The backbone part is inconsistent.
    #[error(transparent)]
    Config(#[from] afan_core::config::AfanConfigError),
    /// One head weight is needed exactly when the head point is on.
    #[error("afan loss weights give {found} head weights but the head point is {state}")]
    HeadWeights {
        /// Head weights given.
        found: usize,
        /// `on` or `off`.
        state: &'static str,
    },
    /// The head point must be a RoI point.
    #[error("afan.head.split = `{0}` is not a RoI point: use `roi` or `roi_pooled`")]
    HeadSplit(String),
    /// The RoI point starts from the clean pass, which must come first.
    #[error(
        "afan.backbone.clean_pass = \"last\" is not supported with a head point: the RoI point starts from the clean pass's RoI features"
    )]
    CleanPassLast,
    /// A split point the detector does not have.
    #[error(transparent)]
    Split(#[from] SplitError),
}

impl DetectionAfanConfig {
    /// Checks that the parts agree.
    pub fn validate(&self) -> Result<(), DetectionAfanError> {
        self.backbone.validate()?;
        let found = self.backbone.loss_weights().head.len();
        let expected = usize::from(self.head.is_some());
        if found != expected {
            let state = if self.head.is_some() { "on" } else { "off" };
            return Err(DetectionAfanError::HeadWeights { found, state });
        }
        if let Some(h) = &self.head {
            if !matches!(h.split.as_str(), "roi" | "roi_pooled") {
                return Err(DetectionAfanError::HeadSplit(h.split.clone()));
            }
            if self.backbone.clean_pass == CleanPass::Last {
                return Err(DetectionAfanError::CleanPassLast);
            }
        }
        Ok(())
    }
}

/// One A-FAN forward of the detector (`train_aug_final.py` L78-156): the backbone points through
/// [`augmented_losses`], then, if configured, the adversarial RoI feature (L5).
///
/// `model` and `attacker` must share one [`super::step::StepPlan`]; its sampling is set to
/// `config.sampling`. `point_losses` holds L0..L4 then L5. The RoI point starts from the RoI
/// features of the clean pass L0 (the release pools them in a separate `roi_head` pass, L84-85:
/// the same values and gradients when samples are fixed, one backbone pass fewer), and under
/// [`GradientRouting::TailOnly`] trains only the predictors after it, plus the clean RPN losses
/// if `head.rpn_losses`.
pub fn detection_afan_objective(
    model: &DetectorStep,
    attacker: &DetectorStep,
    input: DetectionInput,
    config: &DetectionAfanConfig,
) -> Result<AfanOutput<DetectionLosses>, DetectionAfanError> {
    config.validate()?;
    model.plan.set_sampling(config.sampling);
    let point = model.split_point(&config.backbone.split)?;
    let head = config
        .head
        .as_ref()
        .map(|h| model.split_point(&h.split).map(|p| (p, h)))
        .transpose()?;
    if head.is_some() {
        // The clean pass comes first (validated): its pooled regions and vectors are the RoI
        // point's clean features.
        model.record_next_roi();
    }
    let (mut point_losses, clean_output, pgd) = augmented_losses(
        model,
        attacker,
        input.clone(),
        &point,
        &config.backbone,
        DetectionLosses::total,
    );
    let mut head_losses = Vec::new();
    if let Some((head_point, head)) = head {
        let recorded = model.take_recorded_roi().unwrap_or_else(|| {
            model.forward_to(input, &head_point);
            model
                .take_recorded_roi()
                .expect("forward_to a RoI point records its pass")
        });
        let l5 = roi_point_loss(model, attacker, recorded, &head_point, head, config);
        head_losses.push(l5);
    }
    let loss = config
        .backbone
        .loss_weights()
        .combine(&point_losses, &head_losses);
    point_losses.extend(head_losses);
    Ok(AfanOutput {
        loss,
        clean_output,
        point_losses,
        pgd,
    })
}

/// L5 (`train_aug_final.py` L84-115, L145-146): attack the clean pass's RoI feature through the
/// predictors (`rpn_roi_PGD`), optionally exchange moments, and take the RoI losses there plus
/// the clean RPN losses.
fn roi_point_loss(
    model: &DetectorStep,
    attacker: &DetectorStep,
    recorded: RoiPass,
    point: &afan_core::SplitPoint,
    head: &HeadAttackConfig,
    config: &DetectionAfanConfig,
) -> Tensor<1> {
    let clean = if head.split == "roi" {
        recorded.vector
    } else {
        recorded.pooled
    };
    // `clean_feature_map_sd = ...['roi_feature_map'].detach()` (L85); under head_and_tail the
    // live feature, so that L5 also trains what made it.
    let base = config.backbone.routing.route(clean.clone());
    let pgd = feature_pgd(base.clone().detach(), &head.pgd, |f| {
        let l = attacker.forward_from(f, point);
        l.roi_class + l.roi_box
    });
    // `adv_rpn_roi_output_dict[...]['roi_feature_map'].detach()` (L109), the perturbation a
    // constant on the routed feature.
    let adversarial = base.clone() + (pgd.adversarial - base.clone().detach()).detach();
    let adversarial = if head.mix {
        let b = &config.backbone;
        moment_exchange(base, adversarial, b.stats, b.moment_epsilon)
    } else {
        adversarial
    };
    let roi = model.forward_from(adversarial, point);
    let l5 = roi.roi_class + roi.roi_box;
    if head.rpn_losses {
        let [objectness, rpn_box] = recorded.rpn_losses;
        l5 + objectness + rpn_box
    } else {
        l5
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use afan_core::LossWeights;

    #[test]
    fn release_presets_and_head_weights_must_match() {
        let c = DetectionAfanConfig::default();
        assert_eq!(c, DetectionAfanConfig::voc());
        c.validate().unwrap();
        let w = c.backbone.loss_weights();
        assert_eq!(w.points, vec![(1.0 - 0.3) / 3.0; 5]);
        assert_eq!(w.head, vec![0.3 / 3.0]);
        assert_eq!((c.backbone.pgd.steps, c.backbone.pgd.step_size), (1, 1.0));
        assert_eq!(c.backbone.routing, GradientRouting::TailOnly);
        assert_eq!(c.backbone.mask.to_string(), "0011");
        let h = c.head.as_ref().unwrap();
        assert_eq!((h.split.as_str(), h.pgd.step_size), ("roi", 0.1));
        assert!(!h.mix && h.rpn_losses);
        assert_eq!(c.sampling, Sampling::PerPass);
        assert_eq!(DetectionAfanConfig::coco().backbone.pgd.step_size, 0.1);
        let no_head = DetectionAfanConfig {
            head: None,
            ..c.clone()
        };
        let e = no_head.validate().unwrap_err().to_string();
        assert!(
            e.contains("1 head weights but the head point is off"),
            "{e}"
        );
        let mut fixed = no_head;
        fixed.backbone.weights = Some(LossWeights {
            points: vec![0.2; 5],
            head: vec![],
        });
        fixed.validate().unwrap();
        let mut bad = c.clone();
        bad.head.as_mut().unwrap().split = "layer3".into();
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("`layer3` is not a RoI point"), "{e}");
        let mut last = c;
        last.backbone.clean_pass = CleanPass::Last;
        assert!(
            last.validate()
                .unwrap_err()
                .to_string()
                .contains("clean_pass")
        );
    }
}
