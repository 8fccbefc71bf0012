//! One optimisation step of any task, on one device, on several (data-parallel), or in mixed
//! precision: the task computes the loss ([`Task::step`]); this module takes the gradients,
//! averages them over replicas or unscales them, and applies the optimizer per learning-rate
//! group. The learnable variant's point weights ([`Task::learnable`]) are a leaf of each step:
//! their gradient is read before the network's gradients go to its optimizer (which consumes
//! them) and, when the network's update is applied, they take their own SGD step.

use crate::error::{Result, TrainError};
use crate::parallel::{GradSync, Replicas};
use crate::precision::{LossScaler, Precision, cast_module, check_support, unscale};
use crate::task::{Measure, StepContext, Task};
use afan_core::{DrawScope, LearnableConfig, PointWeights};
use afan_models::step_passes;
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, FloatDType};

/// Where and in what arithmetic a run's steps execute.
pub(crate) struct Execution {
    /// The (first) device, with autodiff: the master weights and the optimizer live here.
    pub device: Device,
    /// The same device without autodiff, for evaluation.
    pub eval_device: Device,
    /// Two or more devices: data-parallel replicas.
    pub replicas: Option<Replicas>,
    /// The arithmetic of the passes.
    pub precision: Precision,
}

/// What one step produced.
pub(crate) struct Stepped<M> {
    /// The model after the update (or unchanged after a skipped f16 step).
    pub model: M,
    /// The step's loss (the mean of the shards').
    pub loss: f64,
    /// The task's measures (of every shard).
    pub measures: Vec<Measure>,
}

/// What the passes of a step leave: the model, its gradients, the loss, the measures, whether
/// to apply the update (false after an f16 overflow), and the point weights' gradient.
type Passes<M> = (
    M,
    GradientsParams,
    f64,
    Vec<Measure>,
    bool,
    Option<Vec<f64>>,
);

/// The learnable variant's weights and their setting, for one step.
pub(crate) type LearnableWeights<'a> = Option<(&'a mut PointWeights, &'a LearnableConfig)>;

impl Execution {
    /// Checks that `devices` can run batches of `batch_size` in `precision`.
    pub fn new(
        devices: &[Device],
        sync: GradSync,
        precision: Precision,
        batch_size: usize,
    ) -> Result<Self> {
        let Some(first) = devices.first() else {
            return Err(TrainError::Config("no device to train on".into()));
        };
        let replicas = if devices.len() > 1 {
            crate::parallel::shard_ranges(batch_size, devices.len())?;
            for d in &devices[1..] {
                check_support(d, precision)?;
            }
            Some(Replicas::new(devices.to_vec(), sync)?)
        } else {
            None
        };
        check_support(first, precision)?;
        Ok(Self {
            device: first.clone().autodiff(),
            eval_device: first.clone(),
            replicas,
            precision,
        })
    }

    /// One step of `task` on `batch` at rate `lr` (and of the point weights, if any).
    #[allow(clippy::too_many_arguments)]
    pub fn step<T: Task>(
        &self,
        task: &T,
        model: T::Model,
        optim: &mut ModuleOptimizer,
        batch: T::Batch,
        (iteration, seed): (usize, u64),
        lr: f64,
        scaler: &mut LossScaler,
        weights: LearnableWeights,
    ) -> Result<Stepped<T::Model>> {
        let host_weights = weights.as_ref().map(|(w, _)| &**w);
        // One device's passes run as afan_models::step_passes says: on a worker of rayon's pool,
        // in a flipped-weight scope (left, its buffers released, before the optimizer writes the
        // weights in place), their random draws from the step's seed (afan_core::draw; not the
        // backend's process-wide generator, which replicas would race for). Each replica's
        // thread opens the same two scopes, with its shard's seed.
        let (model, grads, loss, measures, apply, weight_grad) =
            match (&self.replicas, self.precision.half()) {
                (None, None) => step_passes(seed, || {
                    let leaf = host_weights.map(|w| w.leaf(&self.device));
                    let ctx = StepContext {
                        device: &self.device,
                        dtype: None,
                        iteration,
                        seed,
                        point_weights: leaf.as_ref(),
                    };
                    let out = task.step(&model, batch, &ctx)?;
                    let loss = crate::tensors::scalar(out.loss.clone());
                    let grads = out.loss.backward();
                    let weight_grad = leaf
                        .as_ref()
                        .zip(host_weights)
                        .map(|(l, w)| w.gradient(l, &grads));
                    let grads = GradientsParams::from_grads(grads, &model);
                    Ok::<_, TrainError>((model, grads, loss, out.measures, true, weight_grad))
                })?,
                (None, Some(dtype)) => step_passes(seed, || {
                    self.half(
                        task,
                        model,
                        batch,
                        (iteration, seed),
                        dtype,
                        scaler,
                        host_weights,
                    )
                })?,
                // No convolution runs on this thread here: each replica's thread opens its
                // own flipped-weight scope (Replicas::run_with_weights).
                (Some(r), dtype) => self.parallel(
                    task,
                    r,
                    model,
                    batch,
                    (iteration, seed),
                    dtype,
                    scaler,
                    host_weights,
                )?,
            };
        let model = if apply && loss.is_finite() {
            if let (Some((w, config)), Some(g)) = (weights, weight_grad)
                && g.iter().all(|v| v.is_finite())
            {
                w.step(&g, config);
            }
            let mut model = model;
            for (factor, g) in task.lr_groups(&model, grads) {
                model = optim.step(lr * factor, model, g);
            }
            model
        } else {
            model
        };
        Ok(Stepped {
            model,
            loss,
            measures,
        })
    }

    /// A data-parallel step: each replica runs the task's step on its shard (in half precision
    /// on a cast of the replica when `dtype` says so, the loss scaled as on one device), the
    /// gradients are averaged on the first device, then unscaled and checked; the point
    /// weights' gradient, if any, is averaged on the host and unscaled alike.
    #[allow(clippy::too_many_arguments)]
    fn parallel<T: Task>(
        &self,
        task: &T,
        replicas: &Replicas,
        model: T::Model,
        batch: T::Batch,
        (iteration, seed): (usize, u64),
        dtype: Option<FloatDType>,
        scaler: &mut LossScaler,
        weights: Option<&PointWeights>,
    ) -> Result<Passes<T::Model>> {
        // Fresh running-statistics storage under mixed precision, as on one device.
        let model = if dtype.is_some() {
            model.valid().train()
        } else {
            model
        };
        let scale = scaler.scale;
        let shards = task.shard(batch, replicas.count())?;
        let indexed: Vec<(usize, T::Batch)> = shards.into_iter().enumerate().collect();
        let run = replicas.run_with_weights(
            &model,
            indexed,
            weights,
            |replica, (i, shard), dev, leaf| {
                let ctx = StepContext {
                    device: dev,
                    dtype,
                    iteration,
                    seed: seed ^ ((i as u64) << 40),
                    point_weights: leaf,
                };
                let _draws = DrawScope::enter(ctx.seed);
                let Some(d) = dtype else {
                    let out = task.step(replica, shard, &ctx)?;
                    return Ok((out.loss, out.measures));
                };
                let out = task.step(&cast_module(replica.clone(), d), shard, &ctx)?;
                Ok((
                    out.loss.cast(FloatDType::F32).mul_scalar(scale),
                    out.measures,
                ))
            },
        );
        let (first, grads, outs, weight_grad) = run?;
        let weight_grad = weight_grad.map(|g| g.into_iter().map(|v| v / scale).collect());
        let loss = outs.iter().map(|(l, _)| l).sum::<f64>() / outs.len() as f64 / scale;
        let measures = outs.into_iter().flat_map(|(_, m)| m).collect();
        let Some(_) = dtype else {
            return Ok((first, grads, loss, measures, true, weight_grad));
        };
        let (grads, apply) = if scaler.is_dynamic() {
            let (grads, finite) = unscale(&first, grads, 1.0 / scale);
            (grads, scaler.update(finite))
        } else {
            (grads, true)
        };
        let first = cast_module(first.valid(), FloatDType::F32).train();
        Ok((first, grads, loss, measures, apply, weight_grad))
    }

    /// A mixed-precision step: the passes on a half-precision cast of the master model, the
    /// (scaled) loss's gradients on the f32 master parameters (and on the f32 point weights,
    /// unscaled here as the network's are).
    #[allow(clippy::too_many_arguments)]
    fn half<T: Task>(
        &self,
        task: &T,
        model: T::Model,
        batch: T::Batch,
        (iteration, seed): (usize, u64),
        dtype: FloatDType,
        scaler: &mut LossScaler,
        weights: Option<&PointWeights>,
    ) -> Result<Passes<T::Model>> {
        // Fresh running-statistics storage, with any pending per-thread f32 update folded in (Burn
        // keeps one per thread until read), so that casting the copy casts what its passes read.
        let model = model.valid().train();
        let half = cast_module(model.clone(), dtype);
        let leaf = weights.map(|w| w.leaf(&self.device));
        let ctx = StepContext {
            device: &self.device,
            dtype: Some(dtype),
            iteration,
            seed,
            point_weights: leaf.as_ref(),
        };
        let out = task.step(&half, batch, &ctx)?;
        let loss = out.loss.cast(FloatDType::F32);
        let scaled = loss.clone().mul_scalar(scaler.scale);
        let grads = scaled.backward();
        let weight_grad = leaf.as_ref().zip(weights).map(|(l, w)| {
            let g = w.gradient(l, &grads);
            g.into_iter().map(|v| v / scaler.scale).collect()
        });
        let grads = GradientsParams::from_grads(grads, &model);
        // Unscaling and the overflow check (a pass over every gradient and a wait for its sum)
        // only where there is a scale: bf16's gradients are used as they come.
        let (grads, apply) = if scaler.is_dynamic() {
            let (grads, finite) = unscale(&model, grads, 1.0 / scaler.scale);
            (grads, scaler.update(finite))
        } else {
            (grads, true)
        };
        drop(half);
        let model = cast_module(model.valid(), FloatDType::F32).train();
        Ok((
            model,
            grads,
            crate::tensors::scalar(loss),
            out.measures,
            apply,
            weight_grad,
        ))
    }
}

#[cfg(test)]
#[path = "step_tests.rs"]
mod tests;
