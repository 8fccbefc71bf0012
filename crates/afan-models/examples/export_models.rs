//! Writes afan models for `xtask/reference/export_roundtrip.py`, which loads them into PyTorch's
//! modules and compares logits: for each model `NAME`, `NAME.safetensors` and `NAME.pth` (the
//! export) and `NAME_io.safetensors` (`input`, what the PyTorch module is fed, and `output`,
//! afan's result on it). Every tensor is first moved off its initial value (`perturb`), so a
//! key mix-up cannot hide behind equal initialisations.
//!
//! ```text
//! cargo run -p afan-models --example export_models -- DIR [--all | NAME...]
//! ```
//! Names: the registry's classifiers (`resnet20`, `resnet18`, `efficientnet_b0`,
//! `mobilenet_v2`, ...) and `deeplabv3plus_resnet50`, `deeplabv3plus_resnet101`,
//! `deeplabv3plus_mobilenet_v2`. Without names, one of each family; `--all` every depth and
//! variant.

#[path = "../src/export/perturb.rs"]
mod perturb;

use afan_core::SplitModel;
use afan_models::deeplab::{DeepLabBackbone, DeepLabConfig};
use afan_models::export::write_state_dict;
use afan_models::{
    ClassifierKind, ExportFormat, ExportOptions, InputNorm, PytorchExport, StateDict,
};
use burn::tensor::{Device, Distribution, Tensor};
use std::error::Error;
use std::path::Path;

const FEW: [&str; 7] = [
    "resnet20",
    "resnet18",
    "efficientnet_b0",
    "mobilenet_v2",
    "deeplabv3plus_resnet50",
    "deeplabv3plus_mobilenet_v2",
    "resnet56",
];

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: export_models DIR [--all | NAME...]";
    let dir = std::path::PathBuf::from(args.next().ok_or(usage)?);
    let rest: Vec<String> = args.collect();
    let names: Vec<String> = match rest.as_slice() {
        [] => FEW.iter().map(|s| s.to_string()).collect(),
        [all] if all == "--all" => ClassifierKind::names()
            .into_iter()
            .chain(["efficientnet_b1", "efficientnet_b2", "efficientnet_b3"])
            .chain(["efficientnet_b4", "efficientnet_b5", "efficientnet_b6"])
            .chain(["efficientnet_b7", "efficientnet_b0", "mobilenet_v2"])
            .map(str::to_string)
            .chain(["resnet50", "resnet101", "mobilenet_v2"].map(|b| format!("deeplabv3plus_{b}")))
            .collect(),
        _ => rest,
    };
    std::fs::create_dir_all(&dir)?;
    let device = Device::default();
    for (i, name) in names.iter().enumerate() {
        let seed = 1000 + i as u64;
        let x = |size: usize| {
            Tensor::<4>::random([2, 3, size, size], Distribution::Uniform(0.0, 1.0), &device)
        };
        if let Some(backbone) = name.strip_prefix("deeplabv3plus_") {
            let backbone = match backbone {
                "resnet50" => DeepLabBackbone::Resnet50,
                "resnet101" => DeepLabBackbone::Resnet101,
                "mobilenet_v2" => DeepLabBackbone::MobilenetV2 { width_mult: 1.0 },
                other => return Err(format!("unknown DeepLab backbone `{other}`").into()),
            };
            let config = DeepLabConfig {
                backbone,
                num_classes: 21,
                output_stride: 16,
                aspp_channels: 256,
            };
            let model = perturb::perturb(config.init(&device), seed);
            let raw = x(65);
            let normalized = InputNorm::IMAGENET.apply(raw.clone());
            // The release's ResNet model normalises inside (`backbone.normal`); afan's data does
            // it before the model, as VainF's MobileNetV2 layout expects.
            let input = if model.resnet.is_some() {
                raw
            } else {
                normalized.clone()
            };
            let output = model.predict(normalized);
            save(&dir, name, &model, input, output)?;
        } else {
            let kind: ClassifierKind = name.parse()?;
            let model = perturb::perturb(kind.build(1000.min(classes(kind)), &device), seed);
            let input = x(if matches!(kind, ClassifierKind::CifarResNet(_)) {
                32
            } else {
                64
            });
            let output = model.forward(input.clone());
            save(&dir, name, &model, input, output)?;
        }
        println!("{name}");
    }
    Ok(())
}

/// CIFAR-10's 10 classes for the CIFAR ResNets, ImageNet's 1000 for the rest (the defaults of
/// the PyTorch constructors the script calls).
fn classes(kind: ClassifierKind) -> usize {
    match kind {
        ClassifierKind::CifarResNet(_) => 10,
        _ => 1000,
    }
}

fn save<M: PytorchExport, const D: usize>(
    dir: &Path,
    name: &str,
    model: &M,
    input: Tensor<4>,
    output: Tensor<D>,
) -> Result<(), Box<dyn Error>> {
    for format in ExportFormat::ALL {
        let path = dir.join(format!("{name}.{format}"));
        model.export(&path, ExportOptions::new(format).overwrite(true))?;
    }
    let mut io = StateDict::default();
    for (key, t) in [("input", input.into_data()), ("output", output.into_data())] {
        let shape = t.shape().to_vec();
        io.insert(
            key.into(),
            t.convert::<f32>().try_into_vec()?,
            shape,
            "float32",
        );
    }
    let path = dir.join(format!("{name}_io.safetensors"));
    write_state_dict(
        &io,
        &path,
        ExportOptions::new(ExportFormat::Safetensors).overwrite(true),
    )?;
    Ok(())
}
