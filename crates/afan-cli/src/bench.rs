//! `afan bench`: the cost of a clean training step, an A-FAN step and a pixel-PGD adversarial
//! training step, side by side in one run (the paper's efficiency claim), on random data, after
//! warm-up. Medians, because a shared machine is noisy.

use crate::config::OptimConfig;
use crate::device::parse_device;
use crate::step::{Objective, sgd, training_loss};
use afan_core::{AfanConfig, PixelPgdConfig, SplitModel};
use afan_models::ClassifierKind;
use anyhow::Result;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Distribution, Int, Tensor};
use serde::Serialize;
use std::time::Instant;

/// `afan bench` arguments.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Model to time.
    #[arg(long, default_value = "resnet20")]
    pub model: String,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// PGD steps of the A-FAN step.
    #[arg(long, default_value_t = 3)]
    pub pgd_steps: usize,
    /// PGD steps of the pixel-level adversarial step (0 skips it).
    #[arg(long, default_value_t = 7)]
    pub pixel_steps: usize,
    /// Split point of the A-FAN step.
    #[arg(long, default_value = "layer1")]
    pub split: String,
    /// Number of classes of the model.
    #[arg(long, default_value_t = 10)]
    pub classes: usize,
    /// Timed iterations per measurement.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Untimed warm-up iterations.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Image side (CIFAR: 32).
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Backend device.
    #[arg(long, env = "BURN_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// classify, segment (DeepLabV3+ baseline vs A-FAN; `--size` is the crop; see
    /// docs/segmentation.md), or
    /// detect (Faster R-CNN C4 ResNet-18 at the VOC preset, baseline vs A-FAN; see
    /// docs/benchmarks.md).
    #[arg(long, value_parser = ["classify", "segment", "detect"], default_value = "classify")]
    pub task: String,
    /// Internal: the one segmentation configuration a child process times.
    #[arg(long, hide = true)]
    pub seg_child: Option<String>,
    /// Detection: `HEIGHTxWIDTH` of the images (600x800 is a 500x375 VOC image at the VOC
    /// preset's short side 600).
    #[arg(long, default_value = "600x800")]
    pub det_image: String,
    /// Internal: the one detection method a child process times.
    #[arg(long, hide = true)]
    pub det_child: Option<String>,
}

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

/// The median of step times (the upper one of an even count; `None` when there are none): one
/// rule for every figure `bench` and the training logs print.
pub(crate) fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// Runs `afan bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    if args.task == "segment" {
        return crate::segment::bench::run(&args);
    }
    if args.task == "detect" {
        return crate::detect::bench::run(&args);
    }
    let base = parse_device(&args.device)?;
    let device = base.clone().autodiff();
    let kind: ClassifierKind = args.model.parse()?;
    device.seed(0);
    let mut model = kind.build(args.classes, &device);
    let point = model.split_point(&args.split)?;
    let mut afan = AfanConfig::default();
    afan.pgd.steps = args.pgd_steps;
    afan.validate()?;
    // The release's optimizer, as `afan train` builds it (momentum and weight decay included).
    let mut optim = sgd(&OptimConfig::default());
    let shape = [args.batch, 3, args.size, args.size];
    let x = Tensor::<4>::random(shape, Distribution::Uniform(0.0, 1.0), &device);
    let y = Tensor::<1, Int>::random(
        [args.batch],
        Distribution::Uniform(0.0, args.classes as f64),
        &device,
    );

    let pixel = PixelPgdConfig {
        steps: args.pixel_steps,
        ..PixelPgdConfig::default()
    };
    let mut time = |objective: &Objective, model: &mut afan_models::Classifier| -> Vec<f64> {
        (0..args.warmup + args.iters)
            .map(|_| {
                let t = Instant::now();
                let (loss, _, _) = training_loss(model, x.clone(), y.clone(), objective);
                let grads = GradientsParams::from_grads(loss.backward(), &*model);
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
    let mut pixel_t = if args.pixel_steps > 0 {
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
        model: args.model.clone(),
        batch: args.batch,
        device: args.device.clone(),
        clean_step_s: c,
        afan_step_s: a,
        afan_over_clean: a / c,
        pixel_pgd_step_s: p,
        pixel_pgd_over_clean: p.map(|p| p / c),
        pixel_steps: args.pixel_steps,
        inference_s: i,
        pgd_steps: args.pgd_steps,
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
            args.pgd_steps,
            result.split,
            a,
            a / c,
            i
        );
        if let Some(p) = p {
            println!(
                "pixel-PGD adversarial step ({} PGD steps on the input) {p:.3}s ({:.2}x clean, {:.2}x A-FAN)",
                args.pixel_steps,
                p / c,
                p / a
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_is_the_middle_or_upper_middle_and_none_when_empty() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(3.0));
        assert_eq!(median(&mut [f64::NAN, 1.0, 2.0]), Some(2.0)); // NaN sorts last
        assert_eq!(median(&mut []), None);
    }
}
