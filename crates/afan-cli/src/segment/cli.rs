//! The command-line entry points of `--task segment`, kept apart from the classification code in
//! `main.rs`, which only forwards its parsed flags here.

use super::config::SegTrainConfig;
use super::eval::CONFIG_FILE;
use super::train::RunOptions;
use crate::device::parse_device;
use anyhow::{Context, Result, bail};
use std::path::PathBuf;

/// The `afan train` flags that apply to segmentation.
pub struct TrainRequest {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--data`: the dataset root.
    pub data: Option<PathBuf>,
    /// `--method`.
    pub method: Option<String>,
    /// `--seed`.
    pub seed: Option<u64>,
    /// `--lr`.
    pub lr: Option<f64>,
    /// `--batch-size`.
    pub batch_size: Option<usize>,
    /// `--split`: the backbone A-FAN point.
    pub split: Option<String>,
    /// `--set key=value`.
    pub set: Vec<String>,
    /// `--out`.
    pub out: Option<PathBuf>,
    /// `--resume`: continue the run in `--out` with its own `config.toml`.
    pub resume: bool,
    /// `--stop-after`.
    pub stop_after: Option<usize>,
    /// `--device`.
    pub device: String,
    /// `--quiet`.
    pub quiet: bool,
    /// `--json`.
    pub json: bool,
    /// `--print-config`.
    pub print_config: bool,
}

impl TrainRequest {
    fn overrides(&self) -> Vec<String> {
        crate::config::Overrides::default()
            .path("data.root", self.data.as_deref())
            .text("method", self.method.as_deref())
            .value("seed", self.seed)
            .value("lr", self.lr)
            .value("batch_size", self.batch_size)
            .text("afan.backbone.split", self.split.as_deref())
            .finish(&self.set)
    }
}

/// `afan train --task segment`.
pub fn train(req: TrainRequest) -> Result<()> {
    let base = if req.config.is_none() && req.data.is_none() {
        SegTrainConfig::quickstart()
    } else {
        SegTrainConfig::default()
    };
    let config = match (&req.out, req.resume) {
        (Some(out), true) => {
            if req.config.is_some() {
                bail!("--resume continues with the run's own {CONFIG_FILE}; drop --config");
            }
            let path = out.join(CONFIG_FILE);
            SegTrainConfig::load(Some(&path), SegTrainConfig::default(), &req.overrides())
                .with_context(|| format!("cannot resume from {}", out.display()))?
        }
        _ => SegTrainConfig::load(req.config.as_deref(), base, &req.overrides())?,
    };
    if req.print_config {
        print!("{}", config.to_toml()?);
        return Ok(());
    }
    let out = req.out.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from(format!("runs/segment-{:?}-{secs}", config.method).to_lowercase())
    });
    let device = parse_device(&req.device)?;
    eprintln!(
        "training DeepLabV3+ ({:?}, {:?}) on {:?} for {} iterations -> {}",
        config.model.backbone,
        config.method,
        config.data.dataset,
        config.iterations,
        out.display()
    );
    let opts = RunOptions {
        quiet: req.quiet,
        resume: req.resume,
        stop_after: req.stop_after,
    };
    let summary = super::train::run(&config, out, &device, opts)?;
    if req.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "final mIoU {:.2}% (pixel acc {:.2}%) after {} iterations; loss {:.4} -> {:.4}; run saved in {}",
            100.0 * summary.scores.mean_iou,
            100.0 * summary.scores.pixel_accuracy,
            summary.iterations,
            summary.first_loss,
            summary.last_loss,
            summary.run_dir.display()
        );
    }
    Ok(())
}
