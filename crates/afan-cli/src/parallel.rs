//! Data-parallel training over the devices of one machine: the global batch is split into equal
//! shards, each device runs the same step on its own replica of the model in its own thread, the
//! gradients are averaged, and one optimizer step per global batch updates the weights, which
//! every replica takes again at the next step.
//!
//! Two ways to average, picked by backend:
//! - [`GradSync::AllReduce`]: Burn's own collectives. Parameters are marked distributed
//!   (`Tensor::set_distributed`) and a [`DistributedContext`] with `ReduceOperation::Mean` is
//!   held for the run; `backward()` then all-reduces each gradient across replicas as soon as it
//!   is ready (burn-autodiff's `DistributedGradientRegistration`). In Burn 0.22 only the CUDA
//!   runtime implements the collectives (burn-backend-extension's catalog: flex has none, and
//!   wgpu/CPU cubecl runtimes panic inside cubecl).
//! - [`GradSync::FirstDevice`]: for backends without collectives (flex, wgpu): each replica's
//!   `GradientsParams` are moved to the first device and averaged there.
//!
//! Batch norm normalises with each shard's own statistics, as PyTorch DDP without SyncBN.
//! Replicas share the running statistics' storage (`RunningState` clones share it), and Burn
//! averages the per-thread updates, so the running statistics are the mean over replicas.

use crate::step::{AttackReport, Objective, training_loss};
use afan_models::Classifier;
use anyhow::{Result, anyhow, bail};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::distributed::{DistributedConfig, DistributedContext, ReduceOperation};
use burn::tensor::{Device, Int, Tensor};

/// How the replicas' gradients are averaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradSync {
    /// Burn's `all_reduce` during the backward pass (CUDA).
    AllReduce,
    /// Gradients moved to the first device and averaged there.
    FirstDevice,
}

/// The first replica, the averaged gradients, and each shard's loss and output.
pub type RunOutput<M, T> = (M, GradientsParams, Vec<(f64, T)>);

/// The devices of a data-parallel run (autodiff devices) and how they synchronise.
pub struct Replicas {
    devices: Vec<Device>,
    sync: GradSync,
    // Held for the run: dropping it closes Burn's communication server.
    _context: Option<DistributedContext>,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Replicas({} devices, {:?})",
            self.devices.len(),
            self.sync
        )
    }
}

impl Replicas {
    /// Replicas on `devices` (without autodiff; it is added here).
    pub fn new(devices: Vec<Device>, sync: GradSync) -> Result<Self> {
        if devices.len() < 2 {
            bail!("data-parallel training needs at least two devices");
        }
        let devices: Vec<Device> = devices.into_iter().map(|d| d.autodiff()).collect();
        let context = (sync == GradSync::AllReduce).then(|| {
            DistributedContext::init(
                devices.clone(),
                DistributedConfig {
                    all_reduce_op: ReduceOperation::Mean,
                },
            )
        });
        Ok(Self {
            devices,
            sync,
            _context: context,
        })
    }

    /// Number of replicas.
    pub fn count(&self) -> usize {
        self.devices.len()
    }

    /// The device holding the master weights and the optimizer state.
    pub fn first(&self) -> &Device {
        &self.devices[0]
    }

    fn replicate<M: Module>(&self, model: &M, device: &Device) -> M {
        let replica = model.clone().fork(device);
        match self.sync {
            GradSync::AllReduce => replica.map(&mut MarkDistributed),
            GradSync::FirstDevice => replica,
        }
    }

    /// Runs `step` on every shard, each on its own replica in its own thread, back-propagates
    /// each shard's loss, and returns the first replica (the weights to update: it is where
    /// the optimizer lives), the gradients averaged over replicas on the first device, and each
    /// shard's loss and output in shard order.
    pub fn run<M, S, T, F>(&self, model: &M, shards: Vec<S>, step: F) -> Result<RunOutput<M, T>>
    where
        M: Module,
        S: Send,
        T: Send,
        F: Fn(&M, S, &Device) -> (Tensor<1>, T) + Sync,
    {
        if shards.len() != self.count() {
            bail!("{} shards for {} replicas", shards.len(), self.count());
        }
        let step = &step;
        let results = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .devices
                .iter()
                .zip(shards)
                .map(|(device, shard)| {
                    let replica = self.replicate(model, device);
                    scope.spawn(move || {
                        let (loss, out) = step(&replica, shard, device);
                        let grads = GradientsParams::from_grads(loss.backward(), &replica);
                        let value = loss.into_scalar::<f64>();
                        (replica, grads, value, out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .enumerate()
                .map(|(i, h)| {
                    h.join()
                        .map_err(|_| anyhow!("the replica on device {i} panicked"))
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let mut replicas = Vec::with_capacity(results.len());
        let mut grads = Vec::with_capacity(results.len());
        let mut outputs = Vec::with_capacity(results.len());
        for (replica, g, value, out) in results {
            grads.push(g);
            outputs.push((value, out));
            replicas.push(replica);
        }
        let first = replicas.swap_remove(0);
        let mean = match self.sync {
            // Every replica already holds the mean after the all-reduce.
            GradSync::AllReduce => grads.swap_remove(0),
            GradSync::FirstDevice => {
                let moved = grads
                    .into_iter()
                    .zip(std::iter::once(&first).chain(replicas.iter()))
                    .map(|(g, r)| g.to_device(self.first(), r))
                    .collect();
                let mut avg = Average {
                    parts: moved,
                    out: GradientsParams::new(),
                };
                first.visit(&mut avg);
                avg.out
            }
        };
        Ok((first, mean, outputs))
    }
}

/// Marks every trainable parameter for Burn's gradient all-reduce (running statistics, which
/// take no gradient, are left alone).
struct MarkDistributed;

impl ModuleMapper for MarkDistributed {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !param.is_require_grad() {
            return param;
        }
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.set_distributed(id), mapper)
    }
}

/// The mean of each parameter's gradient over the parts that have one.
struct Average {
    parts: Vec<GradientsParams>,
    out: GradientsParams,
}

impl ModuleVisitor for Average {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let grads: Vec<Tensor<D>> = self
            .parts
            .iter_mut()
            .filter_map(|p| p.remove::<D>(param.id))
            .collect();
        let n = grads.len();
        if let Some(sum) = grads.into_iter().reduce(|a, b| a + b) {
            self.out.register(param.id, sum.div_scalar(n as f64));
        }
    }
}

/// What a data-parallel classification step returns to the training loop.
pub struct ParallelStep {
    /// The first replica, to be updated with `grads`.
    pub model: Classifier,
    /// Gradients averaged over replicas, on the first device.
    pub grads: GradientsParams,
    /// Mean of the shard losses (the global batch's loss: shards are equal).
    pub loss: f64,
    /// Logits of the whole batch on the host, in batch order.
    pub logits: Vec<f32>,
    /// The first shard's attack report (norms and point losses of one shard).
    pub report: Option<AttackReport>,
}

/// One training step of `objective` on `x`/`y` (on any device), split over the replicas.
pub fn classification_step(
    replicas: &Replicas,
    model: &Classifier,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    objective: &Objective,
) -> Result<ParallelStep> {
    let shards = shard(x, y, replicas.count())?;
    let (model, grads, outs) = replicas.run(model, shards, |replica, (x, y), device| {
        let (x, y) = (x.to_device(device), y.to_device(device));
        let (loss, logits, report) = training_loss(replica, x, y, objective);
        (loss, (crate::data::to_host(logits), report))
    })?;
    let n = outs.len() as f64;
    let loss = outs.iter().map(|(l, _)| l).sum::<f64>() / n;
    let mut logits = Vec::new();
    let mut report = None;
    for (i, (_, (l, r))) in outs.into_iter().enumerate() {
        logits.extend(l);
        if i == 0 {
            report = r;
        }
    }
    Ok(ParallelStep {
        model,
        grads,
        loss,
        logits,
        report,
    })
}

/// Splits a batch into `n` equal contiguous shards.
fn shard(x: Tensor<4>, y: Tensor<1, Int>, n: usize) -> Result<Vec<(Tensor<4>, Tensor<1, Int>)>> {
    let b = x.dims()[0];
    if !b.is_multiple_of(n) {
        bail!("batch_size {b} does not split evenly over {n} devices; use a multiple of {n}");
    }
    let per = b / n;
    Ok((0..n)
        .map(|i| {
            let r = i * per..(i + 1) * per;
            (x.clone().slice(r.clone()), y.clone().slice(r))
        })
        .collect())
}

#[cfg(test)]
#[path = "parallel_tests.rs"]
mod tests;
