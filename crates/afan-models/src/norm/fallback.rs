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
        Activation::Relu6 => crate::relu6::relu6_composed(y),
    }
}
