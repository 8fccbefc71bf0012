//! Opening the configured segmentation splits and turning batches into tensors.

use super::config::{SegmentationConfig, SegmentationDataset};
use crate::error::{Context, Result, TrainError};
use afan_data::segmentation::{
    SegBatch, SegDataset, load_cityscapes, load_voc_folder, shapes_seg, voc_seg_classes,
};
use afan_models::{IMAGENET_MEAN, IMAGENET_STD};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// ImageNet normalization, as torchvision's pretrained backbones expect.
pub const NORMALIZE: ([f32; 3], [f32; 3]) = (IMAGENET_MEAN, IMAGENET_STD);

/// The mean and deviation `cfg` feeds the network with: [`NORMALIZE`], or none (0..1 images,
/// the release) when `normalize` is off.
pub fn normalization(cfg: &SegmentationConfig) -> ([f32; 3], [f32; 3]) {
    if cfg.normalize {
        NORMALIZE
    } else {
        ([0.0; 3], [1.0; 3])
    }
}

/// The labels of a configuration's data, background first.
pub fn class_names(cfg: &SegmentationConfig) -> Vec<String> {
    match cfg.dataset {
        SegmentationDataset::Synthetic => afan_data::segmentation::SHAPES_SEG_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        SegmentationDataset::Voc => cfg
            .classes
            .clone()
            .unwrap_or_else(|| voc_seg_classes().iter().map(|s| s.to_string()).collect()),
        SegmentationDataset::Cityscapes => afan_data::segmentation::CITYSCAPES_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    }
}

/// A VOC set as the folder and the split: `train` (VOC2012's), `2012:train`, `MYSET:train`.
fn voc_set(set: &str) -> (String, &str) {
    match set.split_once(':') {
        Some((year, split)) => (afan_data::detection::voc::voc_folder(year), split),
        None => ("VOC2012".to_string(), set),
    }
}

/// One split of `cfg`: the training split (`train`) or the evaluation split.
pub fn open_split(cfg: &SegmentationConfig, seed: u64, train: bool) -> Result<SegDataset> {
    let root = || -> Result<&std::path::Path> {
        cfg.data.as_deref().ok_or_else(|| {
            TrainError::Config(format!(
                "--data must name the {:?} folder",
                format!("{:?}", cfg.dataset).to_lowercase()
            ))
        })
    };
    let set = if train { &cfg.train_set } else { &cfg.test_set };
    let dataset = match cfg.dataset {
        SegmentationDataset::Synthetic => {
            let s = &cfg.synthetic;
            let (tr, te) = shapes_seg(
                if train { s.train } else { 0 },
                if train { 0 } else { s.test },
                s.side,
                seed,
            );
            if train { tr } else { te }
        }
        SegmentationDataset::Voc => {
            let (folder, split) = voc_set(set);
            let classes = class_names(cfg);
            load_voc_folder(root()?, &folder, split, train && cfg.voc_aug, &classes)?
        }
        SegmentationDataset::Cityscapes => load_cityscapes(root()?, set)?,
    };
    if dataset.is_empty() {
        return Err(TrainError::Config(format!(
            "the {} split {set:?} is empty",
            if train { "training" } else { "evaluation" }
        )));
    }
    Ok(dataset)
}

/// `([B, 3, H, W]` images, `[B, H, W]` labels with 255 kept).
pub fn to_tensors(batch: SegBatch, device: &Device) -> (Tensor<4>, Tensor<3, Int>) {
    let (b, h, w) = (batch.batch, batch.height, batch.width);
    let x = Tensor::from_data(TensorData::new(batch.images, [b, 3, h, w]), device);
    let labels: Vec<i64> = batch.labels.iter().map(|&v| i64::from(v)).collect();
    let y = Tensor::from_data(TensorData::new(labels, [b, h, w]), device);
    (x, y)
}

/// A dataset error with the split it concerns.
pub fn context<T>(r: std::result::Result<T, afan_data::DataError>, what: &str) -> Result<T> {
    r.with_context(|| format!("while reading the {what} split"))
}
