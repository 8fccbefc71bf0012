//! Backbones and heads for afan, each implementing [`afan_core::SplitModel`] so it can be cut at
//! points named after torchvision modules.

pub mod cifar_resnet;
pub mod deeplab;
pub mod import;
pub mod layers;
pub mod mobilenet_v2;
pub mod norm;
pub mod registry;
pub mod resnet;

pub use cifar_resnet::CifarResNet;
pub use deeplab::{DeepLabBackbone, DeepLabConfig, DeepLabV3Plus};
pub use import::{ImportError, StateDict, load_state_dict};
pub use mobilenet_v2::MobileNetV2;
pub use norm::{BatchNorm2d, BatchNorm2dConfig};
pub use registry::{Classifier, ClassifierKind, UnknownModel};
pub use resnet::{IMAGENET_MEAN, IMAGENET_STD, ResNet, ResNetDepth, ResNetOptions};
