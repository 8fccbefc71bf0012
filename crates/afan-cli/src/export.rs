//! `afan export`: a checkpoint's weights out to PyTorch, as a torchvision-named state dict in
//! safetensors or `.pth` (the release's names for CIFAR ResNets and DeepLab).

use anyhow::{Result, bail};
use std::path::PathBuf;

/// The file formats `export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// `safetensors.torch.load_file` reads it.
    Safetensors,
    /// `torch.load` reads it (a zip-container state dict).
    Pth,
}

/// `afan export` arguments.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The checkpoint (`RUN/best.ckpt`) or run directory.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The file format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// The file to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `afan export`.
pub fn run(args: ExportArgs) -> Result<()> {
    let ckpt = afan_train::Checkpoint::read(&args.checkpoint)?;
    bail!(
        "afan export of a {} checkpoint to {:?} ({}) is not in this build yet: the state-dict \
         writer of afan-models is being added",
        ckpt.task,
        args.format,
        args.out.display()
    )
}
