//! Data-parallel training over the devices of one machine, for every task: the global batch is split into equal
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
//! The learnable variant's point weights ([`Replicas::run_with_weights`]) are a few host
//! scalars: each replica takes them as its own leaf, and their gradients are averaged on the
//! host, whatever the backend (with all-reduce they are not marked distributed).
//!
//! Batch norm normalises with each shard's own statistics, as PyTorch DDP without SyncBN. Each
//! replica moves the running statistics as one device would over its shard, privately
//! (`afan_models::norm::defer_running_updates`), and the run keeps their mean, added in replica
//! order when the replicas are joined (PyTorch's DDP keeps rank 0's). Burn's own per-thread
//! averaging of `RunningState` updates, which this relied on before, mixed the replicas'
//! values as timing fell and lost every update made by a thread of an earlier step.

use crate::error::{Result, TrainError};
use afan_core::PointWeights;
use afan_core::device::DeviceName;
use afan_models::norm::{DeferredRunningStats, defer_running_updates};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::distributed::{DistributedConfig, DistributedContext, ReduceOperation};
use burn::tensor::{Device, Tensor};

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

/// [`RunOutput`] and the point weights' gradient averaged over the replicas.
pub type WeightedRunOutput<M, T> = (M, GradientsParams, Vec<(f64, T)>, Option<Vec<f64>>);

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
            return Err(TrainError::Config(
                "data-parallel training needs at least two devices".into(),
            ));
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
        F: Fn(&M, S, &Device) -> Result<(Tensor<1>, T)> + Sync,
    {
        let (first, grads, outputs, _) =
            self.run_with_weights(model, shards, None, |m, s, d, _| step(m, s, d))?;
        Ok((first, grads, outputs))
    }

    /// [`run`](Self::run) with the learnable variant's point weights: each replica's `step`
    /// gets them as a leaf on its device ([`PointWeights::leaf`]); their gradients, read before
    /// the network's go to `GradientsParams`, are averaged over the replicas on the host (as the
    /// network's are averaged: the gradient of the mean of the shard losses).
    pub fn run_with_weights<M, S, T, F>(
        &self,
        model: &M,
        shards: Vec<S>,
        weights: Option<&PointWeights>,
        step: F,
    ) -> Result<WeightedRunOutput<M, T>>
    where
        M: Module,
        S: Send,
        T: Send,
        F: Fn(&M, S, &Device, Option<&Tensor<1>>) -> Result<(Tensor<1>, T)> + Sync,
    {
        if shards.len() != self.count() {
            return Err(TrainError::Config(format!(
                "{} shards for {} replicas",
                shards.len(),
                self.count()
            )));
        }
        let step = &step;
        let results = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .devices
                .iter()
                .zip(shards)
                .map(|(device, shard)| {
                    let replica = self.replicate(model, device);
                    scope.spawn(move || -> Result<_> {
                        // This thread's passes keep their flipped convolution weights; dropped
                        // when the thread's work ends, before the optimizer step.
                        let _flipped = afan_models::conv::FlippedWeights::enter();
                        let leaf = weights.map(|w| w.leaf(device));
                        let (result, running) =
                            defer_running_updates(|| step(&replica, shard, device, leaf.as_ref()));
                        let (loss, out) = result?;
                        let value = loss.clone().into_scalar::<f64>();
                        let grads = loss.backward();
                        let leaf_grad = leaf
                            .as_ref()
                            .zip(weights)
                            .map(|(l, w)| w.gradient(l, &grads));
                        let grads = GradientsParams::from_grads(grads, &replica);
                        Ok((replica, grads, value, out, leaf_grad, running))
                    })
                })
                .collect();
            handles
                .into_iter()
                .enumerate()
                .map(|(i, h)| {
                    h.join().map_err(|_| {
                        TrainError::Config(format!("the replica on device {i} panicked"))
                    })?
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let mut replicas = Vec::with_capacity(results.len());
        let mut grads = Vec::with_capacity(results.len());
        let mut outputs = Vec::with_capacity(results.len());
        let mut leaf_grads: Option<Vec<f64>> = None;
        let mut running = Vec::with_capacity(results.len());
        let n = results.len() as f64;
        for (replica, g, value, out, leaf_grad, r) in results {
            running.push(r);
            grads.push(g);
            outputs.push((value, out));
            replicas.push(replica);
            if let Some(lg) = leaf_grad {
                let sum = leaf_grads.get_or_insert_with(|| vec![0.0; lg.len()]);
                sum.iter_mut().zip(lg).for_each(|(s, g)| *s += g / n);
            }
        }
        DeferredRunningStats::store_mean(running);
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
        Ok((first, mean, outputs, leaf_grads))
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

/// `--device a,b,...`: the devices and how their gradients are averaged (Burn's all-reduce where
/// every device is CUDA, the only runtime with collectives in Burn 0.22; otherwise on the first
/// device). One name: no data parallelism.
pub fn parse_devices(list: &str) -> Result<(Vec<Device>, GradSync)> {
    let names = list
        .split(',')
        .map(|n| n.trim().parse::<DeviceName>())
        .collect::<Result<Vec<_>, _>>()?;
    // The CPU is one device that may be listed several times (replicas on one device exercise
    // the data-parallel path); a GPU named twice (`cuda,cuda:0`) is a typo.
    for (i, n) in names.iter().enumerate() {
        if *n != DeviceName::Cpu && names[..i].contains(n) {
            return Err(TrainError::Config(format!(
                "device list `{list}` names {n} twice"
            )));
        }
    }
    let devices = names
        .iter()
        .map(|n| n.build())
        .collect::<Result<Vec<_>, _>>()?;
    let sync = if names.iter().all(|n| matches!(n, DeviceName::Cuda(_))) {
        GradSync::AllReduce
    } else {
        GradSync::FirstDevice
    };
    Ok((devices, sync))
}

/// Splits `n` items into `parts` equal contiguous ranges, or says why it cannot.
pub fn shard_ranges(n: usize, parts: usize) -> Result<Vec<std::ops::Range<usize>>> {
    if parts == 0 || !n.is_multiple_of(parts) {
        return Err(TrainError::Config(format!(
            "batch_size {n} does not split evenly over {parts} devices; use a multiple of {parts}"
        )));
    }
    let per = n / parts;
    Ok((0..parts).map(|i| i * per..(i + 1) * per).collect())
}

#[cfg(test)]
#[path = "parallel_tests.rs"]
mod tests;
