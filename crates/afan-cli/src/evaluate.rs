//! Accuracy of a classifier on a dataset, and the `afan eval` command.

use crate::config::TrainConfig;
use crate::data::ClassData;
use crate::data::{EvalSplit, load_eval, to_tensors};
use crate::device::parse_device;
use crate::weights::WeightsFile;
use afan_core::{SplitModel, cross_entropy};
use afan_data::{LoaderConfig, topk_correct};
use afan_models::{Classifier, ClassifierKind};
use anyhow::{Context, Result, bail};
use burn::module::Module;
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
    dataset: &ClassData,
    batch_size: usize,
    device: &Device,
    quiet: bool,
) -> Result<EvalResult> {
    let config = LoaderConfig {
        batch_size,
        shuffle: false,
        augment: false,
        drop_last: false,
        seed: 0,
    };
    let k = dataset.num_classes();
    let (mut top1, mut top5, mut loss_sum, mut n) = (0usize, 0usize, 0f64, 0usize);
    let bar = crate::train::progress_bar(
        afan_data::num_batches(dataset.len(), &config),
        "eval".into(),
        quiet,
    );
    for batch in dataset.batches(&config, 0) {
        let batch = batch?;
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
    Ok(EvalResult {
        top1: pct(top1),
        top5: pct(top5),
        loss: if n == 0 { 0.0 } else { loss_sum / n as f64 },
        samples: n,
    })
}

/// `afan eval` arguments.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// classify, segment (then --checkpoint is a segmentation run directory) or detect
    /// (`afan eval --task detect --help` lists its flags).
    #[arg(long, value_parser = ["classify", "segment", "detect"], default_value = "classify")]
    pub task: String,
    /// Checkpoint to evaluate (`RUN/best.ckpt` or `RUN/last.ckpt`).
    #[arg(long, required_unless_present = "weights", conflicts_with = "weights")]
    pub checkpoint: Option<PathBuf>,
    /// Or any weights file: an afan checkpoint, a PyTorch/safetensors state dict (then --model
    /// and --dataset are needed).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Architecture of a state dict given with --weights.
    #[arg(long)]
    pub model: Option<String>,
    /// Refuse a state dict that does not load completely (`--strict false` to allow).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub strict: bool,
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

/// Runs `afan eval --task segment` (the checkpoint is a segmentation run directory).
pub fn run_segment(args: EvalArgs) -> Result<()> {
    let device = parse_device(&args.device)?;
    let Some(run) = args.checkpoint.as_deref().or(args.weights.as_deref()) else {
        bail!("--task segment needs --checkpoint RUN_DIR");
    };
    crate::segment::eval::run(run, args.data.as_deref(), &device, args.json)
}

/// Runs `afan eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let device = parse_device(&args.device)?;
    let path = args
        .checkpoint
        .clone()
        .or(args.weights.clone())
        .expect("clap requires one");
    let (mut config, model_name, num_classes, file) = match WeightsFile::read(&path)? {
        WeightsFile::Checkpoint(c) => {
            let s = &c.state;
            (
                s.config.clone(),
                s.model.clone(),
                Some(s.num_classes),
                WeightsFile::Checkpoint(c),
            )
        }
        dict => {
            let Some(model) = args.model.clone() else {
                bail!(
                    "{} is a state dict, which does not name its architecture; pass --model",
                    path.display()
                );
            };
            if args.dataset.is_none() {
                bail!(
                    "{} does not say what data it was trained on; pass --dataset (and --data)",
                    path.display()
                );
            }
            (
                TrainConfig {
                    model: model.clone(),
                    ..TrainConfig::default()
                },
                model,
                None,
                dict,
            )
        }
    };
    if let Some(d) = &args.data {
        config.data = Some(d.clone());
    }
    if let Some(d) = &args.dataset {
        config.dataset = d.clone();
    }
    let dataset = load_eval(&config, args.split).context("cannot load the evaluation data")?;
    let num_classes = num_classes.unwrap_or(dataset.num_classes());
    if dataset.num_classes() != num_classes {
        bail!(
            "{} predicts {num_classes} classes but dataset `{}` has {}",
            path.display(),
            config.dataset,
            dataset.num_classes()
        );
    }
    let kind: ClassifierKind = model_name.parse()?;
    let (model, _) = file.apply(kind.build(num_classes, &device), kind, &path, args.strict)?;
    let result = evaluate(&model.valid(), &dataset, args.batch_size, &device, false)?;
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!(
            "{model_name} on {} {:?}: top-1 {:.2}%  top-5 {:.2}%  loss {:.4}  ({} images)",
            config.dataset, args.split, result.top1, result.top5, result.loss, result.samples
        );
    }
    Ok(())
}
