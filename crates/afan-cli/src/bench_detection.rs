//! `afan bench --task detection`: iteration time and peak memory of Faster R-CNN C4 training steps,
//! baseline vs A-FAN, at the VOC preset (short side 600, long side at most 1000) with ResNet-18.
//!
//! As `afan bench --task segmentation`, each method runs in a fresh child process (this binary
//! re-executed with `--child`) that reports its own `VmHWM`, because peak memory is a
//! per-process high-water mark. Images are random; every image holds the same few random
//! objects, so the RPN and RoI samples have foreground as in real training.

use crate::bench_args::BenchArgs;
use crate::bench_child::{StepClock, peak_rss_mib, run_row};
use afan_models::detection::step::{DetectionInput, DetectionTarget};
use afan_models::step_passes;
use afan_train::detection::config::{DetectionConfig, release};
use afan_train::detection::objective::detection_loss;
use afan_train::{Method, RunConfig};
use anyhow::{Result, bail};
use burn::optim::GradientsParams;
use burn::tensor::{Distribution, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use serde::{Deserialize, Serialize};

/// The rows timed, each in its own child process.
const METHODS: [&str; 2] = ["baseline", "afan"];

/// One method's figures, as a child prints them.
#[derive(Debug, Serialize, Deserialize)]
pub struct DetBenchRow {
    /// `baseline` or `afan`.
    pub method: String,
    /// Median seconds of one training step (all passes, backward, SGD update).
    pub step_s: f64,
    /// Every timed step, seconds.
    pub samples: Vec<f64>,
    /// Median CPU seconds of one step, all threads (absent where the clock is missing).
    pub cpu_s: Option<f64>,
    /// Peak resident set of the child process, MiB (`VmHWM`; absent where /proc is not).
    pub peak_rss_mib: Option<f64>,
}

/// Runs `afan bench --task detection`.
pub fn run(args: &BenchArgs) -> Result<()> {
    args.only_classification("detection")?;
    let [h, w] = args.size([600, 800], 32)?;
    if let Some(method) = &args.child {
        return child(args, method, [h, w]);
    }
    if args.listed_children(METHODS) {
        return Ok(());
    }
    let mut rows: Vec<DetBenchRow> = Vec::new();
    for method in METHODS {
        rows.push(run_row(args, "detection", &[method], method)?);
    }
    if args.json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    println!(
        "Faster R-CNN C4 ResNet-18 (VOC preset, 20 classes) training step, batch {} at {h}x{w} on {}, median of {} after {} warm-up; {}",
        args.batch,
        args.device,
        args.iters,
        args.warmup,
        crate::bench_child::PEAK_MEMORY
    );
    println!(
        "{:<9} {:>10} {:>9} {:>14} {:>9}",
        "method", "step (s)", "x base", "peak RSS (MiB)", "x base"
    );
    let mem = |r: &DetBenchRow| r.peak_rss_mib.unwrap_or(f64::NAN);
    for r in &rows {
        println!(
            "{:<9} {:>10.3} {:>9.2} {:>14.0} {:>9.2}",
            r.method,
            r.step_s,
            r.step_s / rows[0].step_s,
            mem(r),
            mem(r) / mem(&rows[0])
        );
    }
    Ok(())
}

/// The release's VOC recipe with a ResNet-18 backbone and `method` (no data needed: the
/// benchmark brings its own images).
fn bench_config(method: &str) -> Result<RunConfig<DetectionConfig>> {
    let method = match method {
        "baseline" => Method::Baseline,
        "afan" => Method::Afan,
        other => bail!("--child expects baseline or afan, got {other:?}"),
    };
    let mut c = release();
    c.common.method = method;
    c.task.detector.backbone = "resnet18".into();
    c.task.detector.validate()?;
    c.task.afan.validate()?;
    Ok(c)
}

/// Three objects of 64 to 400 pixels per image, the same in every image and step.
fn targets(batch: usize, [h, w]: [usize; 2], classes: usize) -> Vec<DetectionTarget> {
    let mut rng = StdRng::seed_from_u64(0);
    let mut one = DetectionTarget::default();
    for _ in 0..3 {
        let side = |rng: &mut StdRng, limit: usize| rng.random_range(64..=400.min(limit)) as f32;
        let (bw, bh) = (side(&mut rng, w), side(&mut rng, h));
        let x = rng.random_range(0.0..=(w as f32 - bw));
        let y = rng.random_range(0.0..=(h as f32 - bh));
        one.boxes.push([x, y, x + bw, y + bh]);
        one.labels.push(rng.random_range(1..=classes));
    }
    vec![one; batch]
}

/// Times one method and prints its [`DetBenchRow`] as JSON.
fn child(args: &BenchArgs, method: &str, [h, w]: [usize; 2]) -> Result<()> {
    let config = bench_config(method)?;
    let device = crate::device::one(&args.device)?.autodiff();
    device.seed(0);
    let mut model = afan_train::detection::model::build(&config.task, None, false, &device)?;
    crate::bench_child::kernel_switches()?;
    let mut optim = crate::bench_child::optimizer(&config.common.optim)?;
    let b = args.batch;
    let k = config.task.detector.num_classes;
    let images = Tensor::<4>::random([b, 3, h, w], Distribution::Normal(0.0, 1.0), &device);
    let input = DetectionInput::new(images, vec![[h, w]; b], targets(b, [h, w], k), k)?;
    let afan = (config.common.method == Method::Afan).then_some(&config.task.afan);
    let mut clock = StepClock::default();
    for i in 0..args.warmup + args.iters {
        let start = StepClock::start();
        // Where the engine runs the passes (step_passes), left before the optimizer step.
        let grads = step_passes(i as u64, || -> Result<_> {
            let step = detection_loss(&model, input.clone(), afan, i as u64)?;
            Ok(GradientsParams::from_grads(step.loss.backward(), &model))
        })?;
        model = optim.step(config.common.optim.lr, model, grads);
        // Reading a parameter back waits for the backend: the time is the whole step.
        let _ = model.roi_head.cls_score.weight.val().into_data();
        clock.record(start, i >= args.warmup);
    }
    let row = DetBenchRow {
        method: method.into(),
        step_s: clock.wall_median(),
        cpu_s: clock.cpu_median(),
        samples: clock.wall,
        peak_rss_mib: peak_rss_mib(),
    };
    println!("{}", serde_json::to_string(&row)?);
    Ok(())
}
