//! Backbones and heads for afan, each implementing [`afan_core::SplitModel`] so it can be cut at
//! points named after torchvision modules.

pub mod cifar_resnet;
pub mod conv;
pub mod cross_entropy;
pub mod deeplab;
pub mod detection;
pub mod dropout;
pub mod efficientnet;
pub mod export;
mod flex;
pub mod import;
mod import_error;
pub mod input_norm;
pub mod layers;
pub mod mobilenet_v2;
pub mod norm;
pub mod pool;
pub mod registry;
pub mod relu6;
pub mod resnet;
pub mod simd;
pub mod state_dict;
mod step_passes;
pub mod upsample;

pub use cifar_resnet::CifarResNet;
pub use deeplab::{
    DeepLabBackbone, DeepLabConfig, DeepLabV3Plus, SegmentationAfanConfig,
    segmentation_afan_objective,
};
pub use detection::afan::{DetectionAfanConfig, detection_afan_objective};
pub use detection::faster_rcnn::{FasterRcnn, FasterRcnnConfig};
pub use detection::step::{
    DetectionInput, DetectionLosses, DetectionTarget, DetectorStep, StepPlan,
};
pub use efficientnet::{EfficientNet, EfficientNetVariant};
pub use export::{ExportError, ExportFormat, ExportOptions, ExportSummary, PytorchExport};
pub use flex::on_pool;
pub use import::{
    ImportError, ImportReport, PytorchBuffer, PytorchImport, load_state_dict,
    load_state_dict_partial, param_paths,
};
pub use input_norm::{InputNorm, Normalized};
pub use mobilenet_v2::MobileNetV2;
pub use norm::{BatchNorm2d, BatchNorm2dConfig};
pub use registry::{Classifier, ClassifierKind, UnknownModel};
pub use resnet::{IMAGENET_MEAN, IMAGENET_STD, ResNet, ResNetDepth, ResNetOptions};
pub use state_dict::{Entry, StateDict};
pub use step_passes::step_passes;
