//! The release's A-FAN objective for Faster R-CNN: a backbone point with five strength points
//! and a second, head point at the pooled RoI features,
//! `(L0 + ... + L4) / 3 * (1 - w) + L5 / 3 * w` with the weights of
//! [`afan_core::LossPreset::Detection`].

use super::step::{DetectionInput, DetectionLosses, DetectorStep};
use afan_core::{
    AfanConfig, AfanOutput, AttackBatchNorm, CleanPass, FeaturePgdConfig, GradientRouting,
    LossPreset, SplitError, SplitModel, afan_objective, feature_pgd,
};
use serde::{Deserialize, Serialize};

/// The attack at the head point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadAttackConfig {
    /// The head point (`roi`).
    pub split: String,
    /// Its attack: FGSM with `gamma_sd` = 0.1/255 in the release.
    pub pgd: FeaturePgdConfig,
}

impl Default for HeadAttackConfig {
    fn default() -> Self {
        Self {
            split: "roi".into(),
            pgd: FeaturePgdConfig::fgsm(0.1),
        }
    }
}

/// A-FAN for the detector: the backbone setting plus the optional head point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectionAfanConfig {
    /// The backbone point (`layer1`..`layer3`), its attack, strength points, mask and weights.
    pub backbone: AfanConfig,
    /// The head point; `None` (`head = "none"` in TOML) trains on the backbone points only
    /// (then the weights need no head entry).
    #[serde(with = "super::optional")]
    pub head: Option<HeadAttackConfig>,
}

impl Default for DetectionAfanConfig {
    /// The release's detection setting: FGSM of 1/255 after `layer2`, five strength points with
    /// the moments exchanged at the two strongest (`0011`), FGSM of 0.1/255 at the RoI features,
    /// head weight 0.3. Batch norm is frozen in the detector, so the attack passes use running
    /// statistics either way.
    fn default() -> Self {
        Self {
            backbone: AfanConfig {
                split: "layer2".into(),
                pgd: FeaturePgdConfig::fgsm(1.0),
                strengths: 5,
                mask: "0011".parse().expect("valid mask"),
                preset: LossPreset::Detection { head_weight: 0.3 },
                attack_bn: AttackBatchNorm::Frozen,
                // afan's routing before issue 17 until the detection part of that issue gives
                // this objective the release's (the RoI point below assumes the clean pass first).
                routing: GradientRouting::HeadAndTail,
                clean_pass: CleanPass::First,
                ..AfanConfig::default()
            },
            head: Some(HeadAttackConfig::default()),
        }
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
        Ok(())
    }
}

/// One A-FAN forward of the detector: the backbone points through [`afan_objective`], then, if
/// configured, the adversarial RoI feature (L5) with only the RoI losses.
///
/// `model` and `attacker` must share one [`super::step::StepPlan`], so every pass of the step
/// sees the same samples. `point_losses` holds L0..L4 then L5. The head point starts from the
/// pooled RoI features of the clean strength point (no second backbone pass); the sampled RoIs
/// are the plan's.
pub fn detection_afan_objective(
    model: &DetectorStep,
    attacker: &DetectorStep,
    input: DetectionInput,
    config: &DetectionAfanConfig,
) -> Result<AfanOutput<DetectionLosses>, DetectionAfanError> {
    config.validate()?;
    let point = model.split_point(&config.backbone.split)?;
    let head = config
        .head
        .as_ref()
        .map(|h| model.split_point(&h.split).map(|p| (p, h)))
        .transpose()?;
    if head.is_some() {
        // The first pass of `model` in the backbone objective is strength point 0, the clean
        // feature (the attack runs on `attacker`): its pooled regions are the RoI point's clean
        // features.
        model.record_next_roi();
    }
    let mut out = afan_objective(
        model,
        attacker,
        input.clone(),
        &point,
        &config.backbone,
        DetectionLosses::total,
    );
    if let Some((head_point, head)) = head {
        let feature = model
            .take_recorded_roi()
            .unwrap_or_else(|| model.forward_to(input, &head_point));
        let pgd = feature_pgd(feature.clone(), &head.pgd, |f| {
            attacker.forward_from(f, &head_point).total()
        });
        // The perturbation is a constant, as at the backbone strength points, so L5 still
        // trains everything before the RoI features.
        let delta = (pgd.adversarial - feature.clone().detach()).detach();
        let l5 = model.forward_from(feature + delta, &head_point).total();
        let w = config.backbone.loss_weights().head[0];
        out.loss = out.loss + l5.clone().mul_scalar(w);
        out.point_losses.push(l5);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use afan_core::LossWeights;

    #[test]
    fn default_is_the_release_setting_and_head_weights_must_match() {
        let c = DetectionAfanConfig::default();
        c.validate().unwrap();
        let w = c.backbone.loss_weights();
        assert_eq!(w.points, vec![(1.0 - 0.3) / 3.0; 5]);
        assert_eq!(w.head, vec![0.3 / 3.0]);
        assert_eq!((c.backbone.pgd.steps, c.backbone.pgd.step_size), (1, 1.0));
        assert_eq!(c.head.as_ref().unwrap().pgd.step_size, 0.1);
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
    }
}
