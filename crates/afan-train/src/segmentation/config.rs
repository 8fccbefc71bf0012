//! The segmentation section of a run's configuration and its presets. Defaults are the
//! release's VOC 2012 run (VainF/DeepLabV3Plus-Pytorch with the A-FAN objective): DeepLabV3+
//! ResNet-50 at output stride 16, batch 4, 30k iterations, SGD lr 0.01 (backbone ×0.1),
//! momentum 0.9, weight decay 1e-4, poly decay with power 0.9, 513 crops with random scale 0.5-2
//! and flips.

use crate::config::{Cadence, CommonConfig, RunConfig, TaskSection};
use crate::error::{Result, TrainError};
use crate::optim::OptimConfig;
use crate::schedule::{ScheduleConfig, ScheduleKind, ScheduleUnit};
use crate::task_kind::{Method, TaskKind};
use afan_data::segmentation::SegAugment;
pub use afan_models::SegmentationAfanConfig;
use afan_models::deeplab::RELEASE_BACKBONE_BN_MOMENTUM;
use afan_models::{DeepLabBackbone, DeepLabConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which segmentation data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentationDataset {
    /// The generated `shapes-seg` set (no download).
    Synthetic,
    /// Pascal VOC (devkit layout; `voc_aug` for the SBD-augmented training list), or any folder
    /// in that layout with its own classes.
    Voc,
    /// Cityscapes fine annotations, 19 train ids.
    Cityscapes,
}

/// Size of the generated set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticSet {
    /// Training images.
    pub train: usize,
    /// Evaluation images.
    pub test: usize,
    /// Image side.
    pub side: usize,
}

impl Default for SyntheticSet {
    fn default() -> Self {
        Self {
            train: 512,
            test: 64,
            side: 64,
        }
    }
}

/// The segmentation section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegmentationConfig {
    /// The network (`model.num_classes` follows the dataset's class list).
    pub model: DeepLabConfig,
    /// `synthetic`, `voc` or `cityscapes`.
    pub dataset: SegmentationDataset,
    /// The dataset's folder (holding `VOCdevkit/` or `VOC2012/`, or `leftImg8bit/` and
    /// `gtFine/`).
    pub data: Option<PathBuf>,
    /// The labels of a VOC-layout folder in mask-value order, background first (default:
    /// background and VOC's 20 classes).
    pub classes: Option<Vec<String>>,
    /// VOC: train on `<split>_aug.txt` with `SegmentationClassAug` masks (release: on).
    pub voc_aug: bool,
    /// The training split (`train`). VOC-layout data may name the folder: `2007:train` is
    /// `VOC2007`, a name that is not a year the folder itself (`MYSET:train`); without one it
    /// is `VOC2012`.
    pub train_set: String,
    /// The evaluation split, same notation (`val`).
    pub test_set: String,
    /// Training augmentation.
    pub augment: SegAugment,
    /// Evaluate on centre crops of this side after resizing the short side to it (release VOC:
    /// 513, `--crop_val`); 0 evaluates full images (release Cityscapes). A number rather than an
    /// option, as `augment.crop`: a `None` would vanish from a saved TOML config and come back as
    /// the preset's value.
    pub val_crop: usize,
    /// Subtract ImageNet's mean and divide by its deviation. The release feeds 0..1 images:
    /// every `ExtNormalize` of `Segmentation/args.py` is commented out (L119, L128, L134, L149,
    /// L156). afan's default is on (what ImageNet backbones were trained with, and every run
    /// written before this field); the release presets set it off.
    pub normalize: bool,
    /// Size of the generated set.
    pub synthetic: SyntheticSet,
    /// Backbone learning-rate factor (release: 0.1; the head learns at `optim.lr`).
    pub backbone_lr_mult: f64,
    /// Momentum of the backbone's batch norms (release: 0.01, `utils.set_bn_momentum`; the
    /// head's keep PyTorch's 0.1).
    pub backbone_bn_momentum: f64,
    /// A-FAN points, attacks and weights: afan-models' [`SegmentationAfanConfig`] (default: the
    /// release's VOC setting).
    pub afan: SegmentationAfanConfig,
}

impl Default for SegmentationConfig {
    fn default() -> Self {
        Self {
            model: DeepLabConfig {
                backbone: DeepLabBackbone::Resnet50,
                num_classes: 21,
                output_stride: 16,
                aspp_channels: 256,
            },
            dataset: SegmentationDataset::Voc,
            data: None,
            classes: None,
            voc_aug: true,
            train_set: "train".into(),
            test_set: "val".into(),
            augment: SegAugment::default(),
            val_crop: 0,
            normalize: true,
            synthetic: SyntheticSet::default(),
            backbone_lr_mult: 0.1,
            backbone_bn_momentum: RELEASE_BACKBONE_BN_MOMENTUM,
            afan: SegmentationAfanConfig::default(),
        }
    }
}

impl TaskSection for SegmentationConfig {
    const KIND: TaskKind = TaskKind::Segmentation;

    fn validate(&self, common: &CommonConfig) -> Result<()> {
        if !matches!(self.model.output_stride, 8 | 16) {
            return Err(TrainError::Config(format!(
                "model.output_stride = {} must be 8 or 16",
                self.model.output_stride
            )));
        }
        if !(self.backbone_bn_momentum.is_finite()
            && (0.0..=1.0).contains(&self.backbone_bn_momentum))
        {
            return Err(TrainError::Config(format!(
                "backbone_bn_momentum = {} must be a number in [0, 1]",
                self.backbone_bn_momentum
            )));
        }
        if !(self.backbone_lr_mult.is_finite() && self.backbone_lr_mult >= 0.0) {
            return Err(TrainError::Config(format!(
                "backbone_lr_mult = {} must be a number of at least 0",
                self.backbone_lr_mult
            )));
        }
        match common.method {
            Method::PixelPgd => {
                return Err(TrainError::Config(
                    "method = \"pixel_pgd\" is a classification baseline; segmentation trains \
                     \"baseline\" or \"afan\""
                        .into(),
                ));
            }
            Method::Afan => {
                self.afan.backbone.validate().map_err(|e| {
                    TrainError::Config(format!("invalid [afan.backbone] section: {e}"))
                })?;
                if self.afan.backbone.loss_weights().head.len() != 1 {
                    return Err(TrainError::Config(
                        "afan.backbone weights need exactly one head weight (the decoder point)"
                            .into(),
                    ));
                }
            }
            Method::AfanLearnable => {
                return Err(TrainError::Config(Method::learnable_refusal(Self::KIND)));
            }
            Method::Baseline => {}
        }
        if self.classes.is_some() && self.dataset != SegmentationDataset::Voc {
            return Err(TrainError::Config(
                "classes applies to VOC-layout data (dataset = \"voc\")".into(),
            ));
        }
        if self.dataset != SegmentationDataset::Synthetic && self.data.is_none() {
            return Err(TrainError::Config(format!(
                "dataset = \"{}\" needs --data (the dataset's folder)",
                format!("{:?}", self.dataset).to_lowercase()
            )));
        }
        Ok(())
    }
}

/// The release's VOC 2012 A-FAN run, field by field: the first run of
/// `Segmentation/sh/voc/2012/clean50/01_final50.sh` ("script L") with the defaults of
/// `Segmentation/args.py` ("args L") and `Segmentation/main_aug_final.py` ("L"):
///
/// - `seed = 1` (`--random_seed`, args L87), `batch_size = 4` (script L10),
///   `iterations = 30000` (`--total_itrs`, args L62).
/// - `optim`: lr 0.01 (args L64), momentum 0.9 and weight decay 1e-4 (L79-82, args L83);
///   `backbone_lr_mult = 0.1` (L80).
/// - `schedule`: poly, power 0.9, per iteration (L84-85), no warm-up.
/// - `eval_every = checkpoint_every = 100`: validation and `latest_*.pth` every
///   `--val_interval` (args L92) iterations (L249-251).
/// - the data: `--year 2012` (script L10): `train` / `val` without SBD (`voc_aug = false`);
///   random scale 0.5-2, 513 crops (`--crop_size`, args L77), flips (args L115-117); no colour
///   jitter; `--crop_val`: resize to 513 and centre-crop (args L123-127); `normalize = false`
///   (see the field).
/// - `backbone_bn_momentum = 0.01` (L75), the model `deeplabv3plus_resnet50` at output stride
///   16 (script L11, args L58).
/// - `afan`: [`SegmentationAfanConfig::voc`], its sources in its documentation.
pub fn release() -> RunConfig<SegmentationConfig> {
    RunConfig {
        common: CommonConfig {
            task: TaskKind::Segmentation,
            method: Method::Afan,
            seed: 1,
            batch_size: 4,
            epochs: None,
            iterations: Some(30_000),
            eval_every: Cadence::Iterations(100),
            checkpoint_every: Cadence::Iterations(100),
            optim: OptimConfig {
                lr: 0.01,
                momentum: 0.9,
                dampening: 0.0,
                weight_decay: 1e-4,
                nesterov: false,
            },
            schedule: ScheduleConfig {
                kind: ScheduleKind::Poly,
                unit: ScheduleUnit::Iterations,
                milestones: vec![],
                power: 0.9,
                warmup: 0,
                ..ScheduleConfig::default()
            },
            ..CommonConfig::default()
        },
        task: SegmentationConfig {
            voc_aug: false,
            val_crop: 513,
            normalize: false,
            ..SegmentationConfig::default()
        },
    }
}

/// The release's Cityscapes A-FAN run, the first run of
/// `Segmentation/sh/city/clean50/091_city_final01.sh` ("script L"): `--dataset cityscapes`
/// (L14), lr 0.1 (L15), 768 crops (L16) without random scale, colour jitter 0.5
/// (`args.py` L145-147), full-image evaluation (args L153-157), batch 4 (L17),
/// [`SegmentationAfanConfig::cityscapes`]; the rest as [`release`].
pub fn cityscapes() -> RunConfig<SegmentationConfig> {
    let mut c = release();
    c.task.dataset = SegmentationDataset::Cityscapes;
    c.task.model.num_classes = 19;
    c.task.augment = SegAugment {
        scale: [1.0, 1.0],
        crop: 768,
        flip: true,
        color_jitter: 0.5,
    };
    c.task.val_crop = 0;
    c.task.afan = SegmentationAfanConfig::cityscapes();
    c.common.optim.lr = 0.1;
    c
}

/// No file and no data: a small MobileNetV2 (×0.25) DeepLabV3+ with A-FAN on 32×32
/// `shapes-seg`, about two minutes on a laptop CPU.
pub fn quickstart() -> RunConfig<SegmentationConfig> {
    let mut c = release();
    c.task.model = DeepLabConfig {
        backbone: DeepLabBackbone::MobilenetV2 { width_mult: 0.25 },
        num_classes: 4,
        output_stride: 16,
        aspp_channels: 256,
    };
    c.task.dataset = SegmentationDataset::Synthetic;
    c.task.synthetic = SyntheticSet {
        train: 256,
        test: 32,
        side: 32,
    };
    c.task.augment = SegAugment {
        scale: [1.0, 1.0],
        crop: 0,
        flip: true,
        color_jitter: 0.0,
    };
    c.task.backbone_lr_mult = 1.0;
    c.task.val_crop = 0;
    // From scratch: the normalized input and PyTorch's momentum are what it learned with
    // before the release presets (no ImageNet statistics to keep).
    c.task.normalize = true;
    c.task.backbone_bn_momentum = 0.1;
    c.task.voc_aug = true;
    c.task.afan.backbone.split = "features.6".into();
    c.common.iterations = Some(200);
    c.common.batch_size = 8;
    c.common.optim.lr = 0.1;
    c.common.eval_every = Cadence::Iterations(50);
    c.common.checkpoint_every = Cadence::Iterations(50);
    c
}
