//! `afan bench --task segment`: iteration time and peak memory of DeepLabV3+ training steps,
//! baseline vs A-FAN, MobileNetV2 and ResNet-50 backbones, at one crop and batch.
//!
//! Each configuration runs in a fresh child process (this binary re-executed with
//! `--seg-child`), because peak memory is a per-process high-water mark: measured in one process
//! the first, largest configuration would hide the others. The child reports its own `VmHWM`
//! (peak resident set) from `/proc/self/status` when it is done.

use super::config::SegTrainConfig;
use super::step::{seg_points, seg_sgd, seg_step};
use crate::bench::BenchArgs;
use crate::bench_child::{peak_rss_mib, run_row};
use crate::device::parse_device;
use afan_core::materialize;
use anyhow::{Result, bail};
use burn::tensor::{Distribution, Int, Tensor};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// The configurations timed: backbone override, its A-FAN point (the end of the stride-8
/// stage, as the release's `layer2` for ResNet), method.
const CONFIGS: [(&str, &str, &str); 4] = [
    ("mobilenet_v2", "features.6", "baseline"),
    ("mobilenet_v2", "features.6", "afan"),
    ("resnet50", "layer2", "baseline"),
    ("resnet50", "layer2", "afan"),
];

/// One configuration's figures, as a child prints them.
#[derive(Debug, Serialize, Deserialize)]
pub struct SegBenchRow {
    /// `mobilenet_v2` or `resnet50`.
    pub backbone: String,
    /// `baseline` or `afan`.
    pub method: String,
    /// Median seconds of one training step (forward, backward, both SGD updates).
    pub step_s: f64,
    /// Every timed step, seconds.
    pub samples: Vec<f64>,
    /// Peak resident set of the child process, MiB (`VmHWM`; absent where /proc is not).
    pub peak_rss_mib: Option<f64>,
}

fn backbone_override(name: &str) -> String {
    match name {
        "mobilenet_v2" => "model.backbone={mobilenet_v2={width_mult=1.0}}".into(),
        other => format!("model.backbone={other:?}"),
    }
}

/// Runs `afan bench --task segment`.
pub fn run(args: &BenchArgs) -> Result<()> {
    if let Some(spec) = &args.seg_child {
        return child(args, spec);
    }
    let mut rows: Vec<SegBenchRow> = Vec::new();
    for (backbone, split, method) in CONFIGS {
        let spec = format!("{backbone},{split},{method}");
        let size = args.size.to_string();
        let row_args = ["--seg-child", spec.as_str(), "--size", size.as_str()];
        rows.push(run_row(args, "segment", &row_args, &spec)?);
    }
    if args.json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    println!(
        "DeepLabV3+ (output stride 16, 21 classes) training step, batch {} at {}x{} on {}, median of {} after {} warm-up; peak memory = VmHWM of a fresh child process per row",
        args.batch, args.size, args.size, args.device, args.iters, args.warmup
    );
    println!(
        "{:<14} {:<9} {:>10} {:>9} {:>14} {:>9}",
        "backbone", "method", "step (s)", "x base", "peak RSS (MiB)", "x base"
    );
    for pair in rows.chunks(2) {
        let base = &pair[0];
        for r in pair {
            let mem = |r: &SegBenchRow| r.peak_rss_mib.unwrap_or(f64::NAN);
            println!(
                "{:<14} {:<9} {:>10.3} {:>9.2} {:>14.0} {:>9.2}",
                r.backbone,
                r.method,
                r.step_s,
                r.step_s / base.step_s,
                mem(r),
                mem(r) / mem(base)
            );
        }
    }
    Ok(())
}

/// Times one configuration (`backbone,split,method`) and prints its [`SegBenchRow`] as JSON.
fn child(args: &BenchArgs, spec: &str) -> Result<()> {
    let [backbone, split, method] = spec.split(',').collect::<Vec<_>>()[..] else {
        bail!("--seg-child expects backbone,split,method, got {spec:?}");
    };
    let overrides = [
        backbone_override(backbone),
        format!("method={method:?}"),
        format!("afan.backbone.split={split:?}"),
    ];
    let config = SegTrainConfig::load(None, SegTrainConfig::default(), &overrides)?;
    let device = parse_device(&args.device)?.autodiff();
    device.seed(0);
    let mut model = materialize(config.model.init(&device));
    let points = seg_points(&model, &config)?;
    let mut optim = seg_sgd(&config);
    let (b, s) = (args.batch, args.size);
    let x = Tensor::<4>::random([b, 3, s, s], Distribution::Normal(0.0, 1.0), &device);
    let classes = config.model.num_classes as f64;
    let y = Tensor::<3, Int>::random([b, s, s], Distribution::Uniform(0.0, classes), &device);
    let mut samples = Vec::new();
    for i in 0..args.warmup + args.iters {
        let t = Instant::now();
        // The step reads the loss back, which waits for the backend: the time is the whole step.
        let (m, _) = seg_step(
            model,
            &mut optim,
            (x.clone(), y.clone()),
            &points,
            &config.afan,
            config.lr,
            config.backbone_lr_mult,
        );
        model = m;
        if i >= args.warmup {
            samples.push(t.elapsed().as_secs_f64());
        }
    }
    let row = SegBenchRow {
        backbone: backbone.into(),
        method: method.into(),
        step_s: crate::bench::median(&mut samples.clone()).unwrap_or(f64::NAN),
        samples,
        peak_rss_mib: peak_rss_mib(),
    };
    println!("{}", serde_json::to_string(&row)?);
    Ok(())
}
