//! `afan`: train, evaluate, run, benchmark, convert and export A-FAN models, for classification,
//! detection and segmentation, through the training engine (`afan-train`). Each command is one
//! argument set (its `--help` lists every task's flags) and a flag that does not apply to the
//! chosen task is refused by name.

mod bench;
mod bench_args;
mod bench_child;
mod bench_detection;
mod bench_segmentation;
mod convert;
mod device;
mod eval;
mod eval_corrupt;
mod eval_detections;
mod export;
mod infer;
mod infer_outputs;
mod run_flags;
mod task_arg;
mod train;

use clap::{Parser, Subcommand};

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
    Train(Box<train::TrainArgs>),
    /// Evaluate a checkpoint.
    Eval(eval::EvalArgs),
    /// Predictions on image files: top-k classes, boxes or segmentation masks.
    Infer(infer::InferArgs),
    /// Time training steps (clean, A-FAN, pixel PGD) and their peak memory.
    Bench(bench_args::BenchArgs),
    /// A PyTorch or safetensors state dict into an afan checkpoint.
    Convert(convert::ConvertArgs),
    /// A checkpoint's weights out to a PyTorch state dict (safetensors or .pth).
    Export(export::ExportArgs),
    /// COCO box AP/AR (pycocotools' 12 numbers) of a COCO-format result file.
    EvalDetections(eval_detections::EvalDetectionsArgs),
}

fn main() {
    keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Train(a) => train::run(*a),
        Command::Eval(a) => eval::run(a),
        Command::Infer(a) => infer::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Export(a) => export::run(a),
        Command::EvalDetections(a) => eval_detections::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
