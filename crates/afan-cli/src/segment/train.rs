//! The segmentation training loop: iterations (not epochs), poly learning rate, the backbone at a
//! tenth of the head's rate, evaluation every `eval_every` iterations.

use super::config::SegTrainConfig;
use super::data::{NORMALIZE, context, open_splits, to_tensors};
use super::eval::{CONFIG_FILE, MODEL_FILE, evaluate};
use super::resume::{self, SegState};
use super::step::{seg_points, seg_sgd, seg_step};
use afan_core::materialize;
use afan_data::seg::{SegScores, load_batch};
use afan_models::StateDict;
use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::Device;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::path::PathBuf;
use std::time::Instant;

/// How a run ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SegSummary {
    /// Iterations run.
    pub iterations: usize,
    /// Mean training loss of the first tenth of the iterations.
    pub first_loss: f64,
    /// Mean training loss of the last tenth.
    pub last_loss: f64,
    /// Scores of the final model on the evaluation split.
    pub scores: SegScores,
    /// Seconds per training iteration (data loading included).
    pub seconds_per_iteration: f64,
    /// The run directory (`config.toml`, `model.bin`, `metrics.jsonl`).
    pub run_dir: PathBuf,
}

/// The release's `PolyLR`: `lr * (1 - it / max)^power`.
pub fn poly_lr(base: f64, it: usize, max: usize, power: f64) -> f64 {
    base * (1.0 - it as f64 / max as f64).max(0.0).powf(power)
}

/// How to run.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// No progress lines.
    pub quiet: bool,
    /// Continue from `out/last.ckpt` instead of starting afresh.
    pub resume: bool,
    /// Stop after this many iterations (checkpointed) as an interruption would: a time-boxed
    /// run, and how the tests show that resuming reproduces the uninterrupted run.
    pub stop_after: Option<usize>,
}

/// Trains into `out` on `device` (without autodiff), from scratch or resumed, and returns the
/// summary.
pub fn run(
    config: &SegTrainConfig,
    out: PathBuf,
    device: &Device,
    opts: RunOptions,
) -> Result<SegSummary> {
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create run directory {}", out.display()))?;
    std::fs::write(out.join(CONFIG_FILE), config.to_toml()?)?;
    let metrics = out.join("metrics.jsonl");
    let splits = open_splits(&config.data, config.seed)?;
    if splits.train.num_classes != config.model.num_classes {
        bail!(
            "model.num_classes = {} but {:?} has {} classes",
            config.model.num_classes,
            config.data.dataset,
            splits.train.num_classes
        );
    }
    let train_device = device.clone().autodiff();
    train_device.seed(config.seed);
    let mut model = config.model.init(&train_device);
    if let Some(path) = &config.pretrained_backbone {
        let dict = StateDict::from_file(path)?;
        model = model
            .load_backbone(&dict)
            .with_context(|| format!("cannot use {} as the backbone", path.display()))?;
    }
    let mut model = materialize(model);
    let points = seg_points(&model, config)?;
    let mut optim = seg_sgd(config);
    let (start, mut losses, mut scores) = if opts.resume {
        let (state, m, o) = resume::load(&out, config, model, optim)?;
        (model, optim) = (m, o);
        resume::truncate_metrics(&metrics, state.iteration)?;
        if !opts.quiet {
            eprintln!(
                "resuming {} after iteration {}",
                out.display(),
                state.iteration
            );
        }
        (state.iteration, state.losses, state.scores)
    } else {
        let _ = std::fs::remove_file(&metrics);
        (0, Vec::with_capacity(config.iterations), None)
    };
    let end = opts
        .stop_after
        .map_or(config.iterations, |s| s.min(config.iterations));
    if start >= end {
        bail!(
            "{} has already run {start} of the {} iterations asked for",
            out.display(),
            config.iterations
        );
    }
    let b = config.batch_size;
    // The release's loader drops the last incomplete batch and reshuffles every pass.
    let per_pass = (splits.train.len() / b).max(1);
    let mut order: Vec<usize> = Vec::new();
    let clock = Instant::now();
    for it in start..end {
        // Dropout and any random attack start draw from the backend's generator: seed it per
        // iteration so a resumed iteration draws what the uninterrupted one would have.
        train_device.seed(
            config
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(it as u64 + 1),
        );
        if it % per_pass == 0 || it == start {
            order = (0..splits.train.len()).cycle().take(per_pass * b).collect();
            let pass = (it / per_pass) as u64;
            order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
                config.seed ^ (pass << 20),
            ));
        }
        let k = it % per_pass;
        let batch = load_batch(
            &splits.train,
            &order[k * b..(k + 1) * b],
            Some(&config.data.augment),
            None,
            (config.seed, it as u64),
            NORMALIZE,
        );
        let (x, y) = to_tensors(context(batch, "training")?, &train_device);
        let lr = poly_lr(config.lr, it, config.iterations, config.poly_power);
        let value;
        (model, value) = seg_step(
            model,
            &mut optim,
            (x, y),
            &points,
            &config.afan,
            lr,
            config.backbone_lr_mult,
        );
        if !value.is_finite() {
            bail!("training loss became {value} at iteration {it}; try a lower lr");
        }
        losses.push(value);
        let last = it + 1 == end;
        if last || (config.eval_every > 0 && (it + 1) % config.eval_every == 0) {
            let valid = model.valid();
            save_model(&valid, &out)?;
            let s = evaluate(&valid, &splits.val, config.data.val_crop, b, device)?;
            let line = serde_json::json!({"iteration": it + 1, "loss": value, "scores": s});
            append_line(&metrics, &line.to_string())?;
            scores = Some(s.clone());
            let state = SegState {
                version: 0,
                task: String::new(),
                iteration: it + 1,
                losses: losses.clone(),
                scores: scores.clone(),
                config: config.clone(),
            };
            resume::save(&out, &state, &model, &optim)?;
            if !opts.quiet {
                eprintln!(
                    "iteration {}: loss {value:.4}, mIoU {:.2}%",
                    it + 1,
                    100.0 * s.mean_iou
                );
            }
        }
    }
    let seconds_per_iteration = clock.elapsed().as_secs_f64() / (end - start) as f64;
    let tenth = (losses.len() / 10).max(1);
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    Ok(SegSummary {
        iterations: end,
        first_loss: mean(&losses[..tenth]),
        last_loss: mean(&losses[losses.len() - tenth..]),
        scores: scores.expect("the last iteration evaluates"),
        seconds_per_iteration,
        run_dir: out,
    })
}

/// Writes `out/model.bin` atomically (a crash mid-write leaves the previous one).
fn save_model(model: &afan_models::DeepLabV3Plus, out: &std::path::Path) -> Result<()> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("cannot serialize the model: {e}"))?;
    let (tmp, path) = (out.join("model.bin.tmp"), out.join(MODEL_FILE));
    std::fs::write(&tmp, &*bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

fn append_line(path: &std::path::Path, line: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{line}").with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::config::SegDatasetName;
    use afan_models::DeepLabBackbone;

    #[test]
    fn poly_schedule() {
        assert_eq!(poly_lr(0.01, 0, 100, 0.9), 0.01);
        assert!((poly_lr(0.01, 50, 100, 0.9) - 0.01 * 0.5f64.powf(0.9)).abs() < 1e-15);
        assert_eq!(poly_lr(0.01, 100, 100, 0.9), 0.0);
    }

    /// A small DeepLabV3+ (MobileNetV2 x0.25) with A-FAN at `features.6` and the decoder learns
    /// `shapes-seg` in 60 steps: the loss falls and the mIoU ends well above what predicting the
    /// majority class everywhere scores (background IoU only, about 0.75 / 4 classes = 0.19).
    /// Such a short run is chaotic in the last bits: two summation orders of the batch-norm
    /// kernels (8 and 32 lanes) ended at mIoU 0.58 and 0.38 and loss ratios 0.29 and 0.42 (at 40
    /// steps one of them was still predicting background only), hence 60 steps and these bounds.
    #[test]
    fn afan_deeplab_learns_shapes() {
        let _rng = crate::test_lock::device_rng();
        let mut config = SegTrainConfig::quickstart();
        assert_eq!(config.data.dataset, SegDatasetName::Shapes);
        assert_eq!(
            config.model.backbone,
            DeepLabBackbone::MobilenetV2 { width_mult: 0.25 }
        );
        config.data.shapes_train = 64;
        config.data.shapes_val = 16;
        config.iterations = 60;
        config.eval_every = 0;
        let dir = tempfile::tempdir().unwrap();
        let quiet = RunOptions {
            quiet: true,
            ..RunOptions::default()
        };
        let s = run(&config, dir.path().join("run"), &Device::default(), quiet).unwrap();
        eprintln!("{s:?}");
        assert!(s.last_loss < 0.6 * s.first_loss, "{s:?}");
        assert!(s.scores.mean_iou > 0.3, "{s:?}");
        assert!(dir.path().join("run/model.bin").is_file());
    }
}
