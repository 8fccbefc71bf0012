//! Segmentation evaluation: one confusion matrix over the whole split, scores from it.

use super::data::{context, to_tensors};
use crate::error::{Result, TrainError};
use crate::task::{Evaluation, Value};
use afan_data::Corruption;
use afan_data::segmentation::{ConfusionMatrix, SegDataset, SegScores, load_batch};
use afan_models::DeepLabV3Plus;
use burn::tensor::{Device, Tensor};

/// Scores of `model` on `dataset`: full images one at a time, or centre crops of `val_crop` in
/// batches of `batch_size`; images normalized by `norm` (mean, deviation). With `corruption`,
/// each image (or crop) is corrupted first, its pixels in [0, 1].
#[allow(clippy::too_many_arguments)] // the evaluation's whole setting, passed once
pub fn scores(
    model: &DeepLabV3Plus,
    dataset: &SegDataset,
    val_crop: Option<usize>,
    norm: ([f32; 3], [f32; 3]),
    batch_size: usize,
    device: &Device,
    quiet: bool,
    corruption: Option<&Corruption>,
) -> Result<SegScores> {
    // On a worker of rayon's pool, as the training step (afan_models::on_pool).
    afan_models::on_pool(|| {
        let batch = if val_crop.is_some() {
            batch_size.max(1)
        } else {
            1
        };
        let mut matrix = ConfusionMatrix::new(dataset.num_classes);
        let indices: Vec<usize> = (0..dataset.len()).collect();
        let bar = crate::progress::bar(indices.len().div_ceil(batch), "eval", quiet);
        for chunk in indices.chunks(batch) {
            let b = match corruption {
                None => context(
                    load_batch(dataset, chunk, None, val_crop, (0, 0), norm),
                    "evaluation",
                )?,
                Some(c) => corrupted(dataset, chunk, val_crop, norm, c)?,
            };
            let labels = b.labels.clone();
            let (x, _) = to_tensors(b, device);
            matrix.update(&predict_labels(model, x)?, &labels);
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(matrix.scores())
    })
}

/// A batch of `indices` corrupted in [0, 1], then normalized by `norm`: the same arithmetic as
/// `load_batch`'s (`(v / 255 - mean) / std`), with the corruption between the two steps.
fn corrupted(
    dataset: &SegDataset,
    indices: &[usize],
    val_crop: Option<usize>,
    (mean, std): ([f32; 3], [f32; 3]),
    c: &Corruption,
) -> Result<afan_data::segmentation::SegBatch> {
    let unit = ([0.0; 3], [1.0; 3]);
    let mut b = context(
        load_batch(dataset, indices, None, val_crop, (0, 0), unit),
        "evaluation",
    )?;
    let hw = b.height * b.width;
    c.apply_to_batch(&mut b.images, (3, b.height, b.width), indices);
    for (i, v) in b.images.iter_mut().enumerate() {
        let ch = (i / hw) % 3;
        *v = (*v - mean[ch]) / std[ch];
    }
    Ok(b)
}

/// As the engine records it: the mean IoU in percent is the headline.
pub fn evaluation(s: &SegScores) -> Evaluation {
    Evaluation {
        headline: 100.0 * s.mean_iou,
        headline_name: "miou".into(),
        loss: None,
        figures: vec![
            ("miou".into(), Value::Scalar(100.0 * s.mean_iou)),
            (
                "pixel_accuracy".into(),
                Value::Scalar(100.0 * s.pixel_accuracy),
            ),
        ],
        report: serde_json::to_value(s).unwrap_or_default(),
        text: format!(
            "mIoU {:.2}%  pixel acc {:.2}%  mean acc {:.2}%  fwIoU {:.2}%",
            100.0 * s.mean_iou,
            100.0 * s.pixel_accuracy,
            100.0 * s.mean_accuracy,
            100.0 * s.frequency_weighted_iou
        ),
    }
}

/// Per-pixel classes at the input size, `[B, H, W]` flattened.
pub fn predict_labels(model: &DeepLabV3Plus, x: Tensor<4>) -> Result<Vec<u8>> {
    Ok(model
        .predict(x)
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| TrainError::Config(format!("cannot read predictions: {e:?}")))?
        .into_iter()
        .map(|p| p as u8)
        .collect())
}
