//! `afan`: train, evaluate and benchmark A-FAN models.

mod bench;
mod bench_child;
mod checkpoint;
mod config;
mod convert;
mod data;
mod detect;
mod device;
mod eval_detections;
mod evaluate;
mod infer;
mod metrics;
mod parallel;
mod precision;
mod schedule;
mod segment;
mod step;
#[cfg(test)]
mod test_lock;
mod train;
mod weights;

use anyhow::{Context, Result};

/// Training allocates and frees tens of megabytes per layer and step. glibc serves such blocks with
/// fresh `mmap`s and unmaps them on free, so every step page-faults and the kernel zeroes the same
/// memory again (~10% of a step in `perf`). Keeping freed memory in the heap saves that; see
/// docs/benchmarks.md.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20); // glibc's maximum on 64-bit
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}
use clap::{Parser, Subcommand};
use config::TrainConfig;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "afan",
    version,
    about = "Adversarial Feature Augmentation and Normalization (A-FAN) on Burn"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model (with no arguments: A-FAN on the embedded generated dataset).
    Train(Box<TrainArgs>),
    /// Evaluate a checkpoint.
    Eval(evaluate::EvalArgs),
    /// Time a clean and an A-FAN training step.
    Bench(bench::BenchArgs),
    /// Top-k classes of image files, or a segmentation mask (`--task segment`).
    Infer(infer::InferArgs),
    /// A PyTorch or safetensors state dict into an afan checkpoint.
    Convert(convert::ConvertArgs),
    /// COCO box AP/AR (pycocotools' 12 numbers) of a COCO-format result file.
    EvalDetections(eval_detections::EvalDetectionsArgs),
}

#[derive(clap::Args, Debug)]
struct TrainArgs {
    /// classify, segment (DeepLabV3+; configs/voc2012-*) or detect (Faster R-CNN;
    /// configs/voc07-*; `afan train --task detect --help` lists its own flags).
    #[arg(long, value_parser = ["classify", "segment", "detect"], default_value = "classify")]
    task: String,
    /// TOML configuration (see configs/); fields it leaves out keep the release defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Dataset folder or downloaded archive: CIFAR's binary version (folder or .tar.gz), or an
    /// ImageFolder root holding train/CLASS/*.JPEG and val/CLASS/*.JPEG (ImageNet's layout).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Dataset: synthetic, cifar10, cifar100, imagefolder (alias imagenet).
    #[arg(long)]
    dataset: Option<String>,
    /// Model name (resnet20..resnet110, resnet18..resnet152, efficientnet_b0..b7).
    #[arg(long)]
    model: Option<String>,
    /// baseline or afan.
    #[arg(long)]
    method: Option<String>,
    /// Number of epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Base learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// A-FAN split point (e.g. layer1, layer2.3).
    #[arg(long)]
    split: Option<String>,
    /// A-FAN PGD steps.
    #[arg(long)]
    pgd_steps: Option<usize>,
    /// Initial weights: an afan checkpoint or a PyTorch/safetensors state dict.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Refuse initial weights that do not load completely.
    #[arg(long)]
    strict: bool,
    /// Training arithmetic: f32, f16 or bf16 (mixed precision; classification).
    #[arg(long)]
    precision: Option<String>,
    /// Any other field: `--set optim.weight_decay=1e-4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Run directory (default: runs/<model>-<method>-<time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long, requires = "out")]
    resume: bool,
    /// Segmentation: stop after this many iterations, checkpointed as an interruption would
    /// leave it (a time-boxed job); continue with --resume.
    #[arg(long, requires = "out")]
    stop_after: Option<usize>,
    /// Backend device: cpu (= flex), wgpu, cuda[:N]; a comma-separated list (`cuda:0,cuda:1`)
    /// trains a classifier data-parallel, the batch split evenly over the devices.
    #[arg(long, env = "BURN_DEVICE", default_value = "cpu")]
    device: String,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Print the resolved configuration (file, flags and defaults merged) as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

impl TrainArgs {
    /// Named flags are shorthands for `--set`.
    fn overrides(&self) -> Vec<String> {
        config::Overrides::default()
            .path("data", self.data.as_deref())
            .text("dataset", self.dataset.as_deref())
            .text("model", self.model.as_deref())
            .text("method", self.method.as_deref())
            .value("epochs", self.epochs)
            .value("batch_size", self.batch_size)
            .value("optim.lr", self.lr)
            .value("seed", self.seed)
            .text("afan.split", self.split.as_deref())
            .value("afan.pgd.steps", self.pgd_steps)
            .path("weights", self.weights.as_deref())
            .value("strict_weights", self.strict.then_some(true))
            .text("precision", self.precision.as_deref())
            .finish(&self.set)
    }
}

fn train(args: TrainArgs) -> Result<()> {
    if args.task == "segment" {
        return segment::cli::train(segment::cli::TrainRequest {
            config: args.config,
            data: args.data,
            method: args.method,
            seed: args.seed,
            lr: args.lr,
            batch_size: args.batch_size,
            split: args.split,
            set: args.set,
            out: args.out,
            resume: args.resume,
            stop_after: args.stop_after,
            device: args.device,
            quiet: args.quiet,
            json: args.json,
            print_config: args.print_config,
        });
    }
    if args.stop_after.is_some() {
        anyhow::bail!("--stop-after applies to --task segment only");
    }
    let overrides = args.overrides();
    let config = if args.resume {
        let out = args
            .out
            .as_ref()
            .expect("clap requires --out with --resume");
        let stored = out.join(train::CONFIG);
        if args.config.is_some() {
            anyhow::bail!(
                "--resume continues with the run's own {}; drop --config",
                stored.display()
            );
        }
        // The stored configuration is authoritative; only the epoch count may be extended.
        let extra: Vec<String> = overrides
            .into_iter()
            .filter(|o| o.starts_with("epochs="))
            .collect();
        TrainConfig::load(Some(&stored), TrainConfig::default(), &extra)
            .with_context(|| format!("cannot resume from {}", out.display()))?
    } else {
        // No config file and no data: the quick start on the embedded dataset.
        let base = if args.config.is_none() && args.data.is_none() && args.dataset.is_none() {
            TrainConfig::quickstart()
        } else {
            TrainConfig::default()
        };
        TrainConfig::load(args.config.as_deref(), base, &overrides)?
    };
    if args.print_config {
        print!("{}", config.to_toml()?);
        return Ok(());
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| train::default_run_dir(&config));
    let (mut devices, sync) = device::parse_devices(&args.device)?;
    let replicas = if devices.len() > 1 {
        if !config.batch_size.is_multiple_of(devices.len()) {
            anyhow::bail!(
                "batch_size {} does not split evenly over {} devices; use a multiple of {}",
                config.batch_size,
                devices.len(),
                devices.len()
            );
        }
        eprintln!(
            "data-parallel over {} devices ({:?}): {} images per device per step",
            devices.len(),
            sync,
            config.batch_size / devices.len()
        );
        Some(parallel::Replicas::new(devices.clone(), sync)?)
    } else {
        None
    };
    let device = devices.swap_remove(0);
    if config.precision != precision::Precision::F32 {
        if replicas.is_some() {
            anyhow::bail!(
                "precision = {:?} with several devices is not implemented; train mixed precision on one device, or data-parallel in f32",
                config.precision
            );
        }
        precision::check_support(&device, config.precision)?;
    }
    eprintln!(
        "training {} ({:?}) on {} for {} epochs -> {}",
        config.model,
        config.method,
        config.dataset,
        config.epochs,
        out.display()
    );
    let summary = train::run(
        config,
        train::RunOptions {
            out,
            resume: args.resume,
            device,
            replicas,
            quiet: args.quiet,
        },
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "final {} top-1: {:.2}% (best {:.2}%) after {} epochs; run saved in {}",
            summary.eval_split,
            summary.final_top1,
            summary.best_top1,
            summary.epochs,
            summary.run_dir.display()
        );
    }
    Ok(())
}

fn main() {
    keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    // `--task detect` has its own argument set; everything else goes through clap here.
    let result = detect::intercept(std::env::args_os().collect()).unwrap_or_else(|| {
        match Cli::parse().command {
            Command::Train(a) => train(*a),
            Command::Eval(a) if a.task == "segment" => evaluate::run_segment(a),
            Command::Eval(a) => evaluate::run(a),
            Command::Bench(a) => bench::run(a),
            Command::Infer(a) => infer::run(a),
            Command::Convert(a) => convert::run(a),
            Command::EvalDetections(a) => eval_detections::run(a),
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
