//! The three tasks and the training methods, spelled one way in configurations, checkpoints,
//! module names and messages: `classification`, `detection`, `segmentation` (the command line
//! also takes `classify`, `detect`, `segment`, and so does a configuration written before the
//! engine).

use serde::{Deserialize, Serialize};

/// Which task a run, a configuration or a checkpoint is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Image classification (CIFAR ResNets, ResNet, EfficientNet, MobileNetV2).
    #[serde(alias = "classify")]
    Classification,
    /// Object detection (Faster R-CNN C4).
    #[serde(alias = "detect")]
    Detection,
    /// Semantic segmentation (DeepLabV3+).
    #[serde(alias = "segment")]
    Segmentation,
}

impl TaskKind {
    /// Every task, in the order the documentation lists them.
    pub const ALL: [TaskKind; 3] = [Self::Classification, Self::Detection, Self::Segmentation];

    /// The task's name as configurations and checkpoints spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Classification => "classification",
            Self::Detection => "detection",
            Self::Segmentation => "segmentation",
        }
    }
}

impl std::fmt::Display for TaskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TaskKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "classification" | "classify" => Ok(Self::Classification),
            "detection" | "detect" => Ok(Self::Detection),
            "segmentation" | "segment" => Ok(Self::Segmentation),
            other => Err(format!(
                "unknown task `{other}`; expected classification, detection or segmentation"
            )),
        }
    }
}

/// What a training step optimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The task loss of the plain forward pass.
    Baseline,
    /// The clean loss plus the losses of the augmented features (the paper's method).
    Afan,
    /// Input-space PGD adversarial training (Madry et al.), the cost A-FAN is compared with
    /// (classification).
    PixelPgd,
    /// The learnable multi-layer variant (`Classification/main_learnable.py`): several points
    /// at once, their weights learned beside the network (classification; `[learnable]`).
    AfanLearnable,
}

impl Method {
    /// The method's name as configurations spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Afan => "afan",
            Self::PixelPgd => "pixel_pgd",
            Self::AfanLearnable => "afan_learnable",
        }
    }
}

impl Method {
    /// Why `task` (detection, segmentation) refuses `afan_learnable`.
    pub(crate) fn learnable_refusal(task: TaskKind) -> String {
        format!(
            "method = \"afan_learnable\" is classification's only (the release's \
             Classification/main_learnable.py has no {task} counterpart); {task} trains \
             \"baseline\" or \"afan\""
        )
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
