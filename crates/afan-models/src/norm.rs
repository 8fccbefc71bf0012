//! Batch normalization with PyTorch's running-statistics rule.
//!
//! Burn's `BatchNorm` folds the *biased* batch variance into its running variance; PyTorch — and so
//! every checkpoint and published number this project compares with — folds the *unbiased* one.
//! The difference is a factor n/(n-1) per step, which matters for small batches and for the
//! evaluation accuracy of short runs, so the layer is re-done here with PyTorch's rule. The
//! normalization itself uses Burn's fused `batch_norm_train` op, whose backward is one operation.

use burn::config::Config;
use burn::module::{Flag, Module, Param, RunningState};
use burn::tensor::Tensor;
use burn::tensor::module::{batch_norm, batch_norm_train};

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
        if x.device().is_autodiff() && self.training.is_enabled() {
            self.forward_train(x)
        } else {
            let device = x.device();
            batch_norm(
                x,
                self.weight.val(),
                self.bias.val(),
                self.running_mean.value().to_device(&device),
                self.running_var.value().to_device(&device),
                self.epsilon,
            )
        }
    }

    fn forward_train(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, _, h, w] = x.dims();
        let n = (b * h * w) as f64;
        let device = x.device();
        let out = batch_norm_train(x, self.weight.val(), self.bias.val(), self.epsilon);
        let unbiased = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
        let m = self.momentum;
        let mean = self.running_mean.value_sync().to_device(&device);
        let var = self.running_var.value_sync().to_device(&device);
        let mean = mean.mul_scalar(1.0 - m) + out.mean.detach().mul_scalar(m);
        let var = var.mul_scalar(1.0 - m) + out.variance.detach().mul_scalar(m * unbiased);
        self.running_mean.update(mean.detach());
        self.running_var.update(var.detach());
        out.output
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData, Tolerance};

    fn input(device: &Device) -> Tensor<4> {
        // Channel 0 takes the values 1, 2, 3, 6 (mean 3, biased var 3.5, unbiased 14/3);
        // channel 1 is constant 5.
        Tensor::from_data(
            TensorData::new(
                vec![1.0f32, 2.0, 5.0, 5.0, 3.0, 6.0, 5.0, 5.0],
                [2, 2, 1, 2],
            ),
            device,
        )
    }

    #[test]
    fn running_variance_uses_the_unbiased_estimate_like_pytorch() {
        let dev = Device::flex().autodiff();
        let bn = BatchNorm2dConfig::new(2).init(&dev);
        let out = bn.forward(input(&dev));
        let mean = bn.running_mean.value_sync().into_data();
        let var = bn.running_var.value_sync().into_data();
        mean.assert_approx_eq::<f32>(&TensorData::from([0.3f32, 0.5]), Tolerance::default());
        // 0.9 * 1 + 0.1 * 14/3 and 0.9 * 1 + 0.1 * 0.
        var.assert_approx_eq::<f32>(
            &TensorData::from([0.9 + 0.1 * 14.0 / 3.0, 0.9f32]),
            Tolerance::default(),
        );
        // The output normalizes with the biased variance, as PyTorch does.
        let s = (3.5f64 + 1e-5).sqrt();
        let e = |v: f64| ((v - 3.0) / s) as f32;
        out.into_data().assert_approx_eq::<f32>(
            &TensorData::new(
                vec![e(1.0), e(2.0), 0.0, 0.0, e(3.0), e(6.0), 0.0, 0.0],
                [2, 2, 1, 2],
            ),
            Tolerance::rel_abs(1e-4, 1e-4),
        );
    }

    #[test]
    fn frozen_layer_uses_and_keeps_running_statistics() {
        let dev = Device::flex().autodiff();
        let bn = BatchNorm2dConfig::new(2).init(&dev).freeze();
        let out = bn.forward(input(&dev));
        // Running mean 0, var 1: the output is x / sqrt(1 + eps).
        let expected: Vec<f32> = [1.0f32, 2.0, 5.0, 5.0, 3.0, 6.0, 5.0, 5.0]
            .iter()
            .map(|v| v / (1.0f32 + 1e-5).sqrt())
            .collect();
        out.into_data().assert_approx_eq::<f32>(
            &TensorData::new(expected, [2, 2, 1, 2]),
            Tolerance::default(),
        );
        bn.running_mean
            .value_sync()
            .into_data()
            .assert_approx_eq::<f32>(&TensorData::from([0.0f32, 0.0]), Tolerance::default());
    }

    #[test]
    fn input_gradient_includes_the_batch_statistics() {
        // d/dx of sum(r * bn(x)) against the same normalization written with plain ops, whose
        // gradient autodiff derives through the mean and variance.
        let dev = Device::flex().autodiff();
        let x = Tensor::<4>::from_data(
            TensorData::new(
                (0..24)
                    .map(|i| ((i * 7 % 11) as f32) * 0.3 - 1.0)
                    .collect::<Vec<_>>(),
                [3, 2, 2, 2],
            ),
            &dev,
        );
        let r = Tensor::<4>::from_data(
            TensorData::new(
                (0..24)
                    .map(|i| ((i * 5 % 13) as f32) * 0.1 - 0.6)
                    .collect::<Vec<_>>(),
                [3, 2, 2, 2],
            ),
            &dev,
        );
        let bn = BatchNorm2dConfig::new(2).init(&dev);
        let x1 = x.clone().require_grad();
        let g1 = (bn.forward(x1.clone()) * r.clone()).sum().backward();
        let g1 = x1.grad(&g1).unwrap().into_data();
        let x2 = x.require_grad();
        let mean = x2.clone().mean_dim(0).mean_dim(2).mean_dim(3);
        let c = x2.clone() - mean;
        let var = c.clone().powi_scalar(2).mean_dim(0).mean_dim(2).mean_dim(3);
        let y = c / (var + 1e-5).sqrt();
        let g2 = (y * r).sum().backward();
        let g2 = x2.grad(&g2).unwrap().into_data();
        g1.assert_approx_eq::<f32>(&g2, Tolerance::rel_abs(1e-4, 1e-5));
    }
}
