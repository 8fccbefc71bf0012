//! The one training loop, for every [`Task`]: iterations (epochs derived from the task's
//! batches per epoch), per-step seeding, the learning-rate schedule, evaluation and checkpoint
//! cadences, `best.ckpt`/`last.ckpt`, records, the curves plot, the NaN guard, data-parallel
//! replicas and mixed precision.
//!
//! Order at each checkpoint: the weights are checked finite; the evaluation (when due) is run
//! and checked finite; its record is appended and flushed; `best.ckpt` is written if the
//! headline improved; `last.ckpt` is renamed into place. A crash at any instant leaves a
//! `last.ckpt` whose iteration every kept record precedes or equals (resuming cuts the newer
//! records), and nothing non-finite is ever written.

mod events;
mod state;
mod step;

use crate::checkpoint::{Checkpoint, LAST};
use crate::config::TaskSection;
use crate::error::{Result, TrainError};
use crate::parallel::GradSync;
use crate::records::{Record, Records};
use crate::run_dir::{CONFIG, OpenMode, RunDir};
use crate::task::Task;
use crate::task_kind::TaskKind;
use burn::module::Module;
use burn::tensor::Device;
use serde::Serialize;
use state::TrainState;
use std::path::PathBuf;
use std::time::Instant;
use step::Execution;

/// How to run beyond the configuration: where, on what, how loudly.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The run directory.
    pub out: PathBuf,
    /// New run, replacing an existing one, or continuing it.
    pub mode: OpenMode,
    /// The devices (without autodiff); two or more train data-parallel.
    pub devices: Vec<Device>,
    /// How a data-parallel run averages gradients.
    pub sync: GradSync,
    /// No progress bars and no per-evaluation lines.
    pub quiet: bool,
    /// Stop after this many iterations with a checkpoint, as an interruption would (a
    /// time-boxed job; continue with [`OpenMode::Resume`]).
    pub stop_after: Option<usize>,
}

impl TrainOptions {
    /// A run in `out` on the CPU (or whatever `device` is).
    pub fn new(out: impl Into<PathBuf>, device: Device) -> Self {
        Self {
            out: out.into(),
            mode: OpenMode::Fresh,
            devices: vec![device],
            sync: GradSync::FirstDevice,
            quiet: true,
            stop_after: None,
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The task.
    pub task: TaskKind,
    /// The run directory.
    pub run_dir: PathBuf,
    /// Iterations completed.
    pub iterations: usize,
    /// The run's length in iterations.
    pub total_iterations: usize,
    /// Epochs completed (fractional where an evaluation fell inside an epoch).
    pub epochs: f64,
    /// Whether the run reached its length (false after `stop_after`).
    pub complete: bool,
    /// The name of the headline figure (`top1`, `map07`, `coco_ap`, `miou`).
    pub headline: String,
    /// The headline of the last evaluation, if any.
    pub last: Option<f64>,
    /// The best headline so far, if any.
    pub best: Option<f64>,
    /// The iteration of the best headline.
    pub best_iteration: Option<usize>,
    /// The metrics record of that evaluation (with the test figures of a run that picks its
    /// best checkpoint on a validation split: the release's reported number).
    pub best_record: Option<serde_json::Value>,
    /// The last evaluation's whole report (of this process).
    pub evaluation: Option<serde_json::Value>,
    /// Mean training loss of the first and the last recorded window.
    pub first_loss: Option<f64>,
    /// See `first_loss`.
    pub last_loss: Option<f64>,
}

/// Trains `task` as `opts` say (a fresh run, or the continuation of the one in `opts.out`) and
/// returns how it ended.
pub fn train<T: Task>(task: &T, opts: &TrainOptions) -> Result<Summary> {
    let config = task.config();
    let common = &config.common;
    let per_epoch = task.steps_per_epoch();
    if per_epoch == 0 {
        return Err(TrainError::Config(format!(
            "the training split has fewer images than one batch of {}",
            common.batch_size
        )));
    }
    let total = common.total_iterations(per_epoch);
    let exec = Execution::new(
        &opts.devices,
        opts.sync,
        common.precision,
        common.batch_size,
    )?;
    let run = RunDir::open(&opts.out, opts.mode)?;
    let config_text = config.to_toml()?;
    let records = Records::new(run.path());
    let mut optim = common.optim.build();
    exec.device.seed(common.seed);
    let (mut model, mut state, history) = if opts.mode == OpenMode::Resume {
        let ckpt = Checkpoint::read(&run.join(LAST))?;
        ckpt.expect_task(T::Section::KIND)?;
        let Some(saved) = &ckpt.state else {
            return Err(TrainError::checkpoint(
                &ckpt.path,
                "was written by an afan before the engine (format 1) and cannot be resumed; \
                 it still evaluates and serves as --weights",
            ));
        };
        let state: TrainState = serde_json::from_value(saved.clone()).map_err(|e| {
            TrainError::checkpoint(&ckpt.path, format!("its training state is malformed: {e}"))
        })?;
        if let Some(learnable) = task.learnable() {
            let saved = state.point_weights.as_ref().map_or(0, |w| w.values.len());
            if saved != learnable.splits.len() {
                return Err(TrainError::checkpoint(
                    &ckpt.path,
                    format!(
                        "holds {saved} point weights, but method = \"afan_learnable\" with \
                         learnable.splits = {:?} needs one per point",
                        learnable.splits
                    ),
                ));
            }
        }
        let model = ckpt.load_model(task.build_model(&exec.device, false)?)?;
        optim = ckpt.load_optimizer(optim)?;
        let history = records.truncate_after(state.iteration)?;
        (model, state, history)
    } else {
        let model = task.build_model(&exec.device, true)?;
        // Once the model is built (its split points and initial weights checked): a typo fixed
        // and run again needs no --overwrite; a run that has started says what it is.
        crate::fsutil::write_atomic(&run.join(CONFIG), config_text.as_bytes())?;
        let mut state = TrainState::new(common.precision);
        state.point_weights = task.learnable().map(|c| c.initial_weights());
        (model, state, Vec::new())
    };
    let end = opts.stop_after.map_or(total, |s| s.min(total));
    if state.iteration >= end {
        return Err(TrainError::RunDir(format!(
            "{} has already trained {} of its {total} iterations{}",
            run.path().display(),
            state.iteration,
            if state.iteration >= total {
                "; pass a larger --epochs or --iterations to extend it"
            } else {
                " (--stop-after is not past it)"
            }
        )));
    }
    if opts.mode == OpenMode::Resume {
        // The run's configuration, its length possibly extended.
        crate::fsutil::write_atomic(&run.join(CONFIG), config_text.as_bytes())?;
    }
    if !opts.quiet && state.iteration > 0 {
        eprintln!(
            "resuming {} after iteration {} of {total}",
            run.path().display(),
            state.iteration
        );
    }
    let saved = (opts.mode == OpenMode::Resume).then_some(state.iteration);
    let mut events = events::Events::new(task, &run, &records, history, (opts.quiet, total), saved);
    let clock = Instant::now();
    let elapsed_before = state.elapsed_seconds;
    let mut it = state.iteration;
    let mut bar = events.bar(it, end);
    while it < end {
        let epoch = it / per_epoch;
        let first = it;
        for batch in task.epoch_batches(epoch, it % per_epoch) {
            let batch = batch?;
            exec.device.seed(step_seed(common.seed, it));
            let lr = common
                .schedule
                .learning_rate(common.optim.lr, it, total, per_epoch);
            let t = Instant::now();
            let out = exec.step(
                task,
                model,
                &mut optim,
                batch,
                (it, step_seed(common.seed, it)),
                lr,
                &mut state.scaler,
                state.point_weights.as_mut().zip(task.learnable()),
            )?;
            if !out.loss.is_finite() {
                bar.abandon();
                return Err(events.diverged(out.loss, it, lr));
            }
            model = out.model;
            state
                .window
                .add(out.loss, out.measures, t.elapsed().as_secs_f64(), lr);
            it += 1;
            bar.set_message(format!("loss {:.4} lr {lr:.5}", state.window.mean_loss()));
            bar.inc(1);
            state.elapsed_seconds = elapsed_before + clock.elapsed().as_secs_f64();
            if events.checkpoint_due(it, end) {
                bar.finish_and_clear();
                state.iteration = it;
                let evaluated = events.checkpoint(&model, &optim, &mut state, &exec, it)?;
                if evaluated {
                    bar = events.bar(it, end);
                }
            }
            if it >= end || it.is_multiple_of(per_epoch) {
                break;
            }
        }
        if it == first || (it < end && !it.is_multiple_of(per_epoch)) {
            return Err(TrainError::Config(format!(
                "epoch {epoch} ended after {} of its {per_epoch} batches",
                it % per_epoch
            )));
        }
    }
    bar.finish_and_clear();
    Ok(events.summary(&state, it, per_epoch))
}

/// The seed of the backend's generator and of host-side sampling at iteration `it`: a function
/// of the run's seed and the iteration only, so a resumed iteration draws what the
/// uninterrupted one drew.
fn step_seed(seed: u64, it: usize) -> u64 {
    seed.wrapping_mul(1_000_003).wrapping_add(it as u64 + 1)
}

/// A record's value as `f64`.
fn number(r: &Record, key: &str) -> Option<f64> {
    r.get(key).and_then(|v| v.as_f64())
}

/// The model's record as bytes.
fn model_bytes<M: Module>(model: &M) -> Result<burn::tensor::Bytes> {
    model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| TrainError::Config(format!("cannot serialize the model: {e}")))
}
