//! Accuracy of a classifier on a dataset, and the `afan eval` command.

use crate::checkpoint;
use crate::data::{EvalSplit, load_eval, to_tensors};
use crate::device::parse_device;
use afan_core::{SplitModel, cross_entropy};
use afan_data::{ImageDataset, LoaderConfig, batches, topk_correct};
use afan_models::{Classifier, ClassifierKind};
use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use serde::Serialize;
use std::path::PathBuf;

/// Accuracy figures over a whole split.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EvalResult {
    /// Top-1 accuracy, percent.
    pub top1: f64,
    /// Top-5 accuracy, percent.
    pub top5: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Images evaluated.
    pub samples: usize,
}

/// Evaluates `model` (in validation mode, on a device without autodiff) on every image of
/// `dataset`, unaugmented, in order.
pub fn evaluate(
    model: &Classifier,
    dataset: &ImageDataset,
    batch_size: usize,
    device: &Device,
    quiet: bool,
) -> EvalResult {
    let config = LoaderConfig {
        batch_size,
        shuffle: false,
        augment: false,
        drop_last: false,
        seed: 0,
    };
    let k = dataset.num_classes;
    let (mut top1, mut top5, mut loss_sum, mut n) = (0usize, 0usize, 0f64, 0usize);
    let bar = crate::train::progress_bar(
        afan_data::num_batches(dataset.len(), &config),
        "eval".into(),
        quiet,
    );
    for batch in batches(dataset, &config, 0) {
        bar.inc(1);
        let labels = batch.labels.clone();
        let b = labels.len();
        let (x, y) = to_tensors(batch, device);
        let logits = model.forward(x);
        let loss = cross_entropy(logits.clone(), y).into_scalar::<f64>();
        let logits = crate::data::to_host(logits);
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
    EvalResult {
        top1: pct(top1),
        top5: pct(top5),
        loss: if n == 0 { 0.0 } else { loss_sum / n as f64 },
        samples: n,
    }
}

/// Builds the model a checkpoint describes and loads its weights, refusing a checkpoint of
/// another model.
pub fn model_from_checkpoint(
    ckpt: &checkpoint::Checkpoint,
    path: &std::path::Path,
    device: &Device,
) -> Result<Classifier> {
    let kind: ClassifierKind = ckpt.state.model.parse()?;
    let model = kind.build(ckpt.state.num_classes, device);
    load_weights(model, ckpt.model.clone(), path)
}

/// Applies a model record, naming the checkpoint when it does not fit.
pub fn load_weights(
    model: Classifier,
    bytes: burn::tensor::Bytes,
    path: &std::path::Path,
) -> Result<Classifier> {
    let record = ModuleRecord::from_bytes(bytes).map_err(|e| {
        anyhow::anyhow!(
            "checkpoint {}: model record unreadable: {e}",
            path.display()
        )
    })?;
    model.try_load_record(record).map_err(|e| {
        anyhow::anyhow!(
            "checkpoint {} does not fit model {}: {e}",
            path.display(),
            "this model"
        )
    })
}

/// `afan eval` arguments.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// classify, or segment (then --checkpoint is a segmentation run directory).
    #[arg(long, value_parser = ["classify", "segment"], default_value = "classify")]
    pub task: String,
    /// Checkpoint to evaluate (`RUN/best.ckpt` or `RUN/last.ckpt`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Dataset folder or archive; default: the data the run was trained on.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Dataset name; default: the run's.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Which split.
    #[arg(long, value_enum, default_value = "test")]
    pub split: EvalSplit,
    /// Batch size for evaluation.
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    /// Backend device.
    #[arg(long, env = "BURN_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `afan eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let ckpt = checkpoint::load(&args.checkpoint)?;
    let device = parse_device(&args.device)?;
    let mut config = ckpt.state.config.clone();
    if let Some(d) = &args.data {
        config.data = Some(d.clone());
    }
    if let Some(d) = &args.dataset {
        config.dataset = d.clone();
    }
    let dataset = load_eval(&config, args.split).context("cannot load the evaluation data")?;
    if dataset.num_classes != ckpt.state.num_classes {
        bail!(
            "checkpoint {} predicts {} classes but dataset `{}` has {}",
            args.checkpoint.display(),
            ckpt.state.num_classes,
            config.dataset,
            dataset.num_classes
        );
    }
    let model = model_from_checkpoint(&ckpt, &args.checkpoint, &device)?.valid();
    let result = evaluate(&model, &dataset, args.batch_size, &device, false);
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!(
            "{} on {} {:?}: top-1 {:.2}%  top-5 {:.2}%  loss {:.4}  ({} images)",
            ckpt.state.model,
            config.dataset,
            args.split,
            result.top1,
            result.top5,
            result.loss,
            result.samples
        );
    }
    Ok(())
}
