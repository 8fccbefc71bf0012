//! The detection training configuration: one serde struct whose defaults are the release's
//! Pascal VOC 2007 recipe, with presets for COCO and for the embedded generated set.

use crate::config::{Method, OptimConfig, SyntheticConfig};
use afan_data::detection::ResizeConfig;
use afan_models::detection::anchors::AnchorConfig;
use afan_models::{DetectionAfanConfig, FasterRcnnConfig};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Which dataset a run reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetDataset {
    /// `shapes-det`, generated in-process (no download).
    Synthetic,
    /// A VOCdevkit folder (`VOC2007/`, `VOC2012/`).
    Voc,
    /// A COCO folder (`annotations/instances_<split>.json`, `<split>/*.jpg`).
    Coco,
}

/// Iteration-based step schedule with linear warm-up, as Detectron's `WarmupMultiStepLR`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetScheduleConfig {
    /// Iterations after which the rate is multiplied by `gamma`.
    pub steps: Vec<usize>,
    /// Decay factor.
    pub gamma: f64,
    /// Iterations of linear warm-up (release: 500).
    pub warmup_iters: usize,
    /// The warm-up starts at `lr * warmup_factor` (release: 1/3).
    pub warmup_factor: f64,
}

impl Default for DetScheduleConfig {
    fn default() -> Self {
        Self {
            steps: vec![6250],
            gamma: 0.1,
            warmup_iters: 500,
            warmup_factor: 1.0 / 3.0,
        }
    }
}

impl DetScheduleConfig {
    /// The rate at iteration `it` (0-based); a pure function so a resumed run stays on the curve.
    pub fn learning_rate(&self, base: f64, it: usize) -> f64 {
        let decays = self.steps.iter().filter(|&&s| it >= s).count();
        let lr = base * self.gamma.powi(decays as i32);
        if it < self.warmup_iters {
            let alpha = it as f64 / self.warmup_iters as f64;
            lr * (self.warmup_factor * (1.0 - alpha) + alpha)
        } else {
            lr
        }
    }
}

/// Everything a detection run needs. `Default` is Faster R-CNN R-50-C4 with A-FAN on VOC2007
/// trainval, tested on VOC2007 test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    /// `synthetic`, `voc` or `coco`.
    pub dataset: DetDataset,
    /// VOCdevkit or COCO folder; required unless `dataset = "synthetic"`.
    pub data: Option<PathBuf>,
    /// Training sets: VOC `year:split` (`2007:trainval`), COCO split names (`train2017`).
    pub train_sets: Vec<String>,
    /// The evaluation set, same notation (`2007:test`, `val2017`).
    pub test_set: String,
    /// `baseline` or `afan`.
    pub method: Method,
    /// The detector.
    pub detector: FasterRcnnConfig,
    /// The A-FAN setting, used when `method = "afan"`.
    pub afan: DetectionAfanConfig,
    /// Images per iteration (release: 8).
    pub batch_size: usize,
    /// Training iterations.
    pub iterations: usize,
    /// SGD (release: lr 0.008 for VOC, 0.01 for COCO, momentum 0.9, weight decay 1e-4).
    pub optim: OptimConfig,
    /// The learning-rate schedule.
    pub schedule: DetScheduleConfig,
    /// Resize by the short side with a cap on the long side (VOC 600/1000, COCO 800/1333);
    /// `"none"` keeps the images' own sizes.
    #[serde(with = "afan_models::detection::optional")]
    pub resize: Option<ResizeConfig>,
    /// Random horizontal flip (release: on).
    pub hflip: bool,
    /// Evaluate and write `last.ckpt` (and `best.ckpt` when the mAP improves) every this many
    /// iterations, and at the end.
    pub eval_every: usize,
    /// Seed of initialisation, order, flips and samplers.
    pub seed: u64,
    /// Size of the generated set.
    pub synthetic: SyntheticConfig,
    /// ImageNet backbone weights (a torchvision ResNet state dict, `.pth` or safetensors).
    pub weights: Option<PathBuf>,
}

impl Default for DetectConfig {
    /// VOC2007: py-faster-rcnn's 70k iterations of one image at lr 0.001 (step at 50k), scaled
    /// linearly to 8 images: 8750 iterations at 0.008, step at 6250.
    fn default() -> Self {
        let mut detector = FasterRcnnConfig::voc();
        detector.backbone = "resnet50".into();
        Self {
            dataset: DetDataset::Voc,
            data: None,
            train_sets: vec!["2007:trainval".into()],
            test_set: "2007:test".into(),
            method: Method::Afan,
            detector,
            afan: DetectionAfanConfig::default(),
            batch_size: 8,
            iterations: 8750,
            optim: OptimConfig {
                lr: 0.008,
                weight_decay: 1e-4,
                ..OptimConfig::default()
            },
            schedule: DetScheduleConfig::default(),
            resize: Some(ResizeConfig::VOC),
            hflip: true,
            eval_every: 2500,
            seed: 0,
            synthetic: SyntheticConfig {
                train: 512,
                test: 128,
            },
            weights: None,
        }
    }
}

impl DetectConfig {
    /// COCO 2017: 800/1333 resize, COCO anchors, lr 0.01 for 8 images; Detectron's 1x schedule
    /// (90k iterations of 16 images) at 8 images: 180k iterations, steps at 120k and 160k.
    pub fn coco() -> Self {
        let base = Self::default();
        Self {
            dataset: DetDataset::Coco,
            train_sets: vec!["train2017".into()],
            test_set: "val2017".into(),
            detector: FasterRcnnConfig {
                backbone: "resnet50".into(),
                ..FasterRcnnConfig::coco()
            },
            optim: OptimConfig {
                lr: 0.01,
                ..base.optim.clone()
            },
            iterations: 180_000,
            schedule: DetScheduleConfig {
                steps: vec![120_000, 160_000],
                ..base.schedule.clone()
            },
            resize: Some(ResizeConfig::COCO),
            eval_every: 20_000,
            ..base
        }
    }

    /// What `afan train --task detect` runs with no data: a ResNet-18 detector on 64x64
    /// `shapes-det` images, sized to learn within minutes on a laptop CPU. Anchors of 16 and 32
    /// pixels match the 12-32 pixel shapes; no pretrained weights, so no stage is frozen.
    pub fn quickstart() -> Self {
        let mut c = Self {
            dataset: DetDataset::Synthetic,
            train_sets: vec![],
            test_set: "test".into(),
            ..Self::default()
        };
        let d = &mut c.detector;
        d.backbone = "resnet18".into();
        d.num_classes = afan_data::detection::SHAPES_DET_CLASSES.len();
        d.rpn.anchors = AnchorConfig {
            base_size: 16,
            scales: vec![1.0, 2.0],
            ratios: vec![0.5, 1.0, 2.0],
        };
        d.rpn.mid_channels = 64;
        d.rpn.batch_per_image = 64;
        d.rpn.pre_nms_train = 200;
        d.rpn.post_nms_train = 64;
        d.rpn.pre_nms_test = 200;
        d.rpn.post_nms_test = 32;
        // `layer4` runs on every sampled region and dominates the step: few regions, 2x2 pools.
        d.roi.batch_per_image = 16;
        d.roi.pool.output_size = [2, 2];
        d.frozen_stages = 0;
        // From scratch there are no statistics to freeze: frozen batch norm would be an
        // unnormalised network (mAP 7 vs 18 after 100 iterations).
        d.frozen_bn = false;
        c.batch_size = 4;
        c.iterations = 200;
        c.optim.lr = 0.02;
        c.schedule = DetScheduleConfig {
            steps: vec![160],
            warmup_iters: 50,
            ..DetScheduleConfig::default()
        };
        c.resize = None;
        c.eval_every = 100;
        c
    }

    /// Reads a TOML file over `base`, applies `key=value` overrides, and validates.
    pub fn load(path: Option<&Path>, base: DetectConfig, overrides: &[String]) -> Result<Self> {
        let config: DetectConfig =
            crate::config::load_toml(path, &base, overrides, "detection configuration")?;
        config.validate()?;
        Ok(config)
    }

    /// Rejects values that would fail later, naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            bail!("batch_size must be at least 1");
        }
        if self.iterations == 0 || self.eval_every == 0 {
            bail!("iterations and eval_every must be at least 1");
        }
        if !(self.optim.lr.is_finite() && self.optim.lr > 0.0) {
            bail!("optim.lr = {} must be a positive number", self.optim.lr);
        }
        self.detector.validate()?;
        if self.method == Method::Afan {
            self.afan.validate().context("invalid [afan] section")?;
        }
        if self.dataset != DetDataset::Synthetic && self.data.is_none() {
            bail!(
                "dataset = {:?} needs --data (a VOCdevkit or COCO folder)",
                self.dataset
            );
        }
        Ok(())
    }

    /// The configuration as TOML, as written to a run directory.
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_rises_from_a_third_and_steps_decay() {
        let s = DetScheduleConfig {
            steps: vec![1000, 2000],
            ..DetScheduleConfig::default()
        };
        let lr = |it| s.learning_rate(0.009, it);
        assert!((lr(0) - 0.003).abs() < 1e-12);
        assert!((lr(250) - 0.006).abs() < 1e-12);
        assert!((lr(500) - 0.009).abs() < 1e-12);
        assert!((lr(1500) - 0.0009).abs() < 1e-12);
        assert!((lr(2000) - 0.00009).abs() < 1e-12);
    }

    #[test]
    fn defaults_are_the_release_recipe_and_typos_are_named() {
        let c = DetectConfig::default();
        assert_eq!(
            (c.batch_size, c.optim.lr, c.optim.momentum),
            (8, 0.008, 0.9)
        );
        assert_eq!(c.resize, Some(ResizeConfig::VOC));
        assert_eq!(DetectConfig::coco().optim.lr, 0.01);
        assert_eq!(DetectConfig::coco().resize, Some(ResizeConfig::COCO));
        let e = DetectConfig::load(None, DetectConfig::quickstart(), &["itrations=3".into()])
            .unwrap_err();
        assert!(format!("{e:#}").contains("itrations"), "{e:#}");
        let e = DetectConfig::load(None, DetectConfig::default(), &[]).unwrap_err();
        assert!(format!("{e:#}").contains("--data"), "{e:#}");
    }

    #[test]
    fn no_resize_survives_overrides_and_the_written_config() {
        let quick =
            DetectConfig::load(None, DetectConfig::quickstart(), &["seed=1".into()]).unwrap();
        assert_eq!(quick.resize, None);
        let text = quick.to_toml().unwrap();
        assert!(text.contains("resize = \"none\""), "{text}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        let again = DetectConfig::load(Some(&path), DetectConfig::default(), &[]).unwrap();
        assert_eq!(again, quick);
        let voc = ["resize={min_size=600, max_size=1000}".to_string()];
        let c = DetectConfig::load(None, DetectConfig::quickstart(), &voc).unwrap();
        assert_eq!(c.resize, Some(ResizeConfig::VOC));
        let e = DetectConfig::load(None, DetectConfig::quickstart(), &["resize=\"off\"".into()])
            .unwrap_err();
        assert!(format!("{e:#}").contains("resize"), "{e:#}");
        // The A-FAN RoI point (on by default) can be switched off the same way.
        let set = [
            "afan.head=\"none\"".to_string(),
            "afan.backbone.weights={points=[0.2, 0.2, 0.2, 0.2, 0.2], head=[]}".to_string(),
        ];
        let no_head = DetectConfig::load(None, DetectConfig::quickstart(), &set).unwrap();
        assert_eq!(no_head.afan.head, None);
        std::fs::write(&path, no_head.to_toml().unwrap()).unwrap();
        let again = DetectConfig::load(Some(&path), DetectConfig::default(), &[]).unwrap();
        assert_eq!(again.afan.head, None);
    }

    #[test]
    fn presets_load_and_are_what_their_names_say() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let data = ["data=\"VOCdevkit\"".to_string()];
        for (name, dataset, lr, sets) in [
            ("voc07", DetDataset::Voc, 0.008, 1),
            ("voc0712", DetDataset::Voc, 0.008, 2),
            ("coco", DetDataset::Coco, 0.01, 1),
        ] {
            for method in [Method::Baseline, Method::Afan] {
                let m = format!("{method:?}").to_lowercase();
                let p = dir.join(format!("{name}-faster-rcnn-r50-{m}.toml"));
                let c = DetectConfig::load(Some(&p), DetectConfig::default(), &data).unwrap();
                assert_eq!(
                    (c.dataset, c.method, c.optim.lr),
                    (dataset, method, lr),
                    "{p:?}"
                );
                assert_eq!((c.train_sets.len(), c.batch_size), (sets, 8), "{p:?}");
                assert_eq!(c.detector.backbone, "resnet50");
                assert_eq!(c.afan, DetectionAfanConfig::default());
            }
        }
    }
}
