//! `afan train --task segment` configuration. Defaults are the release's VOC 2012 run
//! (VainF/DeepLabV3Plus-Pytorch with the A-FAN objective): DeepLabV3+ ResNet-50 at output stride
//! 16, batch 4, 30k iterations, SGD lr 0.01 (backbone x0.1), momentum 0.9, weight decay 1e-4,
//! poly decay with power 0.9, 513 crops with random scale 0.5-2 and flips.

use crate::config::Method;
use afan_core::{
    AfanConfig, CleanPass, ExchangeMask, FeaturePgdConfig, GradientRouting, LossPreset,
};
use afan_data::seg::SegAugment;
use afan_models::{DeepLabBackbone, DeepLabConfig};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Which segmentation data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SegDatasetName {
    /// The generated `shapes-seg` set (no download).
    Shapes,
    /// Pascal VOC 2012 (devkit layout; `voc_aug` for the SBD-augmented training list).
    Voc2012,
    /// Cityscapes fine annotations, 19 train ids.
    Cityscapes,
}

/// Where the data comes from and how it is augmented.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegDataConfig {
    /// The dataset.
    pub dataset: SegDatasetName,
    /// Its root folder (VOCdevkit's parent, or the folder holding leftImg8bit and gtFine).
    pub root: Option<PathBuf>,
    /// VOC: train on `train_aug.txt` with `SegmentationClassAug` masks (release: on).
    pub voc_aug: bool,
    /// Training split name.
    pub train_split: String,
    /// Evaluation split name.
    pub val_split: String,
    /// Training augmentation.
    pub augment: SegAugment,
    /// Evaluate on centre crops of this side (release VOC: off, full images at batch 1).
    pub val_crop: Option<usize>,
    /// `shapes`: training images.
    pub shapes_train: usize,
    /// `shapes`: evaluation images.
    pub shapes_val: usize,
    /// `shapes`: image side.
    pub shapes_side: usize,
}

impl Default for SegDataConfig {
    fn default() -> Self {
        Self {
            dataset: SegDatasetName::Voc2012,
            root: None,
            voc_aug: true,
            train_split: "train".into(),
            val_split: "val".into(),
            augment: SegAugment::default(),
            val_crop: None,
            shapes_train: 512,
            shapes_val: 64,
            shapes_side: 64,
        }
    }
}

/// The segmentation A-FAN setting: a backbone (`se`) point with three strength points and a
/// decoder (`sd`) point with one adversarial point, weighted `0.7 / 0.1 / 0.1 / 0.1`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegAfanConfig {
    /// The backbone point, its FGSM attack (step 1.0/255), 3 strengths, the exchange mask and
    /// the loss weights (preset `segmentation`: points 0.7, 0.1, 0.1; head 0.1).
    pub backbone: AfanConfig,
    /// The decoder point (`decoder`: the concatenated decoder input; or `aspp`).
    pub decoder_split: String,
    /// The decoder attack (FGSM, step 0.1/255).
    pub decoder_pgd: FeaturePgdConfig,
}

impl Default for SegAfanConfig {
    fn default() -> Self {
        Self {
            backbone: AfanConfig {
                split: "layer2".into(),
                pgd: FeaturePgdConfig::fgsm(1.0),
                strengths: 3,
                mask: "01".parse::<ExchangeMask>().expect("valid mask"),
                preset: LossPreset::Segmentation,
                // afan's routing before issue 17 until the segmentation part of that issue gives
                // this objective the release's.
                routing: GradientRouting::HeadAndTail,
                clean_pass: CleanPass::First,
                ..AfanConfig::default()
            },
            decoder_split: "decoder".into(),
            decoder_pgd: FeaturePgdConfig::fgsm(0.1),
        }
    }
}

/// A whole segmentation run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegTrainConfig {
    /// `baseline` or `afan`.
    pub method: Method,
    /// The network.
    pub model: DeepLabConfig,
    /// ImageNet weights for the backbone: a torchvision `resnet50`/`resnet101`/`mobilenet_v2`
    /// state dict saved as safetensors (the release starts from these; without them, from
    /// scratch, numbers are not comparable with the release's).
    pub pretrained_backbone: Option<PathBuf>,
    /// The data.
    pub data: SegDataConfig,
    /// Training iterations (release: 30,000).
    pub iterations: usize,
    /// Images per iteration (release run: 4).
    pub batch_size: usize,
    /// Base learning rate of the head; the backbone uses `lr * backbone_lr_mult`.
    pub lr: f64,
    /// Backbone learning-rate factor (release: 0.1).
    pub backbone_lr_mult: f64,
    /// SGD momentum, PyTorch semantics (no dampening).
    pub momentum: f64,
    /// L2 weight decay on every parameter (release: 1e-4).
    pub weight_decay: f64,
    /// Poly schedule `lr * (1 - it / iterations)^power` (release: 0.9).
    pub poly_power: f64,
    /// Evaluate, and save `model.bin`, every this many iterations and at the end (0: at the end).
    pub eval_every: usize,
    /// Seed of initialisation, sampling and augmentation.
    pub seed: u64,
    /// A-FAN points and weights.
    pub afan: SegAfanConfig,
}

impl Default for SegTrainConfig {
    fn default() -> Self {
        Self {
            method: Method::Afan,
            model: DeepLabConfig {
                backbone: DeepLabBackbone::Resnet50,
                num_classes: 21,
                output_stride: 16,
                aspp_channels: 256,
            },
            pretrained_backbone: None,
            data: SegDataConfig::default(),
            iterations: 30_000,
            batch_size: 4,
            lr: 0.01,
            backbone_lr_mult: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
            poly_power: 0.9,
            eval_every: 1000,
            seed: 1,
            afan: SegAfanConfig::default(),
        }
    }
}

impl SegTrainConfig {
    /// No file and no data: a small MobileNetV2 (x0.25) DeepLabV3+ with A-FAN on 32x32
    /// `shapes-seg`, about two minutes on a laptop CPU.
    pub fn quickstart() -> Self {
        let mut c = Self {
            model: DeepLabConfig {
                backbone: DeepLabBackbone::MobilenetV2 { width_mult: 0.25 },
                num_classes: 4,
                output_stride: 16,
                aspp_channels: 256,
            },
            iterations: 200,
            batch_size: 8,
            lr: 0.1,
            backbone_lr_mult: 1.0,
            eval_every: 50,
            ..Self::default()
        };
        c.data.dataset = SegDatasetName::Shapes;
        c.data.shapes_train = 256;
        c.data.shapes_val = 32;
        c.data.shapes_side = 32;
        c.data.augment = SegAugment {
            scale: [1.0, 1.0],
            crop: 0,
            flip: true,
            color_jitter: 0.0,
        };
        c.afan.backbone.split = "features.6".into();
        c
    }

    /// The file (if any) over `base`, then `key=value` overrides; unknown fields are errors.
    pub fn load(path: Option<&Path>, base: Self, overrides: &[String]) -> Result<Self> {
        let config: Self =
            crate::config::load_toml(path, &base, overrides, "segmentation configuration")?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 || self.iterations == 0 {
            bail!("batch_size and iterations must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("lr = {} must be a positive number", self.lr);
        }
        if !matches!(self.model.output_stride, 8 | 16) {
            bail!(
                "model.output_stride = {} must be 8 or 16",
                self.model.output_stride
            );
        }
        if self.method == Method::PixelPgd {
            bail!(
                "method = \"pixel_pgd\" is a classification baseline; segmentation trains \"baseline\" or \"afan\""
            );
        }
        if self.method == Method::Afan {
            self.afan
                .backbone
                .validate()
                .context("invalid [afan.backbone] section")?;
            let w = self.afan.backbone.loss_weights();
            if w.head.len() != 1 {
                bail!("afan.backbone weights need exactly one head weight (the decoder point)");
            }
        }
        Ok(())
    }

    /// The resolved configuration as TOML.
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_release_voc_run() {
        let c = SegTrainConfig::default();
        assert_eq!((c.iterations, c.batch_size, c.lr), (30_000, 4, 0.01));
        assert_eq!((c.momentum, c.weight_decay, c.poly_power), (0.9, 1e-4, 0.9));
        assert_eq!(c.backbone_lr_mult, 0.1);
        assert_eq!(c.data.augment.crop, 513);
        assert_eq!(c.data.augment.scale, [0.5, 2.0]);
        // A saved configuration reads back as itself (no option falls back to its default).
        let q = SegTrainConfig::quickstart();
        let text = q.to_toml().unwrap();
        let back: SegTrainConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, q);
        let w = c.afan.backbone.loss_weights();
        assert_eq!((w.points, w.head), (vec![0.7, 0.1, 0.1], vec![0.1]));
        assert_eq!(c.afan.backbone.strengths, 3);
        assert_eq!(c.afan.backbone.pgd.steps, 1);
        assert_eq!(c.afan.decoder_pgd.step_size, 0.1);
    }

    #[test]
    fn shipped_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        for name in [
            "voc2012-deeplabv3plus-r50-afan.toml",
            "voc2012-deeplabv3plus-r50-baseline.toml",
            "cityscapes-deeplabv3plus-r50-afan.toml",
            "cityscapes-deeplabv3plus-r50-baseline.toml",
        ] {
            let c = SegTrainConfig::load(Some(&dir.join(name)), SegTrainConfig::default(), &[])
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!((c.iterations, c.batch_size), (30_000, 4), "{name}");
        }
        let e = SegTrainConfig::load(None, SegTrainConfig::quickstart(), &["lrr=0.1".into()])
            .unwrap_err();
        assert!(format!("{e:#}").contains("lrr"), "{e:#}");
    }
}
