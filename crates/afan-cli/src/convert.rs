//! `afan convert`: a PyTorch (or safetensors) state dict into an afan checkpoint, checked against
//! the model once, so later `eval`/`infer`/`train --weights` runs start from a file that is known
//! to fit and carries its model name and class count.

use afan_models::ClassifierKind;
use afan_train::checkpoint::{self, CheckpointParts};
use afan_train::classification::ClassificationTask;
use afan_train::classification::weights::WeightsFile;
use afan_train::{Task, TaskKind};
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
    /// The architecture the weights are for (resnet18..resnet152, resnet20..resnet110,
    /// efficientnet_b0..b7, mobilenet_v2).
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
        Some(0) => bail!("--num-classes must be at least 1"),
        Some(n) => n,
        None => file.num_classes(&args.from)?,
    };
    let device = Device::default();
    let (model, note) = file.apply(
        kind.build(num_classes, &device),
        kind,
        &args.from,
        args.strict,
    )?;
    if let Some(note) = note {
        eprintln!("warning: {note}");
    }
    let mut config = afan_train::classification::config::release();
    config.task.model = kind.to_string();
    let task = ClassificationTask::without_data(config, num_classes, Vec::new())?;
    let bytes = model
        .into_record()
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("cannot serialize the model: {e}"))?;
    checkpoint::write(
        &args.out,
        CheckpointParts {
            task: TaskKind::Classification,
            config: &task.config().to_toml()?,
            model_info: task.model_info(),
            state: None,
            model: &bytes,
            optim: None,
        },
    )?;
    eprintln!(
        "wrote {} ({kind}, {num_classes} classes) from {}",
        args.out.display(),
        args.from.display()
    );
    Ok(())
}
