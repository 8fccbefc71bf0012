//! The detection section of a run's configuration and its presets: the release's Pascal VOC 2007
//! recipe (the default), COCO 2017, and the quick start on the generated `shapes-det` set.

use crate::config::{Cadence, CommonConfig, RunConfig, SyntheticSize, TaskSection};
use crate::error::{Result, TrainError};
use crate::optim::OptimConfig;
use crate::schedule::{ScheduleConfig, ScheduleKind, ScheduleUnit, WarmupRule};
use crate::task_kind::{Method, TaskKind};
use afan_data::detection::ResizeConfig;
use afan_models::detection::anchors::AnchorConfig;
use afan_models::{DetectionAfanConfig, FasterRcnnConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Which dataset a run reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectionDataset {
    /// `shapes-det`, generated in-process (no download).
    Synthetic,
    /// A VOCdevkit folder (`VOC2007/`, `VOC2012/`, or any `<folder>/` in that layout).
    Voc,
    /// A COCO folder (`annotations/instances_<split>.json`, `<split>/*.jpg`).
    Coco,
}

/// The detection section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectionConfig {
    /// `synthetic`, `voc` or `coco`.
    pub dataset: DetectionDataset,
    /// VOCdevkit or COCO folder; required unless `dataset = "synthetic"`.
    pub data: Option<PathBuf>,
    /// The object classes of a VOC-layout folder, in label order (default: VOC's 20). COCO
    /// reads its categories from the instances file; the generated set has its own four.
    pub classes: Option<Vec<String>>,
    /// Training sets: VOC `year:split` (`2007:trainval`, the folder `VOC2007`; a name that is
    /// not a year is the folder itself: `MYSET:train`), COCO split names (`train2017`).
    pub train_sets: Vec<String>,
    /// The evaluation set, same notation (`2007:test`, `val2017`).
    pub test_set: String,
    /// The detector (`detector.num_classes` follows the dataset's class list).
    pub detector: FasterRcnnConfig,
    /// The A-FAN setting, used when `method = "afan"`.
    pub afan: DetectionAfanConfig,
    /// Resize by the short side with a cap on the long side (VOC 600/1000, COCO 800/1333);
    /// `"none"` keeps the images' own sizes.
    #[serde(with = "afan_models::detection::optional")]
    pub resize: Option<ResizeConfig>,
    /// Random horizontal flip (release: on).
    pub hflip: bool,
    /// Size of the generated set.
    pub synthetic: SyntheticSize,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        let mut detector = FasterRcnnConfig::voc();
        detector.backbone = "resnet50".into();
        Self {
            dataset: DetectionDataset::Voc,
            data: None,
            classes: None,
            train_sets: vec!["2007:trainval".into()],
            test_set: "2007:test".into(),
            detector,
            afan: DetectionAfanConfig::default(),
            resize: Some(ResizeConfig::VOC),
            hflip: true,
            synthetic: SyntheticSize {
                train: 512,
                test: 128,
            },
        }
    }
}

impl TaskSection for DetectionConfig {
    const KIND: TaskKind = TaskKind::Detection;

    fn validate(&self, common: &CommonConfig) -> Result<()> {
        self.detector.validate()?;
        match common.method {
            Method::Afan => self
                .afan
                .validate()
                .map_err(|e| TrainError::Config(format!("invalid [afan] section: {e}")))?,
            Method::PixelPgd => {
                return Err(TrainError::Config(
                    "method = \"pixel_pgd\" is a classification baseline; detection trains \
                     \"baseline\" or \"afan\""
                        .into(),
                ));
            }
            Method::AfanLearnable => {
                return Err(TrainError::Config(Method::learnable_refusal(Self::KIND)));
            }
            Method::Baseline => {}
        }
        if self.dataset != DetectionDataset::Synthetic && self.data.is_none() {
            return Err(TrainError::Config(format!(
                "dataset = \"{}\" needs --data (a VOCdevkit or COCO folder)",
                format!("{:?}", self.dataset).to_lowercase()
            )));
        }
        if let Some(c) = &self.classes {
            if self.dataset != DetectionDataset::Voc {
                return Err(TrainError::Config(
                    "classes applies to VOC-layout data (dataset = \"voc\"); COCO names its \
                     categories in the instances file"
                        .into(),
                ));
            }
            if c.is_empty() {
                return Err(TrainError::Config(
                    "classes must name at least one class".into(),
                ));
            }
        }
        Ok(())
    }
}

/// The release's VOC2007 A-FAN run, field by field: `Detection/sh/voc2007/clean50/
/// 090_final_setting1.sh` ("script L") with `Detection/config/train_config.py` ("config L") and
/// `Detection/train_aug_final.py` defaults:
///
/// - `batch_size = 8` (script L22), `iterations = 11250` (`--num_steps_to_finish`, L26).
/// - `optim`: lr 0.008 (L23), momentum 0.9 (config L17), weight decay 5e-4 (config L18; the
///   script keeps it), no dampening or Nesterov (`optim.SGD`, train_aug_final.py L44-45).
/// - `schedule`: ×0.1 (config L20) at iterations 6250 and 8750 (`--step_lr_sizes`, L24),
///   `WarmUpMultiStepLR` (L46-47, `extension/lr_scheduler.py`): linear from 0.3333 of the rate
///   over 500 iterations (config L21-22).
/// - `checkpoint_every = 1250` (`--num_steps_to_snapshot`, L25). The release evaluates once, at
///   the end (`eval.py` on `model-11250.pth`, script L34-35): `eval_every = 11250`.
/// - `seed = 0`: the release sets none.
/// - the data: VOC2007 trainval, difficult objects dropped (`dataset/voc2007.py` L99-100),
///   horizontal flips (L107-108), 600/1000 resize (`config/config.py` L9-10); evaluated on
///   VOC2007 test.
/// - `detector`: [`FasterRcnnConfig::voc`] with ResNet-50 (`-b=resnet50`), `afan`:
///   [`DetectionAfanConfig::voc`], each with its sources in its documentation.
pub fn release() -> RunConfig<DetectionConfig> {
    RunConfig {
        common: CommonConfig {
            task: TaskKind::Detection,
            method: Method::Afan,
            seed: 0,
            batch_size: 8,
            epochs: None,
            iterations: Some(11_250),
            eval_every: Cadence::Iterations(11_250),
            checkpoint_every: Cadence::Iterations(1250),
            optim: OptimConfig {
                lr: 0.008,
                momentum: 0.9,
                dampening: 0.0,
                weight_decay: 5e-4,
                nesterov: false,
            },
            schedule: ScheduleConfig {
                kind: ScheduleKind::MultiStep,
                unit: ScheduleUnit::Iterations,
                milestones: vec![6250, 8750],
                gamma: 0.1,
                power: 0.9,
                warmup: 500,
                warmup_start: 0.3333,
                warmup_rule: WarmupRule::Linear,
            },
            ..CommonConfig::default()
        },
        task: DetectionConfig::default(),
    }
}

/// The release's COCO 2017 A-FAN run, `Detection/sh/coco/clean50/090_final_setting1_gpu01.sh`
/// ("script L"): 800/1333 resize (L23-24) and [`FasterRcnnConfig::coco`] (anchors L25, RPN beta
/// L26), batch 8 (L27), lr 0.01 (L28), weight decay 1e-4 (L29), ×0.1 at 120k and 160k (L30) of
/// 180k iterations (L32), a checkpoint every 40k (L31), one evaluation at the end (L40-);
/// [`DetectionAfanConfig::coco`]; the rest as [`release`].
pub fn coco() -> RunConfig<DetectionConfig> {
    let mut c = release();
    c.task.dataset = DetectionDataset::Coco;
    c.task.train_sets = vec!["train2017".into()];
    c.task.test_set = "val2017".into();
    c.task.detector = FasterRcnnConfig {
        backbone: "resnet50".into(),
        ..FasterRcnnConfig::coco()
    };
    c.task.afan = DetectionAfanConfig::coco();
    c.task.resize = Some(ResizeConfig::COCO);
    c.common.optim.lr = 0.01;
    c.common.optim.weight_decay = 1e-4;
    c.common.iterations = Some(180_000);
    c.common.schedule.milestones = vec![120_000, 160_000];
    c.common.eval_every = Cadence::Iterations(180_000);
    c.common.checkpoint_every = Cadence::Iterations(40_000);
    c
}

/// What `afan train --task detection` runs with no data: a ResNet-18 detector on 64x64
/// `shapes-det` images, sized to learn within minutes on a laptop CPU. Anchors of 16 and 32
/// pixels match the 12-32 pixel shapes; no pretrained weights, so no stage is frozen.
pub fn quickstart() -> RunConfig<DetectionConfig> {
    let mut c = release();
    c.task.dataset = DetectionDataset::Synthetic;
    c.task.train_sets = vec![];
    c.task.test_set = "test".into();
    let d = &mut c.task.detector;
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
    c.task.resize = None;
    c.common.batch_size = 4;
    c.common.iterations = Some(200);
    c.common.optim.lr = 0.02;
    c.common.schedule.milestones = vec![160];
    c.common.schedule.warmup = 50;
    c.common.schedule.warmup_start = 1.0 / 3.0;
    c.common.optim.weight_decay = 1e-4;
    c.common.eval_every = Cadence::Iterations(100);
    c.common.checkpoint_every = Cadence::Iterations(100);
    c
}
