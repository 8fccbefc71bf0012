//! `afan bench`: the cost of a clean training step, an A-FAN step and a pixel-PGD adversarial
//! training step, side by side in one run (the paper's efficiency claim), on random data, after
//! warm-up. Medians, because a shared machine is noisy.

use crate::bench_args::{BenchArgs, median};
use crate::task_arg::TaskArg;
use afan_core::{AfanConfig, PixelPgdConfig, SplitModel};
use afan_models::ClassifierKind;
use afan_train::classification::objective::{Objective, training_loss};
use afan_train::optim::OptimConfig;
use anyhow::Result;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Distribution, Int, Tensor};
use serde::Serialize;
use std::time::Instant;

/// The figures `afan bench` reports.
#[derive(Debug, Serialize)]
pub struct BenchResult {
    /// Model timed.
    pub model: String,
    /// Batch size.
    pub batch: usize,
    /// Device name.
    pub device: String,
    /// Median seconds of one clean SGD step (forward, backward, update).
    pub clean_step_s: f64,
    /// Median seconds of one A-FAN SGD step.
    pub afan_step_s: f64,
    /// `afan_step_s / clean_step_s`.
    pub afan_over_clean: f64,
    /// Median seconds of one pixel-PGD adversarial training step (absent with `--pixel-steps 0`).
    pub pixel_pgd_step_s: Option<f64>,
    /// `pixel_pgd_step_s / clean_step_s`.
    pub pixel_pgd_over_clean: Option<f64>,
    /// PGD steps of the pixel-level step.
    pub pixel_steps: usize,
    /// Median seconds of one forward pass in inference mode.
    pub inference_s: f64,
    /// PGD steps of the A-FAN step.
    pub pgd_steps: usize,
    /// Split point.
    pub split: String,
    /// Every timed sample, seconds.
    pub samples: BenchSamples,
}

/// Raw timings.
#[derive(Debug, Serialize)]
pub struct BenchSamples {
    /// Clean steps.
    pub clean: Vec<f64>,
    /// A-FAN steps.
    pub afan: Vec<f64>,
    /// Pixel-PGD steps.
    pub pixel_pgd: Vec<f64>,
    /// Inference passes.
    pub inference: Vec<f64>,
}

/// Runs `afan bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    match args.task {
        TaskArg::Segmentation => return crate::bench_segmentation::run(&args),
        TaskArg::Detection => return crate::bench_detection::run(&args),
        TaskArg::Classification => args.no_children()?,
    }
    if args.batch == 0 || args.iters == 0 || args.num_classes == Some(0) {
        anyhow::bail!("--batch, --iters and --num-classes must be at least 1");
    }
    let device = crate::device::one(&args.device)?.autodiff();
    let model_name = args.model.clone().unwrap_or_else(|| "resnet20".into());
    let kind: ClassifierKind = model_name.parse()?;
    let classes = args.num_classes.unwrap_or(10);
    let (pgd_steps, pixel_steps) = (args.pgd_steps.unwrap_or(3), args.pixel_steps.unwrap_or(7));
    let [h, w] = args.size([32, 32], 8)?;
    device.seed(0);
    let mut model = kind.build(classes, &device);
    let point = model.split_point(args.split.as_deref().unwrap_or("layer1"))?;
    let mut afan = AfanConfig::default();
    afan.pgd.steps = pgd_steps;
    afan.validate()?;
    crate::bench_child::kernel_switches()?;
    // The release's optimizer, as `afan train` builds it (momentum and weight decay included).
    let mut optim = crate::bench_child::optimizer(&OptimConfig::default())?;
    let shape = [args.batch, 3, h, w];
    let x = Tensor::<4>::random(shape, Distribution::Uniform(0.0, 1.0), &device);
    let y = Tensor::<1, Int>::random(
        [args.batch],
        Distribution::Uniform(0.0, classes as f64),
        &device,
    );

    let pixel = PixelPgdConfig {
        steps: pixel_steps,
        ..PixelPgdConfig::default()
    };
    let mut time = |objective: &Objective, model: &mut afan_models::Classifier| -> Vec<f64> {
        (0..args.warmup + args.iters)
            .map(|i| {
                let t = Instant::now();
                // The passes where the engine runs them (step_passes), left before the update.
                let (loss, grads) = afan_models::step_passes(i as u64, || {
                    let (loss, _, _) = training_loss(model, x.clone(), y.clone(), objective);
                    let grads = GradientsParams::from_grads(loss.backward(), &*model);
                    (loss, grads)
                });
                *model = optim.step(0.01, model.clone(), grads);
                // Reading the loss waits for the backend, so the time covers the whole step.
                let _ = loss.into_scalar::<f32>();
                t.elapsed().as_secs_f64()
            })
            .skip(args.warmup)
            .collect()
    };
    let mut clean = time(&Objective::Baseline, &mut model);
    let mut afan_t = time(&Objective::Afan(&point, &afan), &mut model);
    let mut pixel_t = if pixel_steps > 0 {
        time(&Objective::PixelPgd(&pixel, afan.attack_bn), &mut model)
    } else {
        Vec::new()
    };
    let valid = model.valid();
    let xv = x.clone().without_autodiff();
    let mut inference: Vec<f64> = (0..args.warmup + args.iters)
        .map(|_| {
            let t = Instant::now();
            let _ = valid.forward(xv.clone()).into_data();
            t.elapsed().as_secs_f64()
        })
        .skip(args.warmup)
        .collect();
    let (c, a, i) = (
        median(&mut clean).unwrap_or(f64::NAN),
        median(&mut afan_t).unwrap_or(f64::NAN),
        median(&mut inference).unwrap_or(f64::NAN),
    );
    let p = median(&mut pixel_t);
    let result = BenchResult {
        model: model_name,
        batch: args.batch,
        device: args.device.clone(),
        clean_step_s: c,
        afan_step_s: a,
        afan_over_clean: a / c,
        pixel_pgd_step_s: p,
        pixel_pgd_over_clean: p.map(|p| p / c),
        pixel_steps,
        inference_s: i,
        pgd_steps,
        split: point.name.clone(),
        samples: BenchSamples {
            clean,
            afan: afan_t,
            pixel_pgd: pixel_t,
            inference,
        },
    };
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!(
            "{} batch {} on {}: clean step {:.3}s, A-FAN step ({} PGD steps after {}) {:.3}s ({:.2}x), inference {:.3}s",
            result.model,
            result.batch,
            result.device,
            c,
            pgd_steps,
            result.split,
            a,
            a / c,
            i
        );
        if let Some(p) = p {
            println!(
                "pixel-PGD adversarial step ({} PGD steps on the input) {p:.3}s ({:.2}x clean, {:.2}x A-FAN)",
                pixel_steps,
                p / c,
                p / a
            );
        }
    }
    Ok(())
}
