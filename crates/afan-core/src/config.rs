//! One A-FAN configuration: where to cut, how to attack, which points to train on, where their
//! gradient goes and how to weigh them. Defaults are the release's classification setting
//! ([`AfanConfig::release_classification`]).

use crate::loss::{LossPreset, LossWeights};
use crate::moments::{ExchangeMask, MOMENT_EPSILON, MomentStats};
use crate::pgd::{FeaturePgdConfig, Projection};
use crate::routing::{CleanPass, GradientRouting};
use serde::{Deserialize, Serialize};

/// How batch normalization behaves in the passes that only serve the attack.
///
/// The release leaves every layer in training mode, so the K attack passes normalize with the
/// batch statistics of the perturbed feature *and* fold them into the running statistics — K extra
/// momentum updates per step, skewed towards adversarial features. `Frozen` runs the attack passes
/// with the running statistics instead and leaves them untouched, which is what a user who wants
/// evaluation-time statistics unaffected by the attack expects. Training passes on the augmented
/// features update the statistics under both choices, as any training pass does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttackBatchNorm {
    /// Batch statistics, running statistics updated (release).
    #[default]
    Train,
    /// Running statistics, not updated.
    Frozen,
}

/// A whole A-FAN setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AfanConfig {
    /// Name of the split point (`layer1`, `layer2.3`, ...). Default `layer1`: after the first
    /// stage, where the tail — and so the attack — is longest but still cheaper than pixel PGD.
    pub split: String,
    /// The feature attack.
    pub pgd: FeaturePgdConfig,
    /// Number of strength points `N` on the clean→adversarial segment, clean point included.
    /// Classification uses 2 (clean and full strength), detection 5, segmentation 3.
    pub strengths: usize,
    /// Which augmented points (1..N-1) get the adversarial moments instead of the perturbation.
    /// Classification default `0`: the release trains on the attacked feature itself and has no
    /// moment exchange in classification; `1` trains the full-strength point as clean content
    /// with adversarial moments.
    pub mask: ExchangeMask,
    /// Statistics of the moment exchange.
    pub stats: MomentStats,
    /// Variance floor of the moment exchange.
    pub moment_epsilon: f64,
    /// Loss weights; overrides `preset` when given.
    pub weights: Option<LossWeights>,
    /// The named weighting used when `weights` is absent.
    pub preset: LossPreset,
    /// Batch-norm behaviour during attack passes.
    pub attack_bn: AttackBatchNorm,
    /// Whether the augmented points train the head too (`head_and_tail`) or only the layers
    /// after the split (`tail_only`, the release).
    pub routing: GradientRouting,
    /// Whether the clean feature goes through the tail before or after the augmented points
    /// (running statistics only; the release: last in classification, first elsewhere).
    pub clean_pass: CleanPass,
}

impl Default for AfanConfig {
    /// [`AfanConfig::release_classification`].
    fn default() -> Self {
        Self::release_classification()
    }
}

impl AfanConfig {
    /// The release's classification step, field by field: `Classification/main_perturb.py` run
    /// as the README says (`Classification/cmd/run_perturb.sh`, which sets `--gamma 0.5`).
    ///
    /// - `split = "layer1"`: `--perturb_idx` default 13 (main_perturb.py L45), the end of the
    ///   ResNet-56s `sequential_model`'s stage 1 (resnet_s.py L86-95: 4 stem entries + 9 blocks).
    /// - `pgd.steps = 5`: `--steps` default 5 (main_perturb.py L44).
    /// - `pgd.step_size = 0.5`: `--gamma 0.5` (run_perturb.sh L1; argparse default 1.5, L46),
    ///   divided by 255 at L180.
    /// - `pgd.epsilon = 2`: `--eps` default 2 (L47; used only by random start and clipping).
    /// - `pgd.random_start = false`: `--randinit` off (L48; attack_algo.py L42-44).
    /// - `pgd.projection = none`: `--clip` off (L49; attack_algo.py L55-56).
    /// - `strengths = 2`, `mask = "0"`: one adversarial point trained as is, no moment exchange
    ///   (L195: `model(feature_map_adv, ...)`; README: classification supports feature
    ///   augmentation only). `stats`/`moment_epsilon` keep the release's other tasks' values.
    /// - `preset = classification`: `(CE(adv) + CE(clean)) / 2` (L197).
    /// - `attack_bn = train`: `model.train()` (L159) for every pass, the attack's included
    ///   (attack_algo.py L50).
    /// - `routing = tail_only`: `model(input, end_point=...).detach()` (L173); the clean loss
    ///   from a full forward (L196).
    /// - `clean_pass = last`: `output_adv` (L195) before `output_clean` (L196).
    pub fn release_classification() -> Self {
        Self {
            split: "layer1".to_string(),
            pgd: FeaturePgdConfig {
                steps: 5,
                step_size: 0.5,
                epsilon: 2.0,
                random_start: false,
                projection: Projection::None,
            },
            strengths: 2,
            mask: ExchangeMask::none(1),
            stats: MomentStats::Positional,
            moment_epsilon: MOMENT_EPSILON,
            weights: None,
            preset: LossPreset::Classification,
            attack_bn: AttackBatchNorm::Train,
            routing: GradientRouting::TailOnly,
            clean_pass: CleanPass::Last,
        }
    }
}

/// A configuration whose parts do not fit together.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum AfanConfigError {
    /// The mask must describe exactly the augmented points.
    #[error(
        "afan.mask `{mask}` has {found} characters but afan.strengths = {strengths} needs {expected} (one per augmented point)"
    )]
    MaskLength {
        /// The mask as written.
        mask: String,
        /// Its length.
        found: usize,
        /// `strengths - 1`.
        expected: usize,
        /// The configured number of points.
        strengths: usize,
    },
    /// One weight per strength point.
    #[error("afan loss weights give {found} point weights but afan.strengths = {expected}")]
    WeightCount {
        /// Weights given.
        found: usize,
        /// Points configured.
        expected: usize,
    },
    /// A value outside its domain.
    #[error("afan.{field} = {value} is invalid: {expected}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
}

impl AfanConfig {
    /// The weights in force: explicit ones, or the preset's.
    pub fn loss_weights(&self) -> LossWeights {
        self.weights
            .clone()
            .unwrap_or_else(|| self.preset.weights())
    }

    /// Checks that the parts agree; call it where the configuration is read.
    pub fn validate(&self) -> Result<(), AfanConfigError> {
        if self.strengths < 2 {
            return Err(AfanConfigError::Invalid {
                field: "strengths",
                value: self.strengths.to_string(),
                expected: "at least 2 (the clean point and the full-strength point)",
            });
        }
        if self.mask.len() != self.strengths - 1 {
            return Err(AfanConfigError::MaskLength {
                mask: self.mask.to_string(),
                found: self.mask.len(),
                expected: self.strengths - 1,
                strengths: self.strengths,
            });
        }
        let weights = self.loss_weights();
        if weights.points.len() != self.strengths {
            return Err(AfanConfigError::WeightCount {
                found: weights.points.len(),
                expected: self.strengths,
            });
        }
        for (field, value) in [
            ("pgd.step_size", self.pgd.step_size),
            ("pgd.epsilon", self.pgd.epsilon),
            ("moment_epsilon", self.moment_epsilon),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(AfanConfigError::Invalid {
                    field,
                    value: value.to_string(),
                    expected: "a finite, non-negative number",
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_release_classification_setting_and_valid() {
        let c = AfanConfig::default();
        assert_eq!(c, AfanConfig::release_classification());
        assert_eq!(c.split, "layer1");
        assert_eq!(c.pgd.steps, 5);
        assert_eq!(c.pgd.step_size, 0.5);
        assert_eq!(c.pgd.epsilon, 2.0);
        assert!(!c.pgd.random_start);
        assert_eq!(c.pgd.projection, Projection::None);
        assert_eq!(c.mask.to_string(), "0");
        assert_eq!(c.loss_weights().points, vec![0.5, 0.5]);
        assert_eq!(c.attack_bn, AttackBatchNorm::Train);
        assert_eq!(c.routing, GradientRouting::TailOnly);
        assert_eq!(c.clean_pass, CleanPass::Last);
        c.validate().unwrap();
    }

    #[test]
    fn routing_reads_from_toml_and_defaults_to_tail_only() {
        let c: AfanConfig = toml::from_str("routing = \"head_and_tail\"").unwrap();
        assert_eq!(c.routing, GradientRouting::HeadAndTail);
        let c: AfanConfig = toml::from_str("split = \"layer2\"").unwrap();
        assert_eq!(c.routing, GradientRouting::TailOnly);
        let e = toml::from_str::<AfanConfig>("routing = \"head\"").unwrap_err();
        assert!(e.to_string().contains("tail_only"), "{e}");
    }

    #[test]
    fn mismatched_parts_are_named() {
        let mut c = AfanConfig {
            strengths: 5,
            ..AfanConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("afan.mask") && e.contains("needs 4"), "{e}");
        c.mask = "0011".parse().unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("2 point weights"), "{e}");
        c.preset = LossPreset::Detection { head_weight: 0.3 };
        c.validate().unwrap();
    }
}
