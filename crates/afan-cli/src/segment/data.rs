//! Opening the configured segmentation splits and turning batches into tensors.

use super::config::{SegDataConfig, SegDatasetName};
use afan_data::seg::{SegBatch, SegDataset, load_cityscapes, load_voc, shapes_seg};
use afan_models::{IMAGENET_MEAN, IMAGENET_STD};
use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// Training and evaluation splits.
pub struct SegSplits {
    /// Training split.
    pub train: SegDataset,
    /// Evaluation split.
    pub val: SegDataset,
}

/// Opens both splits of `cfg` (generated ones from `seed`).
pub fn open_splits(cfg: &SegDataConfig, seed: u64) -> Result<SegSplits> {
    let root = || -> Result<&std::path::Path> {
        match &cfg.root {
            Some(r) => Ok(r),
            None => bail!(
                "data.root (or --data) must name the {:?} folder",
                cfg.dataset
            ),
        }
    };
    let (train, val) = match cfg.dataset {
        SegDatasetName::Shapes => {
            shapes_seg(cfg.shapes_train, cfg.shapes_val, cfg.shapes_side, seed)
        }
        SegDatasetName::Voc2012 => (
            load_voc(root()?, &cfg.train_split, cfg.voc_aug)?,
            load_voc(root()?, &cfg.val_split, false)?,
        ),
        SegDatasetName::Cityscapes => (
            load_cityscapes(root()?, &cfg.train_split)?,
            load_cityscapes(root()?, &cfg.val_split)?,
        ),
    };
    if train.is_empty() || val.is_empty() {
        bail!(
            "{:?}: the training or evaluation split is empty",
            cfg.dataset
        );
    }
    Ok(SegSplits { train, val })
}

/// ImageNet normalization, as the release (and torchvision's pretrained backbones) expect.
pub const NORMALIZE: ([f32; 3], [f32; 3]) = (IMAGENET_MEAN, IMAGENET_STD);

/// `([B, 3, H, W]` images, `[B, H, W]` labels with 255 kept).
pub fn to_tensors(batch: SegBatch, device: &Device) -> (Tensor<4>, Tensor<3, Int>) {
    let (b, h, w) = (batch.batch, batch.height, batch.width);
    let x = Tensor::from_data(TensorData::new(batch.images, [b, 3, h, w]), device);
    let labels: Vec<i64> = batch.labels.iter().map(|&v| i64::from(v)).collect();
    let y = Tensor::from_data(TensorData::new(labels, [b, h, w]), device);
    (x, y)
}

/// A dataset error with the split it concerns.
pub fn context<T>(r: Result<T, afan_data::DataError>, what: &str) -> Result<T> {
    r.with_context(|| format!("while reading the {what} split"))
}
