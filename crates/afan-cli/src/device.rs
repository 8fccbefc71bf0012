//! `--device` for the commands that run on one device, and names shared by the commands.

use afan_models::{DeepLabBackbone, DeepLabConfig};
use anyhow::{Result, bail};
use burn::tensor::Device;

/// One device (`eval`, `infer`, `bench`, `export`): a list is `afan train`'s.
pub fn one(name: &str) -> Result<Device> {
    if name.contains(',') {
        bail!("--device {name}: a list of devices is for data-parallel `afan train`; name one");
    }
    Ok(afan_core::device::parse_device(name.trim())?)
}

/// The name `--model` gives a DeepLab's backbone.
pub fn backbone_name(config: &DeepLabConfig) -> &'static str {
    match config.backbone {
        DeepLabBackbone::Resnet50 => "resnet50",
        DeepLabBackbone::Resnet101 => "resnet101",
        DeepLabBackbone::MobilenetV2 { .. } => "mobilenet_v2",
    }
}
