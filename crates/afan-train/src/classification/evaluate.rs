//! Accuracy and loss of a classifier on a dataset.

use super::data::{ClassData, to_tensors};
use crate::error::Result;
use crate::task::{Evaluation, Value};
use afan_core::{SplitModel, cross_entropy};
use afan_data::{Corruption, LoaderConfig, topk_correct};
use afan_models::Classifier;
use burn::tensor::Device;
use serde::Serialize;

/// Accuracy figures over a whole split.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Accuracy {
    /// Top-1 accuracy, percent.
    pub top1: f64,
    /// Top-5 accuracy, percent.
    pub top5: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Images evaluated.
    pub samples: usize,
}

impl Accuracy {
    /// As the engine records it: top-1 is the headline.
    pub fn evaluation(&self, split: &str) -> Evaluation {
        let mut report = serde_json::to_value(self).unwrap_or_default();
        report["split"] = serde_json::json!(split);
        Evaluation {
            headline: self.top1,
            headline_name: "top1".into(),
            loss: Some(self.loss),
            figures: vec![
                ("top1".into(), Value::Scalar(self.top1)),
                ("top5".into(), Value::Scalar(self.top5)),
            ],
            report,
            text: format!(
                "{split} top-1 {:.2}% (top-5 {:.2}%), loss {:.4}",
                self.top1, self.top5, self.loss
            ),
        }
    }
}

/// Evaluates `model` (in validation mode, on a device without autodiff) on every image of
/// `dataset`, unaugmented, in order; with `corruption`, on the corrupted copy of each image (its
/// pixels in [0, 1], before the model's normalisation).
pub fn accuracy(
    model: &Classifier,
    dataset: &ClassData,
    batch_size: usize,
    device: &Device,
    quiet: bool,
    corruption: Option<&Corruption>,
) -> Result<Accuracy> {
    // On a worker of rayon's pool, as the training step (afan_models::on_pool).
    afan_models::on_pool(|| {
        let config = LoaderConfig {
            batch_size,
            shuffle: false,
            augment: false,
            drop_last: false,
            seed: 0,
        };
        let k = dataset.num_classes();
        let (mut top1, mut top5, mut loss_sum, mut n) = (0usize, 0usize, 0f64, 0usize);
        let bar = crate::progress::bar(
            afan_data::num_batches(dataset.len(), &config),
            "eval",
            quiet,
        );
        for batch in dataset.batches(&config, 0, 0) {
            let mut batch = batch?;
            if let Some(c) = corruption {
                let shape = (batch.channels, batch.height, batch.width);
                c.apply_to_batch(&mut batch.images, shape, &batch.indices);
            }
            bar.inc(1);
            let labels = batch.labels.clone();
            let b = labels.len();
            let (x, y) = to_tensors(batch, device);
            let logits = model.forward(x);
            let loss = cross_entropy(logits.clone(), y).into_scalar::<f64>();
            let logits = crate::tensors::to_host(logits);
            top1 += topk_correct(&logits, k, &labels, 1);
            top5 += topk_correct(&logits, k, &labels, 5.min(k));
            loss_sum += loss * b as f64;
            n += b;
        }
        bar.finish_and_clear();
        let pct = |c: usize| {
            if n == 0 {
                0.0
            } else {
                100.0 * c as f64 / n as f64
            }
        };
        Ok(Accuracy {
            top1: pct(top1),
            top5: pct(top5),
            loss: if n == 0 { 0.0 } else { loss_sum / n as f64 },
            samples: n,
        })
    })
}
