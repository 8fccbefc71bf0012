//! `afan train --task detect`: the iteration-based detector training loop, baseline or A-FAN,
//! with periodic evaluation, metrics, atomic checkpoints and exact resumption.

use super::config::DetectConfig;
use super::data::{class_names, test_set, train_set};
use super::eval::{detect_all, eval_loader, score};
use super::model::{self, DetState};
use super::step::detection_loss;
use crate::config::Method;
use crate::step::sgd;
use crate::train::{BEST, CONFIG, LAST, METRICS, progress_bar};
use afan_data::detection::batch::{aspect_grouped_batches, load_batch};
use afan_data::detection::{DetectionLoaderConfig, DetectionSource};
use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One line of `metrics.jsonl`: the training window since the last evaluation, and the
/// evaluation at its end.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DetMetrics {
    /// Iterations done.
    pub iteration: usize,
    /// Rate of the window's last iteration.
    pub lr: f64,
    /// Mean objective over the window.
    pub train_loss: f64,
    /// Mean clean RPN objectness, RPN box, RoI class, RoI box losses.
    pub loss_parts: [f64; 4],
    /// A-FAN: mean loss per point (L0 clean .. L4, L5 RoI point).
    pub point_losses: Option<Vec<f64>>,
    /// VOC mAP@0.5 (07 11-point), percent.
    pub map07: f64,
    /// VOC mAP@0.5 (area), percent.
    pub map_area: f64,
    /// COCO AP@[.5:.95], fraction.
    pub coco_ap: f64,
    /// Median seconds per training step in the window.
    pub step_seconds: f64,
}

/// How a run ended.
#[derive(Debug, Serialize)]
pub struct DetSummary {
    /// Iterations completed.
    pub iterations: usize,
    /// Final headline figure (VOC07 mAP or COCO AP, percent).
    pub final_map: f64,
    /// Best headline figure.
    pub best_map: f64,
    /// Mean objective of the first and the last training window.
    pub first_loss: f64,
    /// See `first_loss`.
    pub last_loss: f64,
    /// The run directory.
    pub run_dir: PathBuf,
}

#[derive(Default)]
struct Window {
    loss: f64,
    parts: [f64; 4],
    points: Vec<f64>,
    steps: usize,
    times: Vec<f64>,
}

/// Runs (or resumes) detector training.
pub fn run(
    config: DetectConfig,
    out: &Path,
    resume: bool,
    device: Device,
    quiet: bool,
) -> Result<DetSummary> {
    let last_path = out.join(LAST);
    if !resume && last_path.exists() {
        bail!(
            "{} already holds a run (found {}); pass --resume to continue it or choose another --out",
            out.display(),
            last_path.display()
        );
    }
    // Data first: bad input leaves no empty run directory behind.
    let train = train_set(&config)?;
    let test = test_set(&config)?;
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create run directory {}", out.display()))?;
    let classes = class_names(&config)?;
    if classes.len() != config.detector.num_classes {
        bail!(
            "detector.num_classes = {} but the dataset has {} classes",
            config.detector.num_classes,
            classes.len()
        );
    }
    let ad = device.clone().autodiff();
    ad.seed(config.seed);
    let mut net = model::build(&config, &ad)?;
    let mut optim = sgd(&config.optim);
    let (mut start, mut best) = (0, f64::NEG_INFINITY);
    let mut history: Vec<DetMetrics> = Vec::new();
    if resume {
        let ckpt = model::load(&last_path)
            .with_context(|| format!("cannot resume: no usable checkpoint in {}", out.display()))?;
        net = crate::checkpoint::load_record(net, ckpt.model, &last_path)?;
        if let Some(o) = ckpt.optim {
            optim = optim.from_bytes(o).map_err(|e| {
                anyhow::anyhow!("{}: optimizer state unreadable: {e}", last_path.display())
            })?;
        }
        start = ckpt.state.iterations_done;
        best = ckpt.state.best_map;
        history = read_metrics(&out.join(METRICS), start)?;
        eprintln!("resuming {} at iteration {start}", out.display());
    }
    write_metrics(&out.join(METRICS), &history)?;
    std::fs::write(out.join(CONFIG), config.to_toml()?)?;

    let loader = DetectionLoaderConfig {
        batch_size: config.batch_size,
        resize: config.resize,
        hflip: config.hflip,
        shuffle: true,
        size_divisibility: 16,
        seed: config.seed,
    };
    let sizes: Vec<(usize, usize)> = (0..train.len()).map(|i| train.size(i)).collect();
    let per_epoch = aspect_grouped_batches(&sizes, &loader, 0).len();
    let afan = (config.method == Method::Afan).then_some(&config.afan);
    let k = config.detector.num_classes;
    let mut window = Window::default();
    let mut bar = progress_bar(config.eval_every, "train".into(), quiet);
    let (mut first_loss, mut last_loss) = (f64::NAN, f64::NAN);
    let mut final_map = f64::NAN;
    let mut it = start;
    while it < config.iterations {
        // Batches are a function of (seed, epoch): a resumed run skips to where it stopped.
        let epoch = (it / per_epoch) as u64;
        let order = aspect_grouped_batches(&sizes, &loader, epoch);
        for idx in order.into_iter().skip(it % per_epoch) {
            if it >= config.iterations {
                break;
            }
            let t = Instant::now();
            let lr = config.schedule.learning_rate(config.optim.lr, it);
            let batch = load_batch(&train, &idx, &loader, epoch)?;
            ad.seed(config.seed.wrapping_mul(1_000_003).wrapping_add(it as u64));
            let input = model::input(&batch, k, &ad)?;
            let step = detection_loss(&net, input, afan, config.seed ^ ((it as u64) << 20))?;
            let grads = GradientsParams::from_grads(step.loss.backward(), &net);
            let loss = step.loss.into_scalar::<f64>();
            if !loss.is_finite() {
                bar.abandon();
                bail!(
                    "training loss became {loss} at iteration {}; stopped. The last good \
                     checkpoint ({}) is kept. Try a lower optim.lr (now {lr:.4}).",
                    it + 1,
                    if last_path.exists() {
                        last_path.display().to_string()
                    } else {
                        "none yet".into()
                    }
                );
            }
            net = optim.step(lr, net, grads);
            it += 1;
            window.add(
                loss,
                step.parts,
                step.point_losses,
                t.elapsed().as_secs_f64(),
            );
            bar.set_message(format!(
                "loss {:.3} lr {lr:.4}",
                window.loss / window.steps as f64
            ));
            bar.inc(1);
            if it % config.eval_every == 0 || it == config.iterations {
                bar.finish_and_clear();
                let w = std::mem::take(&mut window);
                let dets = detect_all(&net.valid(), &test, &eval_loader(&config), &device, quiet)?;
                let eval = score(&test, &dets)?;
                let headline = eval.headline(test.coco);
                final_map = headline;
                let m = w.finish(it, lr, &eval);
                eprintln!(
                    "iter {it:>6}/{}  loss {:.4}  mAP07 {:.2}  mAP {:.2}  AP {:.3}  {:.2}s/step",
                    config.iterations, m.train_loss, m.map07, m.map_area, m.coco_ap, m.step_seconds
                );
                if first_loss.is_nan() {
                    first_loss = m.train_loss;
                }
                last_loss = m.train_loss;
                let improved = headline > best || best == f64::NEG_INFINITY;
                if improved {
                    best = headline;
                }
                let state = DetState {
                    task: "detect".into(),
                    iterations_done: it,
                    best_map: best,
                    map: headline,
                    class_names: classes.clone(),
                    config: config.clone(),
                };
                let bytes = model::model_bytes(&net)?;
                let optim_bytes = optim
                    .into_bytes()
                    .map_err(|e| anyhow::anyhow!("cannot serialize the optimizer: {e}"))?;
                if improved {
                    model::save(&out.join(BEST), &state, &bytes, None)?;
                }
                model::save(&last_path, &state, &bytes, Some(&optim_bytes))?;
                history.push(m);
                write_metrics(&out.join(METRICS), &history)?;
                bar = progress_bar(config.eval_every, "train".into(), quiet);
            }
        }
    }
    bar.finish_and_clear();
    Ok(DetSummary {
        iterations: it,
        final_map,
        best_map: best,
        first_loss,
        last_loss,
        run_dir: out.to_path_buf(),
    })
}

impl Window {
    fn add(&mut self, loss: f64, parts: [f32; 4], points: Option<Vec<f32>>, secs: f64) {
        self.loss += loss;
        for (a, p) in self.parts.iter_mut().zip(parts) {
            *a += p as f64;
        }
        if let Some(p) = points {
            self.points.resize(p.len(), 0.0);
            for (a, v) in self.points.iter_mut().zip(p) {
                *a += v as f64;
            }
        }
        self.steps += 1;
        self.times.push(secs);
    }

    fn finish(mut self, iteration: usize, lr: f64, eval: &super::eval::DetEval) -> DetMetrics {
        let n = self.steps.max(1) as f64;
        DetMetrics {
            iteration,
            lr,
            train_loss: self.loss / n,
            loss_parts: self.parts.map(|p| p / n),
            point_losses: (!self.points.is_empty())
                .then(|| self.points.iter().map(|p| p / n).collect()),
            map07: eval.map07,
            map_area: eval.map_area,
            coco_ap: eval.coco[0],
            step_seconds: crate::bench::median(&mut self.times).unwrap_or(0.0),
        }
    }
}

/// The metrics rows of iterations up to `max_iteration` (a resumed run drops later ones).
fn read_metrics(path: &Path, max_iteration: usize) -> Result<Vec<DetMetrics>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(Vec::new());
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<DetMetrics>(l)
                .with_context(|| format!("{}: malformed metrics line", path.display()))
        })
        .filter(|m| m.as_ref().map_or(true, |m| m.iteration <= max_iteration))
        .collect()
}

fn write_metrics(path: &Path, rows: &[DetMetrics]) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    for r in rows {
        writeln!(f, "{}", serde_json::to_string(r)?)?;
    }
    Ok(())
}
