//! The [`Task`] trait: what the one training loop (`afan_train::train`) needs from a task, as
//! burn-train's `TrainStep` gives a model's step to its `Learner`. A task owns its configuration
//! section, its data, its model and the loss of one step for each method; the loop owns
//! iterations, schedules, devices, precision, evaluation cadence, checkpoints, records, plots
//! and the NaN guard.

use crate::config::{RunConfig, TaskSection};
use crate::error::Result;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

/// What a task is opened for: which data it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Training: the training split and the evaluation split.
    Train,
    /// Evaluation: the evaluation split only.
    Evaluate,
    /// Inference or export: no data.
    Infer,
}

/// Where and how one step (or one shard of a data-parallel step) runs.
#[derive(Clone, Debug)]
pub struct StepContext<'a> {
    /// The autodiff device of this replica.
    pub device: &'a Device,
    /// The half type of the passes under mixed precision: the task casts its float inputs.
    pub dtype: Option<FloatDType>,
    /// The iteration (0-based).
    pub iteration: usize,
    /// A seed for host-side sampling of this step and shard (anchor and RoI samplers).
    pub seed: u64,
    /// The learnable variant's per-point weights as a leaf recording its gradient (f32, on
    /// `device`), when the task trains them ([`Task::learnable`]).
    pub point_weights: Option<&'a Tensor<1>>,
}

impl StepContext<'_> {
    /// `x` on this step's device in this step's float type.
    pub fn input<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self.dtype {
            Some(d) => x.cast(d),
            None => x,
        }
    }
}

/// A measured value: one number, or one per point (A-FAN's strength points).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// One number.
    Scalar(f64),
    /// Several numbers (averaged element by element).
    Vector(Vec<f64>),
}

/// A named value of a step, averaged over a window of steps with `weight` (a loss: 1 per step;
/// an accuracy: the batch size).
#[derive(Clone, Debug, PartialEq)]
pub struct Measure {
    /// Recorded as `train_<name>`.
    pub name: &'static str,
    /// The value.
    pub value: Value,
    /// Its weight in the window's mean.
    pub weight: f64,
}

impl Measure {
    /// A number with weight 1.
    pub fn scalar(name: &'static str, value: f64) -> Self {
        Self {
            name,
            value: Value::Scalar(value),
            weight: 1.0,
        }
    }

    /// Numbers with weight 1.
    pub fn vector(name: &'static str, values: Vec<f64>) -> Self {
        Self {
            name,
            value: Value::Vector(values),
            weight: 1.0,
        }
    }
}

/// One step's loss and what it measured.
pub struct StepOutput {
    /// The objective to back-propagate (one element).
    pub loss: Tensor<1>,
    /// Values for the record (read to the host by the task).
    pub measures: Vec<Measure>,
}

/// A model's scores on the evaluation split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The figure that picks `best.ckpt`: higher is better (top-1 %, mAP %, mIoU %).
    pub headline: f64,
    /// Its name in records and summaries (`top1`, `map07`, `coco_ap`, `miou`).
    pub headline_name: String,
    /// The evaluation loss, where the task has one (checked by the NaN guard).
    pub loss: Option<f64>,
    /// Named figures, recorded as `eval_<name>`.
    pub figures: Vec<(String, Value)>,
    /// The whole result, as `afan eval --json` prints it.
    pub report: serde_json::Value,
    /// One line for people.
    pub text: String,
}

/// A task the training loop can run. Implementations: `afan_train::classification`,
/// `afan_train::detection`, `afan_train::segmentation`.
pub trait Task: Sized + Sync {
    /// The task's configuration section.
    type Section: TaskSection;
    /// The network.
    type Model: Module + Sync + 'static;
    /// One batch on the host (split over devices by [`Task::shard`]).
    type Batch: Send;

    /// Opens the data `purpose` needs; may complete the configuration from it (class counts).
    fn open(config: RunConfig<Self::Section>, purpose: Purpose) -> Result<Self>;

    /// The configuration, completed by [`Task::open`].
    fn config(&self) -> &RunConfig<Self::Section>;

    /// What a checkpoint records about the model beyond its configuration (class names), for
    /// evaluation and inference without the data.
    fn model_info(&self) -> serde_json::Value;

    /// A fresh model on `device`, with the configuration's initial weights when
    /// `initial_weights` (a checkpoint's weights replace them otherwise).
    fn build_model(&self, device: &Device, initial_weights: bool) -> Result<Self::Model>;

    /// The name of the evaluation's headline figure (`top1`, `map07`, `coco_ap`, `miou`).
    fn headline(&self) -> &'static str;

    /// Iterations of one pass over the training split.
    fn steps_per_epoch(&self) -> usize;

    /// The batches of epoch `epoch` from its batch `start` on: a function of the seed and the
    /// epoch only, so a resumed run sees the batches the uninterrupted one saw.
    fn epoch_batches(
        &self,
        epoch: usize,
        start: usize,
    ) -> Box<dyn Iterator<Item = Result<Self::Batch>> + '_>;

    /// Splits a batch into `parts` equal shards for data-parallel training.
    fn shard(&self, batch: Self::Batch, parts: usize) -> Result<Vec<Self::Batch>>;

    /// The loss of one step of the configured method on `batch` (moved to `ctx.device`).
    fn step(
        &self,
        model: &Self::Model,
        batch: Self::Batch,
        ctx: &StepContext,
    ) -> Result<StepOutput>;

    /// The gradients in groups with their learning-rate factors (a DeepLab backbone learns at a
    /// tenth of the head's rate); one group at factor 1 by default.
    fn lr_groups(
        &self,
        _model: &Self::Model,
        grads: GradientsParams,
    ) -> Vec<(f64, GradientsParams)> {
        vec![(1.0, grads)]
    }

    /// The learnable variant's setting when the run trains per-point weights beside the
    /// network (classification's `afan_learnable`): the engine keeps the weights in its state
    /// and checkpoints, hands them to [`Task::step`] as [`StepContext::point_weights`], and
    /// steps them with their own SGD from the gradient the backward pass leaves on them.
    fn learnable(&self) -> Option<&afan_core::LearnableConfig> {
        None
    }

    /// Scores of `model` (in validation mode, on a device without autodiff) on the evaluation
    /// split.
    fn evaluate(&self, model: &Self::Model, device: &Device, quiet: bool) -> Result<Evaluation>;
}
