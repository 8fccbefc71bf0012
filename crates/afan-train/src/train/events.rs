//! What happens between steps: evaluation, records, checkpoints, the plot, progress lines, and
//! the NaN guard's messages, which name the checkpoint actually kept.

use super::state::TrainState;
use super::step::Execution;
use super::{Summary, model_bytes, number};
use crate::checkpoint::{self, BEST, CheckpointParts, LAST};
use crate::config::{Cadence, TaskSection};
use crate::error::{Result, TrainError};
use crate::fault::crash_point;
use crate::plot::{PLOT, plot};
use crate::records::{Record, Records};
use crate::run_dir::RunDir;
use crate::task::{Evaluation, Task, Value};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use indicatif::ProgressBar;
use serde_json::json;

pub(super) struct Events<'a, T: Task> {
    task: &'a T,
    run: &'a RunDir,
    records: &'a Records,
    history: Vec<Record>,
    quiet: bool,
    total: usize,
    per_epoch: usize,
    /// The iteration of the `last.ckpt` on disk (of this run).
    saved: Option<usize>,
    last_eval: Option<Evaluation>,
}

impl<'a, T: Task> Events<'a, T> {
    pub fn new(
        task: &'a T,
        run: &'a RunDir,
        records: &'a Records,
        history: Vec<Record>,
        (quiet, total): (bool, usize),
        saved: Option<usize>,
    ) -> Self {
        Self {
            task,
            run,
            records,
            history,
            quiet,
            total,
            per_epoch: task.steps_per_epoch(),
            saved,
            last_eval: None,
        }
    }

    fn eval_due(&self, it: usize) -> bool {
        it == self.total || self.task.config().common.eval_every.due(it, self.per_epoch)
    }

    /// Whether a checkpoint is written after `it` iterations of a run that stops at `end`.
    pub fn checkpoint_due(&self, it: usize, end: usize) -> bool {
        it == end
            || self.eval_due(it)
            || self
                .task
                .config()
                .common
                .checkpoint_every
                .due(it, self.per_epoch)
    }

    /// The progress bar of the window starting after `it` iterations.
    pub fn bar(&self, it: usize, end: usize) -> ProgressBar {
        let common = &self.task.config().common;
        let period = common.eval_every.period(self.per_epoch).unwrap_or(end);
        let next = ((it / period.max(1)) + 1) * period.max(1);
        let steps = next.min(end) - it;
        let prefix = match common.eval_every {
            Cadence::Epochs(_) => format!(
                "epoch {}/{}",
                it / self.per_epoch + 1,
                self.total.div_ceil(self.per_epoch)
            ),
            _ => format!("iteration {}/{}", it + 1, self.total),
        };
        crate::progress::bar(steps, prefix, self.quiet)
    }

    /// Which checkpoint survives, for the error messages.
    fn kept(&self) -> String {
        match self.saved {
            Some(it) => format!(
                "{} (after iteration {it}) is kept",
                self.run.join(LAST).display()
            ),
            None => "no checkpoint had been written yet".into(),
        }
    }

    /// The error for a step whose loss was `loss`.
    pub fn diverged(&self, loss: f64, it: usize, lr: f64) -> TrainError {
        TrainError::NonFinite(format!(
            "training loss became {loss} at iteration {}; stopped. {}. Try a lower optim.lr \
             (now {lr:.4}).",
            it + 1,
            self.kept()
        ))
    }

    /// Checks, evaluates (when due), records and saves after `it` iterations; returns whether
    /// it evaluated.
    pub fn checkpoint(
        &mut self,
        model: &T::Model,
        optim: &ModuleOptimizer,
        state: &mut TrainState,
        exec: &Execution,
        it: usize,
    ) -> Result<bool> {
        if !crate::tensors::all_finite(model) {
            return Err(TrainError::NonFinite(format!(
                "the weights became NaN or infinite by iteration {it} (the last step's update); \
                 stopped without saving them. {}. Try a lower optim.lr.",
                self.kept()
            )));
        }
        let evaluation = if self.eval_due(it) {
            let e = self
                .task
                .evaluate(&model.valid(), &exec.eval_device, self.quiet)?;
            let loss = e.loss.unwrap_or(0.0);
            if !e.headline.is_finite() || !loss.is_finite() {
                return Err(TrainError::NonFinite(format!(
                    "the evaluation after iteration {it} gave {} {} and loss {:?}; stopped \
                     without saving the model. {}.",
                    e.headline_name,
                    e.headline,
                    e.loss,
                    self.kept()
                )));
            }
            Some(e)
        } else {
            None
        };
        let bytes = model_bytes(model)?;
        let config = self.task.config().to_toml()?;
        if let Some(e) = &evaluation {
            let record = self.record(state, e, it);
            self.records.append(&record)?;
            self.history.push(record);
            crash_point("record", it);
            if state.best.is_none_or(|b| e.headline > b) {
                state.best = Some(e.headline);
                state.best_iteration = Some(it);
                self.write(BEST, &config, state, &bytes, None)?;
            }
            state.window = Default::default();
        }
        let optim_bytes = optim
            .into_bytes()
            .map_err(|e| TrainError::Config(format!("cannot serialize the optimizer: {e}")))?;
        self.write(LAST, &config, state, &bytes, Some(&optim_bytes))?;
        self.saved = Some(it);
        crash_point("checkpoint", it);
        let Some(e) = evaluation else {
            return Ok(false);
        };
        if let Err(err) = plot(&self.run.join(PLOT), &self.history, self.task.headline()) {
            eprintln!("warning: {err}");
        }
        if !self.quiet {
            let last = self.history.last().expect("just recorded");
            eprintln!(
                "iteration {it:>6}/{}{}  loss {:.4}  {}  {:.3}s/step",
                self.total,
                self.epoch_text(it),
                number(last, "train_loss").unwrap_or(f64::NAN),
                e.text,
                number(last, "step_seconds").unwrap_or(0.0)
            );
        }
        self.last_eval = Some(e);
        Ok(true)
    }

    fn epoch_text(&self, it: usize) -> String {
        if self.task.config().common.epochs.is_some() {
            format!(
                " (epoch {}/{})",
                it / self.per_epoch,
                self.total / self.per_epoch
            )
        } else {
            String::new()
        }
    }

    fn write(
        &self,
        name: &str,
        config: &str,
        state: &TrainState,
        model: &[u8],
        optim: Option<&[u8]>,
    ) -> Result<()> {
        let state = serde_json::to_value(state)
            .map_err(|e| TrainError::Config(format!("cannot encode the training state: {e}")))?;
        checkpoint::write(
            &self.run.join(name),
            CheckpointParts {
                task: T::Section::KIND,
                config,
                model_info: self.task.model_info(),
                state: Some(state),
                model,
                optim,
            },
        )
    }

    fn record(&self, state: &TrainState, e: &Evaluation, it: usize) -> Record {
        let mut r = Record::new();
        r.insert("iteration".into(), json!(it));
        if self.task.config().common.epochs.is_some() {
            let epoch = if it.is_multiple_of(self.per_epoch) {
                json!(it / self.per_epoch)
            } else {
                json!(it as f64 / self.per_epoch as f64)
            };
            r.insert("epoch".into(), epoch);
        }
        let w = &state.window;
        r.insert("lr".into(), json!(w.lr));
        r.insert("train_loss".into(), json!(w.mean_loss()));
        for (name, v) in w.means() {
            r.insert(format!("train_{name}"), value(&v));
        }
        if let Some(l) = e.loss {
            r.insert("eval_loss".into(), json!(l));
        }
        for (name, v) in &e.figures {
            r.insert(format!("eval_{name}"), value(v));
        }
        if let Some(p) = &state.point_weights {
            // The learnable variant's weights after the window's last step, in the order of
            // `learnable.splits`.
            r.insert("point_weights".into(), json!(p.values));
        }
        r.insert("step_seconds".into(), json!(w.median_seconds()));
        r.insert("elapsed_seconds".into(), json!(state.elapsed_seconds));
        r
    }

    /// How the run ended.
    pub fn summary(self, state: &TrainState, it: usize, per_epoch: usize) -> Summary {
        let headline = self.task.headline().to_string();
        let last = self
            .last_eval
            .as_ref()
            .map(|e| e.headline)
            .or_else(|| number(self.history.last()?, &format!("eval_{headline}")));
        Summary {
            task: T::Section::KIND,
            run_dir: self.run.path().to_path_buf(),
            iterations: it,
            total_iterations: self.total,
            epochs: it as f64 / per_epoch as f64,
            complete: it == self.total,
            headline,
            last,
            best: state.best,
            best_iteration: state.best_iteration,
            best_record: state.best_iteration.and_then(|at| {
                self.history
                    .iter()
                    .find(|r| r.get("iteration").and_then(|v| v.as_u64()) == Some(at as u64))
                    .map(|r| json!(r))
            }),
            evaluation: self.last_eval.map(|e| e.report),
            first_loss: self.history.first().and_then(|r| number(r, "train_loss")),
            last_loss: self.history.last().and_then(|r| number(r, "train_loss")),
        }
    }
}

fn value(v: &Value) -> serde_json::Value {
    match v {
        Value::Scalar(s) => json!(s),
        Value::Vector(v) => json!(v),
    }
}
