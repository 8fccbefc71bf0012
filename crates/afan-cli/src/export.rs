//! `afan export`: a checkpoint's model out to PyTorch, as the state dict of the PyTorch module it
//! re-implements (torchvision's names; the release's for CIFAR ResNets, DeepLab and Faster R-CNN),
//! in safetensors or `.pth`. The names, layouts and the atomic write are
//! [`afan_models::PytorchExport`]'s; this file only finds the model in the checkpoint.

use afan_models::{ExportFormat, ExportOptions, ExportSummary, PytorchExport};
use afan_train::classification::ClassificationTask;
use afan_train::detection::DetectionTask;
use afan_train::segmentation::SegmentationTask;
use afan_train::{Checkpoint, Purpose, Task, TaskKind};
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use std::path::{Path, PathBuf};

/// `afan export` arguments.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The checkpoint (`RUN/best.ckpt`, `RUN/last.ckpt`) or run directory.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// `safetensors` or `pth` (`pt`); default: from the extension of --out.
    #[arg(long)]
    pub format: Option<String>,
    /// The file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace --out if it exists (otherwise an existing file is refused).
    #[arg(long)]
    pub overwrite: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `afan export`.
pub fn run(args: ExportArgs) -> Result<()> {
    let format = format(args.format.as_deref(), &args.out)?;
    let options = ExportOptions::new(format).overwrite(args.overwrite);
    if args.out.exists() && !args.overwrite {
        // Refused before the model is built: the library would refuse it after.
        bail!(
            "{} already exists; pass --overwrite to replace it",
            args.out.display()
        );
    }
    // Export reads tensors back to the host: the CPU is where they end up anyway.
    let device = crate::device::one("cpu")?;
    let ckpt = Checkpoint::read(&args.checkpoint)?;
    let summary = match ckpt.task {
        TaskKind::Classification => classifier(&ckpt, &device)?.export(&args.out, options),
        TaskKind::Detection => detector(&ckpt, &device)?.export(&args.out, options),
        TaskKind::Segmentation => segmenter(&ckpt, &device)?.export(&args.out, options),
    }
    .with_context(|| {
        format!(
            "exporting the {} model of {}",
            ckpt.task,
            args.checkpoint.display()
        )
    })?;
    print(&summary, args.json)
}

/// `--format`, or the format the extension of `out` names.
fn format(flag: Option<&str>, out: &Path) -> Result<ExportFormat> {
    if let Some(f) = flag {
        return f.parse().map_err(|e| anyhow::anyhow!("--format {f}: {e}"));
    }
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("");
    ext.parse().map_err(|_| {
        anyhow::anyhow!(
            "{} has no .safetensors, .pth or .pt extension; pass --format safetensors|pth",
            out.display()
        )
    })
}

fn classifier(ckpt: &Checkpoint, device: &Device) -> Result<afan_models::Classifier> {
    let config = ckpt.config(&afan_train::classification::config::release(), &[])?;
    let Some(num_classes) = ckpt.model_info["num_classes"].as_u64() else {
        bail!("{} records no class count", ckpt.path.display());
    };
    let t = ClassificationTask::without_data(config, num_classes as usize, ckpt.class_names())?;
    Ok(ckpt.load_model(t.build_model(device, false)?)?)
}

fn detector(ckpt: &Checkpoint, device: &Device) -> Result<afan_models::FasterRcnn> {
    let config = ckpt.config(&afan_train::detection::config::release(), &[])?;
    let names = ckpt.class_names();
    let t = if names.is_empty() {
        DetectionTask::open(config, Purpose::Infer)?
    } else {
        DetectionTask::without_data(config, names)
    };
    Ok(ckpt.load_model(t.build_model(device, false)?)?)
}

fn segmenter(ckpt: &Checkpoint, device: &Device) -> Result<afan_models::DeepLabV3Plus> {
    let config = ckpt.config(&afan_train::segmentation::config::release(), &[])?;
    let t = SegmentationTask::open(config, Purpose::Infer)?;
    Ok(ckpt.load_model(t.build_model(device, false)?)?)
}

fn print(s: &ExportSummary, json: bool) -> Result<()> {
    if json {
        let v = serde_json::json!({
            "model": s.model,
            "path": s.path,
            "format": s.format,
            "tensors": s.tensors,
            "bytes": s.bytes,
        });
        println!("{}", serde_json::to_string(&v)?);
    } else {
        println!("exported {s}");
    }
    Ok(())
}
