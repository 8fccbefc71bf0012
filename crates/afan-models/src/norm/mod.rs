//! Batch normalization with PyTorch's running-statistics rule, optionally followed by a residual
//! add and a ReLU or ReLU6 in the same operation.
//!
//! Burn's `BatchNorm` folds the *biased* batch variance into its running variance; PyTorch — and so
//! every checkpoint and published number this project compares with — folds the *unbiased* one.
//! The difference is a factor n/(n-1) per step, which matters for small batches and for the
//! evaluation accuracy of short runs, so the layer is re-done here with PyTorch's rule.
//!
//! On the `flex` CPU backend with `f32` data the normalisation, the residual add and the ReLU of a
//! ResNet block run as one kernel with one backward pass ([`kernel`], [`backward`], wired in by
//! `ext` and `autodiff`): composed from Burn's ops they and their memory traffic were a large
//! share of a ResNet-20 training step. MobileNetV2's ReLU6 runs in the same kernel
//! ([`BatchNorm2d::forward_relu6`]; benchmarks turn that off with `AFAN_NORM_RELU6=0`, see
//! `fuse_relu6`). Every other backend and dtype runs the same computation from Burn's ops
//! (`fallback`).

#[cfg(feature = "flex")]
mod autodiff;
pub mod backward;
#[cfg(feature = "flex")]
mod ext;
mod fallback;
#[cfg(all(test, feature = "flex"))]
mod fused_tests;
#[cfg(test)]
mod isa_tests;
pub mod kernel;
#[cfg(test)]
#[rustfmt::skip]
mod reference;
#[cfg(all(test, feature = "flex"))]
mod relu6_tests;
mod running;
#[cfg(test)]
mod tests;

pub use kernel::Activation;
pub use running::{
    DeferredRunningStats, RunningUpdates, defer_running_updates, record_running_updates,
};

use running::RunningUpdate;

use burn::config::Config;
use burn::module::{Flag, Module, Param, RunningState};
use burn::tensor::{DType, Tensor};

/// Configuration of [`BatchNorm2d`], with PyTorch's defaults.
#[derive(Config, Debug)]
pub struct BatchNorm2dConfig {
    /// Number of channels.
    pub num_features: usize,
    /// Variance floor (PyTorch: 1e-5).
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// Weight of the new batch in the running statistics (PyTorch: 0.1).
    #[config(default = 0.1)]
    pub momentum: f64,
}

/// 2-D batch normalization; running variance updated with the unbiased batch variance.
#[derive(Module, Debug)]
pub struct BatchNorm2d {
    /// Scale.
    pub weight: Param<Tensor<1>>,
    /// Shift.
    pub bias: Param<Tensor<1>>,
    /// Running mean.
    pub running_mean: RunningState<Tensor<1>>,
    /// Running (unbiased) variance.
    pub running_var: RunningState<Tensor<1>>,
    /// Train mode: batch statistics, running statistics updated. Off (after `freeze`/`valid`):
    /// running statistics.
    pub training: Param<Flag>,
    /// Momentum of the running statistics.
    pub momentum: f64,
    /// Variance floor.
    pub epsilon: f64,
}

impl BatchNorm2dConfig {
    /// A layer with weight 1, bias 0, running mean 0 and running variance 1 (PyTorch's init).
    pub fn init(&self, device: &burn::tensor::Device) -> BatchNorm2d {
        let n = self.num_features;
        BatchNorm2d {
            weight: Param::from_tensor(Tensor::ones([n], device)),
            bias: Param::from_tensor(Tensor::zeros([n], device)),
            running_mean: RunningState::new(Tensor::zeros([n], device)),
            running_var: RunningState::new(Tensor::ones([n], device)),
            training: Param::from_bool(true),
            momentum: self.momentum,
            epsilon: self.epsilon,
        }
    }
}

impl BatchNorm2d {
    /// Normalizes `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.run(x, None, Activation::None)
    }

    /// `relu(self.forward(x))`, as one operation where the fused kernels run.
    pub fn forward_relu(&self, x: Tensor<4>) -> Tensor<4> {
        self.run(x, None, Activation::Relu)
    }

    /// `relu6(self.forward(x))` (MobileNetV2's `Conv2dNormActivation`), as one operation where the
    /// fused kernels run; ReLU6's gradient is PyTorch's (zero at 0 and 6, see [`crate::relu6`])
    /// on every device (Burn's `clamp`, which other devices ran before, passes it at both).
    pub fn forward_relu6(&self, x: Tensor<4>) -> Tensor<4> {
        if fuse_relu6() {
            self.run(x, None, Activation::Relu6)
        } else {
            crate::relu6::relu6(self.forward(x))
        }
    }

    /// `relu(self.forward(x) + residual)` (the end of a ResNet block), as one operation where the
    /// fused kernels run.
    pub fn forward_add_relu(&self, x: Tensor<4>, residual: Tensor<4>) -> Tensor<4> {
        self.run(x, Some(residual), Activation::Relu)
    }

    /// In train mode on an autodiff device: batch statistics, running statistics updated (as
    /// before the kernels existed, a non-autodiff device always normalizes with the running ones).
    fn run(&self, x: Tensor<4>, residual: Option<Tensor<4>>, activation: Activation) -> Tensor<4> {
        let device = x.device();
        let (gamma, beta) = (self.weight.val(), self.bias.val());
        let fused = fusable(&x, residual.as_ref(), [&gamma, &beta]);
        if device.is_autodiff() && self.training.is_enabled() {
            let [b, _, h, w] = x.dims();
            let (out, mean, var) = if fused {
                fused::train(x, [gamma, beta], residual, self.epsilon, activation)
            } else {
                fallback::train(x, [gamma, beta], residual, self.epsilon, activation)
            };
            self.update_running(mean, var, b * h * w);
            out
        } else {
            let mean = self.running_mean.value().to_device(&device);
            let var = self.running_var.value().to_device(&device);
            let params = [gamma, beta, mean, var];
            if fused {
                fused::eval(x, params, residual, self.epsilon, activation)
            } else {
                fallback::eval(x, params, residual, self.epsilon, activation)
            }
        }
    }

    /// PyTorch's rule (see `RunningUpdate::apply`); recorded if a
    /// [`record_running_updates`] is active on this thread.
    fn update_running(&self, mean: Tensor<1>, var: Tensor<1>, n: usize) {
        let update = RunningUpdate {
            running_mean: self.running_mean.clone(),
            running_var: self.running_var.clone(),
            momentum: self.momentum,
            mean: mean.detach(),
            var: var.detach(),
            n,
        };
        update.apply();
        running::record(update);
    }
}

/// Whether [`BatchNorm2d::forward_relu6`] runs ReLU6 inside the normalisation (default) rather
/// than as its own pass after it (`AFAN_NORM_RELU6=0`, the path before: benchmarks time both in
/// one binary). Also off while the ReLU6 benchmark switch sends ReLU6 to Burn's `clamp`
/// (`AFAN_BENCH_RELU6=burn`), which then still times Burn's ReLU6.
fn fuse_relu6() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| crate::flex::env_switch("AFAN_NORM_RELU6", true))
        && !crate::relu6::burn_on_flex()
}

/// Whether afan's kernels take a call: `flex`, and `f32` everywhere.
fn fusable(x: &Tensor<4>, residual: Option<&Tensor<4>>, params: [&Tensor<1>; 2]) -> bool {
    crate::flex::is_flex(&x.device())
        && x.dtype() == DType::F32
        && residual.is_none_or(|r| r.dtype() == DType::F32)
        && params.iter().all(|p| p.dtype() == DType::F32)
}

/// The fused kernels through the backend extension (only reached on `flex`).
#[cfg(feature = "flex")]
mod fused {
    use super::Activation;
    use super::ext::FusedNorm;
    use burn::backend::Dispatch;
    use burn::tensor::Tensor;

    pub(super) fn train(
        x: Tensor<4>,
        [gamma, beta]: [Tensor<1>; 2],
        residual: Option<Tensor<4>>,
        epsilon: f64,
        activation: Activation,
    ) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
        let (x, gamma, beta) = (
            x.into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
        );
        let (out, mean, var) = match residual {
            Some(r) => Dispatch::afan_norm_train_add(
                x,
                gamma,
                beta,
                r.into_dispatch(),
                epsilon,
                activation,
            ),
            None => Dispatch::afan_norm_train(x, gamma, beta, epsilon, activation),
        };
        (
            Tensor::from_dispatch(out),
            Tensor::from_dispatch(mean),
            Tensor::from_dispatch(var),
        )
    }

    pub(super) fn eval(
        x: Tensor<4>,
        [gamma, beta, mean, var]: [Tensor<1>; 4],
        residual: Option<Tensor<4>>,
        epsilon: f64,
        activation: Activation,
    ) -> Tensor<4> {
        let x = x.into_dispatch();
        let [gamma, beta, mean, var] = [gamma, beta, mean, var].map(Tensor::into_dispatch);
        Tensor::from_dispatch(match residual {
            Some(r) => {
                let r = r.into_dispatch();
                Dispatch::afan_norm_eval_add(x, gamma, beta, mean, var, r, epsilon, activation)
            }
            None => Dispatch::afan_norm_eval(x, gamma, beta, mean, var, epsilon, activation),
        })
    }
}

/// Without the `flex` feature nothing is fused ([`fusable`] is false).
#[cfg(not(feature = "flex"))]
mod fused {
    pub(super) use super::fallback::{eval, train};
}
