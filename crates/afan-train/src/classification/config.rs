//! The classification section of a run's configuration and its presets: the release's CIFAR-10
//! recipe (the default) and the quick start on the generated set.

use crate::config::{CommonConfig, RunConfig, SyntheticSize, TaskSection};
use crate::error::{Result, TrainError};
use crate::task_kind::{Method, TaskKind};
use afan_core::{AfanConfig, LearnableConfig, PixelPgdConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which training images a validation split holds out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValHoldout {
    /// Drawn by the seed (afan's first choice; runs written before `val_holdout` existed).
    #[default]
    Random,
    /// The last `val_split` images, in file order (the release's `Subset(range(45000, 50000))`).
    Last,
}

/// The classification section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassificationConfig {
    /// Model name (`resnet20`..`resnet110`, `resnet18`..`resnet152`, `efficientnet_b0`..`b7`,
    /// `mobilenet_v2`).
    pub model: String,
    /// `synthetic` (embedded, generated), `cifar10`, `cifar100` or `imagefolder` (`imagenet`).
    pub dataset: String,
    /// Dataset folder or archive; required for CIFAR and ImageFolder.
    pub data: Option<PathBuf>,
    /// Hold out this many training images for validation (release: 5000); 0 evaluates on the
    /// test split. With a validation split the test split is evaluated beside it, so the test
    /// figure of the best validation epoch is in its record (`eval_test_top1`), as the release
    /// reports it.
    pub val_split: usize,
    /// Which training images `val_split` holds out: `last` (the release: images 45000..50000 of
    /// CIFAR's training split, `dataset.py` L46-47) or `random` (drawn by the seed).
    pub val_holdout: ValHoldout,
    /// Random crop with 4-pixel padding and horizontal flip (release: on).
    pub augment: bool,
    /// Size of the generated dataset.
    pub synthetic: SyntheticSize,
    /// Crop sizes of an ImageFolder dataset (ImageNet: 224 crops, validation resize 256).
    pub folder: afan_data::FolderTransform,
    /// The A-FAN setting, used when `method = "afan"`.
    pub afan: AfanConfig,
    /// The input-space attack, used when `method = "pixel_pgd"`.
    pub pixel: PixelPgdConfig,
    /// The learnable multi-layer variant, used when `method = "afan_learnable"` (defaults:
    /// `Classification/main_learnable.py`'s, its nine points on ResNet-56).
    pub learnable: LearnableConfig,
}

impl Default for ClassificationConfig {
    fn default() -> Self {
        Self {
            model: "resnet56".into(),
            dataset: "cifar10".into(),
            data: None,
            val_split: 0,
            val_holdout: ValHoldout::Random,
            augment: true,
            synthetic: SyntheticSize {
                train: 4096,
                test: 1024,
            },
            folder: afan_data::FolderTransform::default(),
            afan: AfanConfig::default(),
            pixel: PixelPgdConfig::default(),
            learnable: LearnableConfig::default(),
        }
    }
}

impl TaskSection for ClassificationConfig {
    const KIND: TaskKind = TaskKind::Classification;

    fn validate(&self, common: &CommonConfig) -> Result<()> {
        self.model.parse::<afan_models::ClassifierKind>()?;
        crate::classification::data::DatasetName::parse(&self.dataset)?;
        if common.method == Method::Afan {
            self.afan
                .validate()
                .map_err(|e| TrainError::Config(format!("invalid [afan] section: {e}")))?;
        }
        if common.method == Method::AfanLearnable {
            self.learnable
                .validate()
                .map_err(|e| TrainError::Config(format!("invalid [learnable] section: {e}")))?;
        }
        Ok(())
    }
}

/// The release's CIFAR-10 A-FAN run, field by field: `Classification/cmd/run_perturb.sh`
/// (`--seed 3 --gamma 0.5`) with the defaults of `Classification/main_perturb.py` ("L") and
/// `Classification/dataset.py`:
///
/// - `seed = 3` (run_perturb.sh L1), ResNet-56 (L64-65), 200 epochs (`--epochs`, L40) of 128
///   (`--batch_size`, L36), the last incomplete batch dropped (`drop_last`, dataset.py L50).
/// - `optim`: SGD lr 0.1 (L37), momentum 0.9 (L38), weight decay 5e-4 (L39).
/// - `schedule`: `MultiStepLR` ×0.1 at epochs 50 and 150 (`--decreasing_lr`, L41, L75), stepped
///   per epoch; over epoch 0 `warmup_lr` from 0: `lr = step * 0.1 / (n - 1)` with `n` the
///   batches of an epoch (`warmup_rule = "release"`, `warmup_start = 0`).
/// - the data: train on images 0..45000 of CIFAR's training split, validate on 45000..50000
///   with the test transform (dataset.py L46-47: `val_split = 5000`, `val_holdout = "last"`);
///   random 4-padded crops and flips (L36-39); the best epoch on strictly better validation
///   accuracy (L116-118), the test accuracy of each epoch recorded beside it (L108).
/// - `afan`: `AfanConfig::release_classification()` (afan-core, its sources in its
///   documentation): layer 1, five 0.5/255 sign steps, no moment exchange.
pub fn release() -> RunConfig<ClassificationConfig> {
    RunConfig {
        common: CommonConfig {
            seed: 3,
            epochs: Some(200),
            schedule: crate::schedule::ScheduleConfig {
                warmup: 1,
                warmup_start: 0.0,
                warmup_rule: crate::schedule::WarmupRule::Release,
                ..crate::schedule::ScheduleConfig::default()
            },
            ..CommonConfig::default()
        },
        task: ClassificationConfig {
            val_split: 5000,
            val_holdout: ValHoldout::Last,
            ..ClassificationConfig::default()
        },
    }
}

/// The release's recipe for `dataset` (the `--dataset` of a command line, if given): [`release`]
/// for CIFAR; for other data the same without the validation split, which the release takes
/// from CIFAR's training images only (an ImageFolder evaluates on its `val/`, the generated set
/// on its test images).
pub fn release_for(dataset: Option<&str>) -> RunConfig<ClassificationConfig> {
    let mut c = release();
    if !matches!(dataset, None | Some("cifar10" | "cifar100")) {
        c.task.val_split = 0;
        c.task.val_holdout = ValHoldout::Random;
    }
    c
}

/// What `afan train` runs with no arguments: A-FAN on the embedded generated dataset with a
/// ResNet-20, short enough to finish in minutes on a laptop CPU.
pub fn quickstart() -> RunConfig<ClassificationConfig> {
    let mut c = release();
    c.task.model = "resnet20".into();
    c.task.dataset = "synthetic".into();
    // As before the release preset: the test split, one warm-up epoch from lr / 10.
    c.task.val_split = 0;
    c.common.seed = 0;
    c.common.schedule = crate::schedule::ScheduleConfig::default();
    c.task.afan.pgd.steps = 3;
    c.common.epochs = Some(4);
    c.common.batch_size = 64;
    c.common.optim.lr = 0.05;
    c.common.schedule.milestones = vec![3];
    c
}
