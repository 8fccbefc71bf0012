//! PyTorch's SGD (momentum, dampening, weight decay, Nesterov) as one pass over each parameter on
//! `flex`, and as Burn's own element-wise ops on every other device.
//!
//! Why not `burn::optim::Sgd`: it updates a parameter with seven element-wise tensor ops (decay,
//! two momentum scalings and a sum, the learning rate, the subtraction), single-threaded, and the
//! clones it takes (`tensor.clone()` for the decay, `grad.clone()` for the momentum) make several of
//! them allocate a fresh parameter-sized buffer: for DeepLabV3+ ResNet-50 (~40 M weights) that is
//! over a gigabyte of memory traffic and page faults a step (issue 19's profile). Here the flex
//! path reads each weight, gradient and velocity once and writes the weight and velocity in place,
//! on rayon's threads. The arithmetic is Burn's, in Burn's order and with its `f32` scalars, so
//! the results equal `burn::optim::Sgd`'s bit for bit (tested), and the optimizer state is saved
//! under the same names (`momentum.velocity`), so checkpoints written with either load in both.
//!
//! The loops run under the widest instruction set the CPU has (`afan_models::simd::Isa`: AVX2 or
//! AVX-512, chosen at run time; the workspace itself targets baseline x86-64, whose loops move
//! four floats at a time with SSE). The wider code computes the same operations in the same order
//! (Rust never fuses a multiply and an add into an FMA), so every instruction set gives Burn's
//! bits (tested on each one this CPU has); `AFAN_ISA=baseline` times the SSE loop.

use burn::optim::{LearningRate, Optimizer, RecordState, StateSink, StateSource, join_path};
use burn::tensor::{Device, Tensor};

/// Momentum settings as Burn's `Momentum` holds them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Momentum {
    /// `momentum` (Burn keeps it as `f32`).
    pub momentum: f32,
    /// `dampening` (Burn scales by `1 - dampening` computed in `f64`).
    pub dampening: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
}

/// `torch.optim.SGD`'s update, with Burn's `Sgd` arithmetic.
#[derive(Clone, Debug)]
pub(crate) struct Sgd {
    /// The L2 penalty added to the gradient, if any.
    pub weight_decay: Option<f32>,
    /// Momentum, if any.
    pub momentum: Option<Momentum>,
}

/// A parameter's state: its momentum buffer (absent without momentum).
#[derive(Clone)]
pub(crate) struct SgdState<const D: usize> {
    velocity: Option<Tensor<D>>,
}

/// The names `burn::optim::SgdState` saves its state under (`<id>.momentum.velocity`).
const MOMENTUM: &str = "momentum";
const VELOCITY: &str = "velocity";

impl<const D: usize> RecordState for SgdState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        if let Some(v) = &self.velocity {
            out.push_tensor(
                &join_path(prefix, MOMENTUM),
                VELOCITY,
                v.clone().into_data(),
            );
        }
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let path = join_path(prefix, MOMENTUM);
        let velocity = if src.has_under(&path) {
            Some(Tensor::from_data(src.take_tensor(&path, VELOCITY)?, device))
        } else {
            None
        };
        Some(Self { velocity })
    }
}

impl Optimizer for Sgd {
    type State<const D: usize> = SgdState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<SgdState<D>>,
    ) -> (Tensor<D>, Option<SgdState<D>>) {
        let velocity = state.and_then(|s| s.velocity);
        #[cfg(feature = "flex")]
        if flex::applies(&tensor, &grad, velocity.as_ref()) {
            return flex::step(self, lr, tensor, grad, velocity);
        }
        self.step_by_ops(lr, tensor, grad, velocity)
    }

    fn to_device<const D: usize>(state: SgdState<D>, device: &Device) -> SgdState<D> {
        SgdState {
            velocity: state.velocity.map(|v| v.to_device(device)),
        }
    }
}

impl Sgd {
    /// `burn::optim::Sgd::step` with Burn's ops, line for line (every device but flex).
    pub(crate) fn step_by_ops<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        mut grad: Tensor<D>,
        velocity: Option<Tensor<D>>,
    ) -> (Tensor<D>, Option<SgdState<D>>) {
        if let Some(penalty) = self.weight_decay {
            grad = tensor.clone().mul_scalar(penalty).add(grad);
        }
        let mut state = SgdState { velocity: None };
        if let Some(m) = self.momentum {
            let velocity = match velocity {
                Some(v) => grad
                    .clone()
                    .mul_scalar(1.0 - m.dampening)
                    .add(v.mul_scalar(m.momentum)),
                None => grad.clone(),
            };
            grad = if m.nesterov {
                velocity.clone().mul_scalar(m.momentum).add(grad)
            } else {
                velocity.clone()
            };
            state.velocity = Some(velocity);
        }
        (tensor - grad.mul_scalar(lr), Some(state))
    }
}

/// The update of one contiguous run of weights, Burn's expressions element by element.
pub(crate) mod kernel {
    use super::Sgd;
    use afan_models::simd::Isa;
    use rayon::prelude::*;

    /// Elements per rayon task: large enough to amortise the task, small enough to split the
    /// largest convolution weights between two cores.
    const CHUNK: usize = 1 << 15;

    /// The scalars of one update, converted to `f32` as flex's scalar ops convert them.
    #[derive(Clone, Copy)]
    struct Scalars {
        lr: f32,
        decay: f32,
        momentum: f32,
        keep: f32,
    }

    /// The gradient with weight decay (`DECAY`), and the weight after a step along `v` (with
    /// Nesterov's look-ahead when `NESTEROV`). The branches are constants, so each loop below is
    /// branch-free and vectorises; Rust does not contract `a * b + c` into an FMA, so every result
    /// keeps Burn's rounding.
    impl Scalars {
        #[inline(always)]
        fn decayed<const DECAY: bool>(self, p: f32, g: f32) -> f32 {
            if DECAY { p * self.decay + g } else { g }
        }

        #[inline(always)]
        fn stepped<const NESTEROV: bool>(self, p: f32, d: f32, v: f32) -> f32 {
            let s = if NESTEROV { v * self.momentum + d } else { v };
            p - s * self.lr
        }
    }

    /// Without momentum.
    #[inline(always)]
    fn plain<const DECAY: bool>(s: Scalars, p: &mut [f32], g: &[f32]) {
        for (p, &g) in p.iter_mut().zip(g) {
            *p -= s.decayed::<DECAY>(*p, g) * s.lr;
        }
    }

    /// The first step with momentum: the velocity is the decayed gradient, written over `g`.
    #[inline(always)]
    fn first<const DECAY: bool, const NESTEROV: bool>(s: Scalars, p: &mut [f32], g: &mut [f32]) {
        for (p, g) in p.iter_mut().zip(g) {
            let d = s.decayed::<DECAY>(*p, *g);
            *g = d;
            *p = s.stepped::<NESTEROV>(*p, d, d);
        }
    }

    /// A later step with momentum: `v` is the previous velocity, updated in place.
    #[inline(always)]
    fn later<const DECAY: bool, const NESTEROV: bool>(
        s: Scalars,
        p: &mut [f32],
        g: &[f32],
        v: &mut [f32],
    ) {
        for ((p, &g), v) in p.iter_mut().zip(g).zip(v) {
            let d = s.decayed::<DECAY>(*p, g);
            *v = d * s.keep + *v * s.momentum;
            *p = s.stepped::<NESTEROV>(*p, d, *v);
        }
    }

    /// [`update`] with its branches fixed, each chunk's loop compiled for `isa` (the loops are
    /// `#[inline(always)]` into the closures that [`Isa::run`] calls under its target features).
    fn run<const DECAY: bool, const NESTEROV: bool>(
        isa: Isa,
        s: Scalars,
        momentum: bool,
        weights: &mut [f32],
        grad: &mut [f32],
        velocity: Option<&mut [f32]>,
    ) {
        let chunks = weights
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks_mut(CHUNK));
        match (momentum, velocity) {
            (false, _) => chunks.for_each(|(p, g)| {
                isa.run(
                    #[inline(always)]
                    || plain::<DECAY>(s, p, g),
                )
            }),
            (true, None) => chunks.for_each(|(p, g)| {
                isa.run(
                    #[inline(always)]
                    || first::<DECAY, NESTEROV>(s, p, g),
                )
            }),
            (true, Some(v)) => chunks.zip(v.par_chunks_mut(CHUNK)).for_each(|((p, g), v)| {
                isa.run(
                    #[inline(always)]
                    || later::<DECAY, NESTEROV>(s, p, g, v),
                )
            }),
        }
    }

    /// Updates `weights` in place from `grad`; with momentum, `velocity` is the buffer of the
    /// previous step (updated in place), or `None` on the first step, when the velocity becomes
    /// the decayed gradient, written over `grad` (which is then the new buffer).
    pub(crate) fn update(
        sgd: &Sgd,
        lr: f64,
        weights: &mut [f32],
        grad: &mut [f32],
        velocity: Option<&mut [f32]>,
    ) {
        update_on(Isa::detect(), sgd, lr, weights, grad, velocity);
    }

    /// [`update`] with its loops compiled for `isa` (the tests run every one the CPU has).
    pub(crate) fn update_on(
        isa: Isa,
        sgd: &Sgd,
        lr: f64,
        weights: &mut [f32],
        grad: &mut [f32],
        velocity: Option<&mut [f32]>,
    ) {
        assert_eq!(
            weights.len(),
            grad.len(),
            "a weight and its gradient differ in size"
        );
        if let Some(v) = &velocity {
            assert_eq!(
                v.len(),
                grad.len(),
                "a velocity and its gradient differ in size"
            );
        }
        let s = Scalars {
            lr: lr as f32,
            decay: sgd.weight_decay.unwrap_or(0.0),
            momentum: sgd.momentum.map_or(0.0, |m| m.momentum),
            keep: sgd.momentum.map_or(1.0, |m| (1.0 - m.dampening) as f32),
        };
        let momentum = sgd.momentum.is_some();
        let nesterov = sgd.momentum.is_some_and(|m| m.nesterov);
        match (sgd.weight_decay.is_some(), nesterov) {
            (false, false) => run::<false, false>(isa, s, momentum, weights, grad, velocity),
            (false, true) => run::<false, true>(isa, s, momentum, weights, grad, velocity),
            (true, false) => run::<true, false>(isa, s, momentum, weights, grad, velocity),
            (true, true) => run::<true, true>(isa, s, momentum, weights, grad, velocity),
        }
    }
}

#[cfg(feature = "flex")]
mod flex {
    use super::{Sgd, SgdState, kernel};
    use burn::backend::flex::FlexTensor;
    use burn::backend::{
        BackendTensor, DispatchAutodiffContext, DispatchDevice, DispatchTensor, DispatchTensorKind,
        TensorMetadata,
    };
    use burn::tensor::{DType, Tensor};

    type Stepped<const D: usize> = (Tensor<D>, Option<SgdState<D>>);

    /// Whether `t` is an `f32` tensor on flex.
    fn is_flex_f32<const D: usize>(t: &Tensor<D>) -> bool {
        t.dtype() == DType::F32
            && matches!(t.device().inner().as_dispatch(), DispatchDevice::Flex(_))
    }

    /// The flex primitive of `t` (checked by [`is_flex_f32`]), contiguous from offset 0, and the
    /// dispatch context to wrap a result in.
    fn into_flex<const D: usize>(t: Tensor<D>) -> (FlexTensor, DispatchAutodiffContext) {
        let d = t.into_dispatch();
        match d.kind {
            DispatchTensorKind::Flex(BackendTensor::Float(f)) => {
                let f = match f.layout().contiguous_offsets() {
                    Some((0, _)) => f,
                    _ => f.to_contiguous(),
                };
                (f, d.autodiff)
            }
            _ => unreachable!("is_flex_f32 checked the device"),
        }
    }

    fn from_flex<const D: usize>(f: FlexTensor, autodiff: DispatchAutodiffContext) -> Tensor<D> {
        Tensor::from_dispatch(DispatchTensor {
            kind: DispatchTensorKind::Flex(BackendTensor::Float(f)),
            autodiff,
        })
    }

    /// The first `numel` elements of `t`'s storage, copied first if another tensor shares it.
    fn values(t: &mut FlexTensor) -> &mut [f32] {
        let n = t.shape().num_elements();
        &mut t.storage_mut::<f32>()[..n]
    }

    /// Whether [`step`] takes these: `f32` flex tensors of one size.
    pub(super) fn applies<const D: usize>(
        tensor: &Tensor<D>,
        grad: &Tensor<D>,
        velocity: Option<&Tensor<D>>,
    ) -> bool {
        let n = tensor.shape().num_elements();
        let fits = |t: &Tensor<D>| is_flex_f32(t) && t.shape().num_elements() == n;
        fits(tensor) && fits(grad) && velocity.is_none_or(fits)
    }

    /// One step of `sgd` on flex tensors that [`applies`] accepts.
    pub(super) fn step<const D: usize>(
        sgd: &Sgd,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        velocity: Option<Tensor<D>>,
    ) -> Stepped<D> {
        let (mut p, ctx) = into_flex(tensor);
        let (mut g, grad_ctx) = into_flex(grad);
        let velocity = match velocity {
            Some(v) => {
                let (mut v, v_ctx) = into_flex(v);
                kernel::update(
                    sgd,
                    lr,
                    values(&mut p),
                    values(&mut g),
                    Some(values(&mut v)),
                );
                sgd.momentum.map(|_| from_flex(v, v_ctx))
            }
            None => {
                kernel::update(sgd, lr, values(&mut p), values(&mut g), None);
                // On the first step the gradient's buffer now holds the velocity.
                sgd.momentum.map(|_| from_flex(g, grad_ctx))
            }
        };
        (from_flex(p, ctx), Some(SgdState { velocity }))
    }
}

#[cfg(test)]
#[path = "sgd_tests.rs"]
mod tests;
