//! `afan bench --task segmentation`: iteration time and peak memory of DeepLabV3+ training steps,
//! baseline vs A-FAN, MobileNetV2 and ResNet-50 backbones, at one crop and batch.
//!
//! Each configuration runs in a fresh child process (this binary re-executed with
//! `--child`), because peak memory is a per-process high-water mark: measured in one process
//! the first, largest configuration would hide the others. The child reports its own `VmHWM`
//! (peak resident set) from `/proc/self/status` when it is done.

use crate::bench_args::BenchArgs;
use crate::bench_child::{StepClock, peak_rss_mib, run_row};
use afan_models::step_passes;
use afan_train::segmentation::SegmentationTask;
use afan_train::{Purpose, RunConfig, Task};
use anyhow::{Result, bail};
use burn::optim::GradientsParams;
use burn::tensor::{Distribution, Int, Tensor};
use serde::{Deserialize, Serialize};

/// The configurations timed: backbone override, its A-FAN backbone point, method. The point is
/// the release's VOC preset's (`SegmentationAfanConfig::voc`: stage 3, `layer3`; MobileNetV2's
/// stage 3 ends at `features.13`), as `segment_step_bench` (the floor check) and
/// `xtask/reference/torch_segment_bench.py` time it. `--child` takes any point.
const CONFIGS: [(&str, &str, &str); 4] = [
    ("mobilenet_v2", "features.13", "baseline"),
    ("mobilenet_v2", "features.13", "afan"),
    ("resnet50", "layer3", "baseline"),
    ("resnet50", "layer3", "afan"),
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
    /// Median CPU seconds of one step, all threads (absent where the clock is missing).
    pub cpu_s: Option<f64>,
    /// Peak resident set of the child process, MiB (`VmHWM`; absent where /proc is not).
    pub peak_rss_mib: Option<f64>,
}

fn backbone_override(name: &str) -> String {
    match name {
        "mobilenet_v2" => "model.backbone={mobilenet_v2={width_mult=1.0}}".into(),
        other => format!("model.backbone={other:?}"),
    }
}

/// Runs `afan bench --task segmentation`.
pub fn run(args: &BenchArgs) -> Result<()> {
    args.only_classification("segmentation")?;
    let [s, _] = args.size([32, 32], 16)?;
    if let Some(spec) = &args.child {
        return child(args, spec, s);
    }
    let specs = CONFIGS.map(|(backbone, split, method)| format!("{backbone},{split},{method}"));
    if args.listed_children(specs.iter().map(String::as_str)) {
        return Ok(());
    }
    let mut rows: Vec<SegBenchRow> = Vec::new();
    for spec in &specs {
        rows.push(run_row(args, "segmentation", &[spec.as_str()], spec)?);
    }
    if args.json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    println!(
        "DeepLabV3+ (output stride 16, 21 classes) training step, batch {} at {}x{} on {}, median of {} after {} warm-up; {}",
        args.batch,
        s,
        s,
        args.device,
        args.iters,
        args.warmup,
        crate::bench_child::PEAK_MEMORY
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
fn child(args: &BenchArgs, spec: &str, s: usize) -> Result<()> {
    let [backbone, split, method] = spec.split(',').collect::<Vec<_>>()[..] else {
        bail!("--child expects backbone,split,method, got {spec:?}");
    };
    let overrides = [
        backbone_override(backbone),
        format!("method={method:?}"),
        format!("afan.backbone.split={split:?}"),
        // The release's data, without its folder: the benchmark brings its own images.
        "data=\"unused\"".to_string(),
    ];
    let release = afan_train::segmentation::config::release();
    let config = RunConfig::load(&release, None, &overrides)?;
    let task = SegmentationTask::open(config, Purpose::Infer)?;
    let device = crate::device::one(&args.device)?.autodiff();
    device.seed(0);
    let mut model = task.build_model(&device, false)?;
    crate::bench_child::kernel_switches()?;
    let mut optim = crate::bench_child::optimizer(&task.config().common.optim)?;
    let b = args.batch;
    let x = Tensor::<4>::random([b, 3, s, s], Distribution::Normal(0.0, 1.0), &device);
    let classes = task.config().task.model.num_classes as f64;
    let y = Tensor::<3, Int>::random([b, s, s], Distribution::Uniform(0.0, classes), &device);
    let lr = task.config().common.optim.lr;
    let mut clock = StepClock::default();
    for i in 0..args.warmup + args.iters {
        let start = StepClock::start();
        // The engine's own step: the task's loss where the engine runs it (step_passes), then
        // one SGD step per learning-rate group.
        let grads = step_passes(i as u64, || -> Result<_> {
            let out = task.loss(&model, x.clone(), y.clone())?;
            let grads = GradientsParams::from_grads(out.loss.backward(), &model);
            // Reading the loss waits for the backend: the time is the whole step.
            let _ = out.loss.into_scalar::<f32>();
            Ok(grads)
        })?;
        for (factor, g) in task.lr_groups(&model, grads) {
            model = optim.step(lr * factor, model, g);
        }
        clock.record(start, i >= args.warmup);
    }
    let row = SegBenchRow {
        backbone: backbone.into(),
        method: method.into(),
        step_s: clock.wall_median(),
        cpu_s: clock.cpu_median(),
        samples: clock.wall,
        peak_rss_mib: peak_rss_mib(),
    };
    println!("{}", serde_json::to_string(&row)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::CONFIGS;
    use afan_models::deeplab::SegmentationAfanConfig;
    use afan_models::mobilenet_v2::MOBILENET_STAGE_ENDS;

    #[test]
    fn segment_bench_times_the_release_presets_point() {
        let split = SegmentationAfanConfig::voc().backbone.split;
        let stage: usize = split.strip_prefix("layer").unwrap().parse().unwrap();
        for (backbone, point, _) in CONFIGS {
            let expected = match backbone {
                "mobilenet_v2" => format!("features.{}", MOBILENET_STAGE_ENDS[stage - 1]),
                _ => split.clone(),
            };
            assert_eq!(point, expected, "{backbone}");
        }
    }
}
