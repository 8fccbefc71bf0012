//! Mixed-precision training (`precision = "f16" | "bf16"`) for any task: f32 master weights, the
//! forward and backward passes in half precision, f32 gradients for the optimizer.
//!
//! Per step the master model is cast to the half type *inside the autodiff graph* (a cast of
//! each parameter), so `backward` lands the gradients, cast back, on the f32 master parameters:
//! no second copy of the weights is kept and no gradient is converted by hand. The task casts
//! its float inputs (`StepContext::dtype`); the loss is taken in f32. f16 (5 exponent bits) needs
//! loss scaling against gradient underflow: the dynamic scheme of PyTorch's `GradScaler` with
//! its defaults (scale 2^16, halved and the step skipped when a gradient is inf/NaN, doubled
//! after 2000 good steps). bf16 has f32's exponent range and runs unscaled.
//!
//! Batch-norm running statistics: the half copy shares their storage with the master (Burn's
//! `RunningState`), so they are updated in half precision and converted back to f32 after each
//! step; PyTorch's autocast keeps them in f32 throughout. The attack passes of A-FAN and pixel
//! PGD run in half precision unscaled: they use only the sign of the gradient.

use crate::error::{Result, TrainError};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

/// The arithmetic of the training passes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32 (the release).
    #[default]
    F32,
    /// IEEE half precision with dynamic loss scaling.
    F16,
    /// bfloat16, unscaled.
    Bf16,
}

impl Precision {
    /// The half type of the passes; `None` for f32.
    pub fn half(self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::F16 => Some(FloatDType::F16),
            Precision::Bf16 => Some(FloatDType::BF16),
        }
    }
}

/// Dynamic loss scaling with `torch.cuda.amp.GradScaler`'s defaults; a no-op scale of 1 for
/// bf16 and f32. Saved in checkpoints, so a resumed f16 run continues with its scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    /// The factor the loss is multiplied by before `backward`.
    pub scale: f64,
    good_steps: usize,
    growth_interval: usize,
    dynamic: bool,
}

impl LossScaler {
    /// The scaler for `precision`.
    pub fn new(precision: Precision) -> Self {
        let dynamic = precision == Precision::F16;
        Self {
            scale: if dynamic { 65536.0 } else { 1.0 },
            good_steps: 0,
            growth_interval: 2000,
            dynamic,
        }
    }

    /// Whether gradients must be unscaled and checked.
    pub fn is_dynamic(&self) -> bool {
        self.dynamic
    }

    /// Records whether this step's gradients were finite; returns whether to apply them.
    pub fn update(&mut self, finite: bool) -> bool {
        if !self.dynamic {
            return true;
        }
        if finite {
            self.good_steps += 1;
            if self.good_steps == self.growth_interval {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
            true
        } else {
            self.scale *= 0.5;
            self.good_steps = 0;
            false
        }
    }
}

/// Refuses a precision the backend cannot compute (one convolution and one matmul in it), with
/// one error naming the device instead of a panic deep in a kernel.
pub fn check_support(device: &Device, precision: Precision) -> Result<()> {
    let Some(dtype) = precision.half() else {
        return Ok(());
    };
    let probe = || {
        let x = Tensor::<4>::ones([1, 2, 3, 3], device).cast(dtype);
        let w = Tensor::<4>::ones([2, 2, 1, 1], device).cast(dtype);
        let options = burn::tensor::ops::ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
        let y = burn::tensor::module::conv2d(x, w, None, options);
        let m = Tensor::<2>::ones([2, 2], device).cast(dtype);
        let z = m.clone().matmul(m).sum() + y.sum();
        z.cast(FloatDType::F32).into_scalar::<f32>()
    };
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(probe));
    std::panic::set_hook(hook);
    match result {
        // 3x3 positions x 2 channels x 2 + 4 x 2 = 44.
        Ok(v) if (v - 44.0).abs() < 0.5 => Ok(()),
        Ok(v) => Err(TrainError::Config(format!(
            "precision {precision:?}: device {device:?} computed a wrong probe ({v} for 44); use precision = \"f32\""
        ))),
        Err(_) => Err(TrainError::Config(format!(
            "precision {precision:?} is not supported by device {device:?} (a {dtype:?} convolution failed); use precision = \"f32\" or another --device"
        ))),
    }
}

/// Casts every float tensor of a module: parameters through the graph, running statistics in
/// their (shared) storage.
pub(crate) fn cast_module<M: Module>(model: M, dtype: FloatDType) -> M {
    model.map(&mut CastTo(dtype))
}

struct CastTo(FloatDType);

impl ModuleMapper for CastTo {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.cast(self.0), mapper)
    }
}

/// Divides each gradient of `model`'s parameters by the loss scale; returns the gradients and
/// whether all of them are finite.
pub(crate) fn unscale<M: Module>(
    model: &M,
    grads: GradientsParams,
    factor: f64,
) -> (GradientsParams, bool) {
    let mut u = Unscale {
        grads,
        factor,
        total: None,
    };
    model.visit(&mut u);
    let finite = u.total.is_none_or(|t| t.into_scalar::<f64>().is_finite());
    (u.grads, finite)
}

/// Divides each gradient by the loss scale and sums their magnitudes (inf/NaN if any is).
struct Unscale {
    grads: GradientsParams,
    factor: f64,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for Unscale {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(g) = self.grads.remove::<D>(param.id) else {
            return;
        };
        let g = g.mul_scalar(self.factor);
        let size = g.clone().abs().sum();
        self.total = Some(match self.total.take() {
            Some(t) => t + size,
            None => size,
        });
        self.grads.register(param.id, g);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_scale_halves_on_overflow_and_grows_after_2000_good_steps() {
        let mut s = LossScaler::new(Precision::F16);
        assert_eq!(s.scale, 65536.0);
        assert!(!s.update(false));
        assert_eq!(s.scale, 32768.0);
        for _ in 0..1999 {
            assert!(s.update(true));
        }
        assert_eq!(s.scale, 32768.0);
        assert!(s.update(true));
        assert_eq!(s.scale, 65536.0);
        let mut b = LossScaler::new(Precision::Bf16);
        assert!(b.update(false), "bf16 is unscaled: nothing to skip");
        assert_eq!(b.scale, 1.0);
    }

    #[test]
    fn the_test_device_passes_the_support_probe_or_refuses_clearly() {
        let device = afan_core::device::test_device();
        check_support(&device, Precision::F32).unwrap();
        for p in [Precision::F16, Precision::Bf16] {
            match check_support(&device, p) {
                Ok(()) => {}
                // The CPU backend implements both; a GPU may lack one and must say so by name.
                Err(e) if !afan_core::device::testing_on_cpu() => {
                    let e = e.to_string();
                    assert!(e.contains(&format!("{p:?}")) && e.contains("f32"), "{e}");
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
}
