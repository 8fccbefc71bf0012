//! Segmentation evaluation: one confusion matrix over the whole split, scores from it.

use super::config::SegTrainConfig;
use super::data::{NORMALIZE, context, open_splits, to_tensors};
use afan_data::seg::{ConfusionMatrix, SegDataset, SegScores, load_batch};
use afan_models::DeepLabV3Plus;
use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::{Bytes, Device, Tensor};
use std::path::Path;

/// Scores of `model` on `dataset`: full images one at a time, or centre crops of `val_crop` in
/// batches of `batch_size`.
pub fn evaluate(
    model: &DeepLabV3Plus,
    dataset: &SegDataset,
    val_crop: Option<usize>,
    batch_size: usize,
    device: &Device,
) -> Result<SegScores> {
    let batch = if val_crop.is_some() {
        batch_size.max(1)
    } else {
        1
    };
    let mut matrix = ConfusionMatrix::new(dataset.num_classes);
    let indices: Vec<usize> = (0..dataset.len()).collect();
    for chunk in indices.chunks(batch) {
        let b = load_batch(dataset, chunk, None, val_crop, (0, 0), NORMALIZE);
        let b = context(b, "evaluation")?;
        let labels = b.labels.clone();
        let (x, _) = to_tensors(b, device);
        matrix.update(&predict_labels(model, x)?, &labels);
    }
    Ok(matrix.scores())
}

/// Per-pixel classes at the input size, `[B, H, W]` flattened.
pub fn predict_labels(model: &DeepLabV3Plus, x: Tensor<4>) -> Result<Vec<u8>> {
    Ok(model
        .predict(x)
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| anyhow::anyhow!("cannot read predictions: {e:?}"))?
        .into_iter()
        .map(|p| p as u8)
        .collect())
}

/// File names in a segmentation run directory.
pub const MODEL_FILE: &str = "model.bin";
/// The resolved configuration of the run.
pub const CONFIG_FILE: &str = "config.toml";

/// The run's configuration and model, from `run/config.toml` and `run/model.bin` (`path` may be
/// the directory or the model file).
pub fn load_run(path: &Path, device: &Device) -> Result<(SegTrainConfig, DeepLabV3Plus)> {
    let dir = if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(path)
    };
    let config_path = dir.join(CONFIG_FILE);
    let config = SegTrainConfig::load(Some(&config_path), SegTrainConfig::default(), &[])
        .with_context(|| {
            format!(
                "cannot read the run configuration {}",
                config_path.display()
            )
        })?;
    let model_path = dir.join(MODEL_FILE);
    let bytes = std::fs::read(&model_path)
        .with_context(|| format!("cannot read the model {}", model_path.display()))?;
    let model = crate::checkpoint::load_record(
        config.model.init(device),
        Bytes::from_bytes_vec(bytes),
        &model_path,
    )?;
    Ok((config, model))
}

/// `afan eval --task segment --checkpoint RUN [--data ROOT] [--json]`.
pub fn run(checkpoint: &Path, data: Option<&Path>, device: &Device, json: bool) -> Result<()> {
    let (mut config, model) = load_run(checkpoint, device)?;
    if let Some(d) = data {
        config.data.root = Some(d.to_path_buf());
    }
    let splits = open_splits(&config.data, config.seed)?;
    let scores = evaluate(
        &model.valid(),
        &splits.val,
        config.data.val_crop,
        config.batch_size,
        device,
    )?;
    if json {
        println!("{}", serde_json::to_string(&scores)?);
    } else {
        println!(
            "mIoU {:.2}%  pixel acc {:.2}%  mean acc {:.2}%  fwIoU {:.2}%  ({} images of {:?} {})",
            100.0 * scores.mean_iou,
            100.0 * scores.pixel_accuracy,
            100.0 * scores.mean_accuracy,
            100.0 * scores.frequency_weighted_iou,
            splits.val.len(),
            config.data.dataset,
            config.data.val_split
        );
    }
    Ok(())
}
