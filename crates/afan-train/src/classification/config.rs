//! The classification section of a run's configuration and its presets: the release's CIFAR-10
//! recipe (the default) and the quick start on the generated set.

use crate::config::{CommonConfig, RunConfig, SyntheticSize, TaskSection};
use crate::error::{Result, TrainError};
use crate::task_kind::{Method, TaskKind};
use afan_core::{AfanConfig, PixelPgdConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
    /// Hold out this many training images for validation (release option: 5000); 0 evaluates on
    /// the test split.
    pub val_split: usize,
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
}

impl Default for ClassificationConfig {
    fn default() -> Self {
        Self {
            model: "resnet56".into(),
            dataset: "cifar10".into(),
            data: None,
            val_split: 0,
            augment: true,
            synthetic: SyntheticSize {
                train: 4096,
                test: 1024,
            },
            folder: afan_data::FolderTransform::default(),
            afan: AfanConfig::default(),
            pixel: PixelPgdConfig::default(),
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
        Ok(())
    }
}

/// The release's CIFAR-10 A-FAN recipe: ResNet-56, 200 epochs of 128, SGD 0.1, ×0.1 at epochs
/// 50 and 150, one warm-up epoch.
pub fn release() -> RunConfig<ClassificationConfig> {
    RunConfig {
        common: CommonConfig {
            epochs: Some(200),
            ..CommonConfig::default()
        },
        task: ClassificationConfig::default(),
    }
}

/// What `afan train` runs with no arguments: A-FAN on the embedded generated dataset with a
/// ResNet-20, short enough to finish in minutes on a laptop CPU.
pub fn quickstart() -> RunConfig<ClassificationConfig> {
    let mut c = release();
    c.task.model = "resnet20".into();
    c.task.dataset = "synthetic".into();
    c.task.afan.pgd.steps = 3;
    c.common.epochs = Some(4);
    c.common.batch_size = 64;
    c.common.optim.lr = 0.05;
    c.common.schedule.milestones = vec![3];
    c
}
