//! Backbones and heads for afan, each implementing [`afan_core::SplitModel`] so it can be cut at
//! points named after torchvision modules.

pub mod cifar_resnet;
pub mod detection;
pub mod import;
pub mod layers;
pub mod norm;
pub mod registry;
pub mod resnet;

pub use cifar_resnet::CifarResNet;
pub use detection::afan::{DetectionAfanConfig, detection_afan_objective};
pub use detection::faster_rcnn::{FasterRcnn, FasterRcnnConfig};
pub use detection::step::{
    DetectionInput, DetectionLosses, DetectionTarget, DetectorStep, StepPlan,
};
pub use import::{ImportError, StateDict, load_state_dict};
pub use norm::{BatchNorm2d, BatchNorm2dConfig};
pub use registry::{Classifier, ClassifierKind, UnknownModel};
pub use resnet::{IMAGENET_MEAN, IMAGENET_STD, ResNet, ResNetDepth, ResNetOptions};
