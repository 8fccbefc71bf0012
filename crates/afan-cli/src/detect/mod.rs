//! `--task detect`: Faster R-CNN training, evaluation and inference from the command line.
//!
//! The classification commands keep their own argument sets; `afan train|eval|infer --task
//! detect ...` is recognised before the main parser runs and parsed here, so the two tasks share
//! the binary without sharing (or overloading) flags.

pub mod bench;
pub mod config;
pub mod data;
pub mod eval;
pub mod infer;
pub mod model;
pub mod step;
pub mod train;

use anyhow::Result;
use clap::{Parser, Subcommand};
use config::{DetDataset, DetectConfig};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "afan", about = "Faster R-CNN with A-FAN (--task detect)")]
struct DetectCli {
    #[command(subcommand)]
    command: DetCommand,
}

#[derive(Subcommand, Debug)]
enum DetCommand {
    /// Train a detector (with no data: a small one on the embedded generated set).
    Train(Box<DetTrainArgs>),
    /// VOC mAP / COCO AP of a checkpoint, and its COCO result file.
    Eval(eval::DetEvalArgs),
    /// Boxes of one image.
    Infer(infer::DetInferArgs),
}

#[derive(clap::Args, Debug)]
struct DetTrainArgs {
    /// TOML configuration (see configs/*faster-rcnn*); left-out fields keep the defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A VOCdevkit folder (or a COCO folder with --dataset coco).
    #[arg(long)]
    data: Option<PathBuf>,
    /// synthetic, voc or coco (default: voc with --data, synthetic without).
    #[arg(long)]
    dataset: Option<String>,
    /// baseline or afan.
    #[arg(long)]
    method: Option<String>,
    /// Training iterations.
    #[arg(long)]
    iterations: Option<usize>,
    /// Images per iteration.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Base learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// ImageNet backbone: a torchvision ResNet state dict (.pth or safetensors).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Any other field: `--set detector.backbone=resnet101` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Run directory (default: runs/detect-<method>-<time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long, requires = "out")]
    resume: bool,
    /// Backend device.
    #[arg(long, env = "BURN_DEVICE", default_value = "cpu")]
    device: String,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Print the resolved configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

impl DetTrainArgs {
    fn overrides(&self) -> Vec<String> {
        crate::config::Overrides::default()
            .path("data", self.data.as_deref())
            .text("dataset", self.dataset.as_deref())
            .text("method", self.method.as_deref())
            .value("iterations", self.iterations)
            .value("batch_size", self.batch_size)
            .value("optim.lr", self.lr)
            .value("seed", self.seed)
            .path("weights", self.weights.as_deref())
            .finish(&self.set)
    }

    /// The preset the file and flags apply to: COCO's for `--dataset coco`, the quick start
    /// without data, VOC's otherwise.
    fn base(&self) -> DetectConfig {
        match self.dataset.as_deref() {
            Some("coco") => DetectConfig::coco(),
            Some("synthetic") => DetectConfig::quickstart(),
            Some(_) => DetectConfig::default(),
            None if self.config.is_none() && self.data.is_none() => DetectConfig::quickstart(),
            None => DetectConfig::default(),
        }
    }
}

/// Runs `args` (the process arguments) if they ask for `--task detect`; `None` otherwise.
pub fn intercept(args: Vec<OsString>) -> Option<Result<()>> {
    let command = args.get(1)?.to_str()?;
    if !matches!(command, "train" | "eval" | "infer") {
        return None;
    }
    let mut rest = Vec::with_capacity(args.len());
    let mut detect = false;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_str().unwrap_or("");
        if a == "--task=detect" {
            detect = true;
        } else if a == "--task" && args.get(i + 1).and_then(|v| v.to_str()) == Some("detect") {
            detect = true;
            i += 1;
        } else {
            rest.push(args[i].clone());
        }
        i += 1;
    }
    if !detect {
        return None;
    }
    let cli = DetectCli::parse_from(rest);
    Some(match cli.command {
        DetCommand::Train(a) => train(*a),
        DetCommand::Eval(a) => eval::run(a),
        DetCommand::Infer(a) => infer::run(a),
    })
}

fn train(args: DetTrainArgs) -> Result<()> {
    let config = if args.resume {
        let out = args
            .out
            .as_ref()
            .expect("clap requires --out with --resume");
        if args.config.is_some() {
            anyhow::bail!("--resume continues with the run's own config.toml; drop --config");
        }
        // The stored configuration is authoritative; only the iteration count may grow.
        let extra: Vec<String> = args
            .overrides()
            .into_iter()
            .filter(|o| o.starts_with("iterations="))
            .collect();
        let stored = out.join(crate::train::CONFIG);
        DetectConfig::load(Some(&stored), DetectConfig::default(), &extra)
            .map_err(|e| e.context(format!("cannot resume from {}", out.display())))?
    } else {
        DetectConfig::load(args.config.as_deref(), args.base(), &args.overrides())?
    };
    if args.print_config {
        print!("{}", config.to_toml()?);
        return Ok(());
    }
    let out = args.out.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PathBuf::from("runs").join(format!("detect-{:?}-{t}", config.method).to_lowercase())
    });
    let device = crate::device::parse_device(&args.device)?;
    let data = match config.dataset {
        DetDataset::Synthetic => "the generated shapes-det set".to_string(),
        _ => format!("{:?} {}", config.dataset, config.train_sets.join("+")),
    };
    eprintln!(
        "training Faster R-CNN {} ({:?}) on {data} for {} iterations -> {}",
        config.detector.backbone,
        config.method,
        config.iterations,
        out.display()
    );
    let summary = train::run(config, &out, args.resume, device, args.quiet)?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "final mAP {:.2} (best {:.2}) after {} iterations; loss {:.3} -> {:.3}; run saved in {}",
            summary.final_map,
            summary.best_map,
            summary.iterations,
            summary.first_loss,
            summary.last_loss,
            summary.run_dir.display()
        );
    }
    Ok(())
}
