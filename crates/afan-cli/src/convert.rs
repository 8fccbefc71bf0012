//! `afan convert`: a PyTorch (or safetensors) state dict into an afan checkpoint, checked against
//! the model once, so later `eval`/`infer`/`train --weights` runs start from a file that is known
//! to fit and carries its model name and class count.

use crate::checkpoint::{self, TrainerState};
use crate::config::TrainConfig;
use crate::weights::WeightsFile;
use afan_models::ClassifierKind;
use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::Device;
use std::path::PathBuf;

/// `afan convert` arguments.
#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// The PyTorch `.pth`/`.pt` state dict (or checkpoint holding one), or a safetensors file.
    #[arg(long)]
    pub from: PathBuf,
    /// The architecture the weights are for (resnet18..resnet152, resnet20..resnet110).
    #[arg(long)]
    pub model: String,
    /// Output afan checkpoint.
    #[arg(long)]
    pub out: PathBuf,
    /// Class count; default: the rows of `fc.weight`.
    #[arg(long)]
    pub num_classes: Option<usize>,
    /// Refuse a partial load (`--strict false` keeps what does not fit as initialised).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub strict: bool,
}

/// Runs `afan convert`.
pub fn run(args: ConvertArgs) -> Result<()> {
    let kind: ClassifierKind = args.model.parse()?;
    let file = WeightsFile::read(&args.from)?;
    if matches!(file, WeightsFile::Checkpoint(_)) {
        bail!("{} is already an afan checkpoint", args.from.display());
    }
    let num_classes = match args.num_classes {
        Some(n) => n,
        None => file.num_classes(&args.from)?,
    };
    let device = Device::default();
    let model = kind.build(num_classes, &device);
    let (model, note) = file.apply(model, kind, &args.from, args.strict)?;
    if let Some(note) = note {
        eprintln!("warning: {note}");
    }
    let state = TrainerState {
        version: 0,
        model: kind.to_string(),
        num_classes,
        epochs_done: 0,
        best_top1: 0.0,
        top1: 0.0,
        config: TrainConfig {
            model: kind.to_string(),
            ..TrainConfig::default()
        },
    };
    let bytes = model
        .into_record()
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("cannot serialize the model: {e}"))?;
    checkpoint::save(&args.out, &state, &bytes, None)?;
    eprintln!(
        "wrote {} ({kind}, {num_classes} classes) from {}",
        args.out.display(),
        args.from.display()
    );
    Ok(())
}
