//! Batch norm (+ residual add) (+ activation) composed from Burn's ops: what every backend other
//! than `flex` and every dtype other than `f32` (wgpu, cuda, mixed precision) runs. Same semantics
//! as the fused kernels; its backward pass is whatever the backend's autodiff derives for each op.

use super::kernel::Activation;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::module::{batch_norm, batch_norm_train};

/// With the batch's statistics: the output, the batch mean and the biased batch variance.
pub(super) fn train(
    x: Tensor<4>,
    [gamma, beta]: [Tensor<1>; 2],
    residual: Option<Tensor<4>>,
    epsilon: f64,
    activation: Activation,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    let out = batch_norm_train(x, gamma, beta, epsilon);
    let y = finish(out.output, residual, activation);
    (y, out.mean, out.variance)
}

/// With given (running) statistics.
pub(super) fn eval(
    x: Tensor<4>,
    [gamma, beta, mean, var]: [Tensor<1>; 4],
    residual: Option<Tensor<4>>,
    epsilon: f64,
    activation: Activation,
) -> Tensor<4> {
    finish(
        batch_norm(x, gamma, beta, mean, var, epsilon),
        residual,
        activation,
    )
}

fn finish(y: Tensor<4>, residual: Option<Tensor<4>>, activation: Activation) -> Tensor<4> {
    let y = match residual {
        Some(r) => y + r,
        None => y,
    };
    match activation {
        Activation::None => y,
        Activation::Relu => relu(y),
        Activation::Relu6 => relu6(y),
    }
}

/// ReLU6 with the fused kernel's (PyTorch's) gradient: Burn's `clamp(0, 6)` is two `mask_fill`s
/// on `y < 0` and `y > 6`, which pass the gradient at exactly 0 and 6; filling on `y <= 0` and
/// `y >= 6` gives the same values (up to the sign of a zero) and zero gradient at both bounds.
/// NaN fails both comparisons: kept, with its gradient, as in the kernel.
fn relu6(y: Tensor<4>) -> Tensor<4> {
    let low = y.clone().lower_equal_elem(0.0);
    let high = y.clone().greater_equal_elem(6.0);
    y.mask_fill(low, 0.0).mask_fill(high, 6.0)
}
