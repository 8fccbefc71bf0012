//! Backbones and heads for afan, each implementing [`afan_core::SplitModel`] so it can be cut at
//! points named after torchvision modules.

pub mod cifar_resnet;
pub mod layers;
pub mod norm;

pub use cifar_resnet::CifarResNet;
pub use norm::{BatchNorm2d, BatchNorm2dConfig};
