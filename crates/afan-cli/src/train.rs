//! `afan train`: the training loop, baseline or A-FAN, with per-epoch evaluation, metrics,
//! atomic checkpoints and exact resumption.

use crate::checkpoint::{self, TrainerState};
use crate::config::{Method, TrainConfig};
use crate::data::{load_splits, to_tensors};
use crate::evaluate::evaluate;
use crate::metrics::{self, EpochMetrics};
use crate::precision::{LossScaler, Precision, half_step};
use crate::schedule::learning_rate;
use crate::step::{Objective, sgd, training_loss};
use afan_core::SplitModel;
use afan_data::{LoaderConfig, num_batches, topk_correct};
use afan_models::ClassifierKind;
use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// File names inside a run directory.
pub const LAST: &str = "last.ckpt";
/// Best-so-far checkpoint.
pub const BEST: &str = "best.ckpt";
/// Resolved configuration.
pub const CONFIG: &str = "config.toml";
/// Per-epoch metrics.
pub const METRICS: &str = "metrics.jsonl";
/// Curves.
pub const PLOT: &str = "curves.png";

/// How a run ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainSummary {
    /// Epochs completed.
    pub epochs: usize,
    /// Final evaluation top-1, percent.
    pub final_top1: f64,
    /// Best evaluation top-1, percent.
    pub best_top1: f64,
    /// `test` or `val`.
    pub eval_split: String,
    /// The run directory.
    pub run_dir: PathBuf,
}

/// Options of one run beyond its configuration.
pub struct RunOptions {
    /// Run directory.
    pub out: PathBuf,
    /// Continue from `out/last.ckpt`.
    pub resume: bool,
    /// Device (without autodiff); the first one of a data-parallel run.
    pub device: Device,
    /// Data-parallel replicas (two or more devices), or none.
    pub replicas: Option<crate::parallel::Replicas>,
    /// Hide progress bars.
    pub quiet: bool,
}

/// Runs (or resumes) training and returns the summary.
pub fn run(config: TrainConfig, opts: RunOptions) -> Result<TrainSummary> {
    let out = &opts.out;
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create run directory {}", out.display()))?;
    let last_path = out.join(LAST);
    if !opts.resume && last_path.exists() {
        bail!(
            "{} already holds a run (found {}); pass --resume to continue it or choose another --out",
            out.display(),
            last_path.display()
        );
    }
    let device = opts.device.clone().autodiff();
    let eval_device = opts.device.clone();
    let splits = load_splits(&config)?;
    let num_classes = splits.train.num_classes();
    let kind: ClassifierKind = config.model.parse()?;
    device.seed(config.seed);
    let mut model = kind.build(num_classes, &device);
    let mut optim = sgd(&config.optim);
    let mut start_epoch = 0;
    let mut best_top1 = f64::NEG_INFINITY;

    if opts.resume {
        let ckpt = checkpoint::load(&last_path)
            .with_context(|| format!("cannot resume: no usable checkpoint in {}", out.display()))?;
        if ckpt.state.model != config.model || ckpt.state.num_classes != num_classes {
            bail!(
                "{} holds a {} with {} classes, but the configuration asks for {} with {}",
                last_path.display(),
                ckpt.state.model,
                ckpt.state.num_classes,
                config.model,
                num_classes
            );
        }
        model = checkpoint::load_record(model, ckpt.model.clone(), &last_path)?;
        if let Some(o) = ckpt.optim {
            optim = optim.from_bytes(o).map_err(|e| {
                anyhow::anyhow!("{}: optimizer state unreadable: {e}", last_path.display())
            })?;
        }
        start_epoch = ckpt.state.epochs_done;
        best_top1 = ckpt.state.best_top1;
        let kept = metrics::read(&out.join(METRICS), start_epoch)?;
        metrics::rewrite(&out.join(METRICS), &kept)?;
        eprintln!(
            "resuming {} at epoch {}/{}",
            out.display(),
            start_epoch + 1,
            config.epochs
        );
    } else {
        let _ = std::fs::remove_file(out.join(METRICS));
        if let Some(path) = &config.weights {
            let (loaded, note) = crate::weights::WeightsFile::read(path)?.apply(
                model,
                kind,
                path,
                config.strict_weights,
            )?;
            model = loaded;
            eprintln!("initial weights from {}", path.display());
            if let Some(note) = note {
                eprintln!("warning: {note}");
            }
        }
    }
    std::fs::write(out.join(CONFIG), config.to_toml()?)?;

    let point = match config.method {
        Method::Afan => Some(model.split_point(&config.afan.split)?),
        Method::Baseline | Method::PixelPgd => None,
    };
    let loader = LoaderConfig {
        batch_size: config.batch_size,
        shuffle: true,
        augment: config.augment,
        drop_last: true,
        seed: config.seed,
    };
    let steps = num_batches(splits.train.len(), &loader);
    if steps == 0 {
        bail!(
            "the training split has {} images, fewer than one batch of {}",
            splits.train.len(),
            config.batch_size
        );
    }
    let eval_split = format!("{:?}", splits.eval_split).to_lowercase();
    let mut last_top1 = 0.0;
    let mut history = metrics::read(&out.join(METRICS), start_epoch)?;
    // Not checkpointed: a resumed f16 run starts again from 2^16 and backs off within steps.
    let mut scaler = LossScaler::new(config.precision);

    for epoch in start_epoch..config.epochs {
        let epoch_start = Instant::now();
        // Random starts of the attack draw from the backend's generator: seed it per epoch so a
        // resumed epoch draws what the uninterrupted one would have.
        device.seed(
            config
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(epoch as u64 + 1),
        );
        let bar = progress(steps, epoch, config.epochs, opts.quiet);
        let mut acc = EpochAccumulator::default();
        let mut lr = 0.0;
        for (step, batch) in splits.train.batches(&loader, epoch).enumerate() {
            let batch = batch?;
            let t = Instant::now();
            lr = learning_rate(config.optim.lr, &config.schedule, epoch, step, steps);
            let labels = batch.labels.clone();
            let (x, y) = to_tensors(batch, &device);
            let objective = match (&point, config.method) {
                (Some(p), _) => Objective::Afan(p, &config.afan),
                (None, Method::PixelPgd) => {
                    Objective::PixelPgd(&config.pixel, config.afan.attack_bn)
                }
                (None, _) => Objective::Baseline,
            };
            let mut apply = true;
            let out = match (&opts.replicas, config.precision) {
                (Some(r), _) => crate::parallel::classification_step(r, &model, x, y, &objective)?,
                (None, Precision::F32) => single_step(&model, x, y, &objective),
                (None, p) => {
                    let (out, ok) = half_step(&model, x, y, &objective, p, &mut scaler);
                    apply = ok;
                    out
                }
            };
            let extra = out.report.map(|r| {
                (
                    r.pgd.mean_l2() as f64,
                    r.pgd.mean_linf() as f64,
                    r.point_losses,
                )
            });
            let loss_value = out.loss;
            if !loss_value.is_finite() {
                bar.abandon();
                bail!(
                    "training loss became {loss_value} at epoch {} step {}; stopped. The last good checkpoint ({}) is kept. Try a lower optim.lr (now {lr:.4}).",
                    epoch + 1,
                    step + 1,
                    if last_path.exists() {
                        last_path.display().to_string()
                    } else {
                        "none yet".into()
                    }
                );
            }
            // A skipped step (an f16 overflow, the loss scale halved) keeps the weights.
            model = if apply {
                optim.step(lr, out.model, out.grads)
            } else {
                out.model
            };
            let logits = out.logits;
            acc.add(
                loss_value,
                topk_correct(&logits, num_classes, &labels, 1),
                labels.len(),
                extra,
                t.elapsed().as_secs_f64(),
            );
            bar.set_message(format!(
                "loss {:.3} acc {:.1}% lr {lr:.4}",
                acc.mean_loss(),
                acc.top1()
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();

        let eval = evaluate(&model.valid(), &splits.eval, 256, &eval_device, opts.quiet)?;
        last_top1 = eval.top1;
        let m = acc.finish(
            epoch + 1,
            lr,
            &eval,
            &eval_split,
            epoch_start.elapsed().as_secs_f64(),
        );
        eprintln!(
            "epoch {:>3}/{}  loss {:.4}  train {:.2}%  {eval_split} {:.2}% (top-5 {:.2}%)  {:.1}s",
            epoch + 1,
            config.epochs,
            m.train_loss,
            m.train_top1,
            eval.top1,
            eval.top5,
            m.epoch_seconds
        );
        let improved = eval.top1 > best_top1;
        if improved {
            best_top1 = eval.top1;
        }
        let state = TrainerState {
            version: 0,
            model: config.model.clone(),
            num_classes,
            epochs_done: epoch + 1,
            best_top1,
            top1: eval.top1,
            config: config.clone(),
        };
        let model_bytes = model
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| anyhow::anyhow!("cannot serialize the model: {e}"))?;
        let optim_bytes = optim
            .into_bytes()
            .map_err(|e| anyhow::anyhow!("cannot serialize the optimizer: {e}"))?;
        if improved {
            checkpoint::save(&out.join(BEST), &state, &model_bytes, None)?;
        }
        checkpoint::save(&last_path, &state, &model_bytes, Some(&optim_bytes))?;
        metrics::append(&out.join(METRICS), &m)?;
        history.push(m);
        if let Err(e) = metrics::plot(&out.join(PLOT), &history) {
            eprintln!("warning: {e:#}");
        }
    }
    Ok(TrainSummary {
        epochs: config.epochs,
        final_top1: last_top1,
        best_top1,
        eval_split,
        run_dir: out.clone(),
    })
}

/// The step on one device, in the shape of a data-parallel one.
fn single_step(
    model: &afan_models::Classifier,
    x: burn::tensor::Tensor<4>,
    y: burn::tensor::Tensor<1, burn::tensor::Int>,
    objective: &Objective,
) -> crate::parallel::ParallelStep {
    let (loss, logits, report) = training_loss(model, x, y, objective);
    let grads = GradientsParams::from_grads(loss.backward(), model);
    crate::parallel::ParallelStep {
        model: model.clone(),
        grads,
        loss: loss.into_scalar::<f64>(),
        logits: crate::data::to_host(logits),
        report,
    }
}

fn progress(steps: usize, epoch: usize, epochs: usize, quiet: bool) -> ProgressBar {
    progress_bar(steps, format!("epoch {}/{}", epoch + 1, epochs), quiet)
}

/// A bar over `steps` batches, hidden with `--quiet` (and by indicatif when stderr is no terminal).
pub fn progress_bar(steps: usize, prefix: String, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix);
    bar
}

#[derive(Default)]
struct EpochAccumulator {
    loss: f64,
    correct: usize,
    samples: usize,
    steps: usize,
    l2: f64,
    linf: f64,
    points: Vec<f64>,
    afan: bool,
    step_times: Vec<f64>,
}

impl EpochAccumulator {
    fn add(
        &mut self,
        loss: f64,
        correct: usize,
        n: usize,
        extra: Option<(f64, f64, Vec<burn::tensor::Tensor<1>>)>,
        secs: f64,
    ) {
        self.loss += loss;
        self.correct += correct;
        self.samples += n;
        self.steps += 1;
        self.step_times.push(secs);
        if let Some((l2, linf, points)) = extra {
            self.afan = true;
            self.l2 += l2;
            self.linf += linf;
            self.points.resize(points.len(), 0.0);
            for (acc, p) in self.points.iter_mut().zip(points) {
                *acc += p.into_scalar::<f64>();
            }
        }
    }

    fn mean_loss(&self) -> f64 {
        self.loss / self.steps.max(1) as f64
    }

    fn top1(&self) -> f64 {
        100.0 * self.correct as f64 / self.samples.max(1) as f64
    }

    fn finish(
        mut self,
        epoch: usize,
        lr: f64,
        eval: &crate::evaluate::EvalResult,
        split: &str,
        secs: f64,
    ) -> EpochMetrics {
        let s = self.steps.max(1) as f64;
        let median = crate::bench::median(&mut self.step_times).unwrap_or(0.0);
        let points: Option<Vec<f64>> = self
            .afan
            .then(|| self.points.iter().map(|p| p / s).collect());
        EpochMetrics {
            epoch,
            lr,
            train_loss: self.loss / s,
            train_clean_loss: points.as_ref().map(|p| p[0]).unwrap_or(self.loss / s),
            train_top1: self.top1(),
            eval_loss: eval.loss,
            eval_top1: eval.top1,
            eval_top5: eval.top5,
            eval_split: split.to_string(),
            pgd_l2: self.afan.then_some(self.l2 / s),
            pgd_linf: self.afan.then_some(self.linf / s),
            point_losses: points,
            step_seconds: median,
            epoch_seconds: secs,
        }
    }
}

/// Default run directory: `runs/<model>-<method>-<unix time>`.
pub fn default_run_dir(config: &TrainConfig) -> PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Path::new("runs").join(format!("{}-{:?}-{t}", config.model, config.method).to_lowercase())
}
