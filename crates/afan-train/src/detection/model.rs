//! Building the detector of a run (its backbone from ImageNet weights where the configuration
//! names them) and turning batches into its input.

use super::config::DetectionConfig;
use crate::error::{Result, TrainError};
use afan_data::detection::DetectionBatch;
use afan_models::detection::step::{DetectionInput, DetectionTarget};
use afan_models::resnet::ResNet;
use afan_models::{FasterRcnn, InputNorm, PytorchImport, StateDict};
use burn::tensor::{Device, Tensor, TensorData};
use std::path::Path;

/// A fresh detector for `config`, its backbone (stem, `layer1`..`layer3`) and RoI head
/// (`layer4`) from the torchvision ResNet state dict at `weights`, if given.
pub fn build(
    config: &DetectionConfig,
    weights: Option<&Path>,
    strict: bool,
    device: &Device,
) -> Result<FasterRcnn> {
    let d = &config.detector;
    let Some(path) = weights else {
        return Ok(d.init(device)?);
    };
    let depth = d.validate()?;
    let dict = StateDict::from_file(path).map_err(TrainError::model)?;
    let resnet = ResNet::new(depth, 1000, device);
    let target = format!("a {}", d.backbone);
    let backbone = if strict {
        resnet.load_pytorch(&dict).map_err(|e| {
            TrainError::Model(format!(
                "{} does not load strictly into {target}: {e}",
                path.display()
            ))
        })?
    } else {
        let (backbone, report) = resnet.load_pytorch_partial(&dict);
        let source = path.display().to_string();
        if let Some(note) = crate::weights::partial_note(&report, &source, &target)? {
            eprintln!("warning: {note}");
        }
        backbone
    };
    eprintln!("backbone weights from {}", path.display());
    Ok(d.init_with_backbone(backbone, device)?)
}

/// A batch's images as a normalized tensor (torchvision's ImageNet mean and std, which
/// `GeneralizedRCNNTransform` applies) and their valid sizes.
pub fn images(batch: &DetectionBatch, device: &Device) -> (Tensor<4>, Vec<[usize; 2]>) {
    let n = batch.image_sizes.len();
    let data = TensorData::new(batch.images.clone(), [n, 3, batch.height, batch.width]);
    let x = InputNorm::IMAGENET.apply(Tensor::from_data(data, device));
    let sizes = batch.image_sizes.iter().map(|&(h, w)| [h, w]).collect();
    (x, sizes)
}

/// A training batch as the detector's input (labels shifted past the background class), its
/// images cast by `cast`.
pub fn input(
    batch: &DetectionBatch,
    num_classes: usize,
    device: &Device,
    cast: impl Fn(Tensor<4>) -> Tensor<4>,
) -> Result<DetectionInput> {
    let (x, sizes) = images(batch, device);
    let targets = batch
        .boxes
        .iter()
        .zip(&batch.labels)
        .map(|(b, l)| DetectionTarget {
            boxes: b.clone(),
            labels: l.iter().map(|l| l + 1).collect(),
        })
        .collect();
    Ok(DetectionInput::new(cast(x), sizes, targets, num_classes)?)
}
