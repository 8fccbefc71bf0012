//! The layer against hand-derived values and against PyTorch (`reference.rs`, written by
//! `xtask/reference/batch_norm.py`): train and eval mode, plain, ReLU and residual + ReLU forms,
//! forward, all four gradients and the running statistics.

use super::reference as pt;
use super::*;
use burn::module::{Param, RunningState};
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
fn a_replayed_update_moves_the_statistics_as_another_pass_would() {
    let dev = Device::flex().autodiff();
    let twice = BatchNorm2dConfig::new(2).init(&dev);
    twice.forward(input(&dev));
    twice.forward(input(&dev));
    let replayed = BatchNorm2dConfig::new(2).init(&dev);
    let (_, updates) = record_running_updates(|| replayed.forward(input(&dev)));
    assert_eq!(updates.len(), 1);
    // Hand-derived: the channel-0 mean moves 0 -> 0.3 -> 0.9 * 0.3 + 0.1 * 3 = 0.57.
    let mean = |bn: &BatchNorm2d| bn.running_mean.value_sync().into_data();
    mean(&replayed).assert_approx_eq::<f32>(&TensorData::from([0.3f32, 0.5]), Tolerance::default());
    updates.replay();
    mean(&replayed)
        .assert_approx_eq::<f32>(&TensorData::from([0.57f32, 0.95]), Tolerance::default());
    assert_eq!(mean(&replayed), mean(&twice), "bit for bit");
    let var = |bn: &BatchNorm2d| bn.running_var.value_sync().into_data();
    assert_eq!(var(&replayed), var(&twice));
    // A nested recording keeps its updates from the outer one; none is active afterwards.
    let (inner, outer) = record_running_updates(|| {
        let (_, inner) = record_running_updates(|| replayed.forward(input(&dev)));
        replayed.forward(input(&dev));
        inner
    });
    assert_eq!((inner.len(), outer.len()), (1, 1));
    let (_, none) = record_running_updates(|| ());
    assert!(none.is_empty());
}

/// Two passes on two threads (a step on one rayon worker, the next on another) move the running
/// statistics as two passes on one thread do, and a third thread reads the result with `value()`.
/// Burn's `RunningState` alone kept the first pass's value pending under its thread: the second
/// thread started from the initial value and the two were averaged (mean 0.3 -> 0.3, not 0.57).
#[test]
fn passes_on_different_threads_chain_their_running_statistics() {
    let dev = Device::flex().autodiff();
    let one = BatchNorm2dConfig::new(2).init(&dev);
    one.forward(input(&dev));
    one.forward(input(&dev));
    let two = BatchNorm2dConfig::new(2).init(&dev);
    for _ in 0..2 {
        std::thread::scope(|s| {
            s.spawn(|| two.forward(input(&dev)));
        });
    }
    let read = |bn: &BatchNorm2d| {
        std::thread::scope(|s| {
            s.spawn(|| {
                let mean = bn.running_mean.value().into_data();
                let var = bn.running_var.value().into_data();
                (mean, var)
            })
            .join()
            .unwrap()
        })
    };
    // Hand-derived as above: channel 0's mean 0 -> 0.3 -> 0.57, channel 1's 0 -> 0.5 -> 0.95.
    read(&two)
        .0
        .assert_approx_eq::<f32>(&TensorData::from([0.57f32, 0.95]), Tolerance::default());
    assert_eq!(read(&two), read(&one), "bit for bit");
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

/// Which of the layer's entry points a case calls.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Form {
    Plain,
    Relu,
    AddRelu,
}

fn tensor<const D: usize>(values: &[f32], shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

/// The reference's layer: its gamma, beta and running statistics, in train or eval mode.
fn reference_layer(device: &Device, train: bool) -> BatchNorm2d {
    let c = pt::SHAPE[1];
    let mut bn = BatchNorm2dConfig::new(c).init(device);
    bn.weight = Param::from_tensor(tensor(&pt::GAMMA, [c], device));
    bn.bias = Param::from_tensor(tensor(&pt::BETA, [c], device));
    bn.running_mean = RunningState::new(tensor(&pt::RM, [c], device));
    bn.running_var = RunningState::new(tensor(&pt::RV, [c], device));
    bn.training = Param::from_bool(train);
    bn
}

/// The output and the gradients of `x`, gamma, beta and the residual under `sum(out * dy)`.
fn run(bn: &BatchNorm2d, form: Form, device: &Device) -> [Option<TensorData>; 5] {
    let x = tensor(&pt::X, pt::SHAPE, device).require_grad();
    let r = tensor(&pt::R, pt::SHAPE, device).require_grad();
    let out = match form {
        Form::Plain => bn.forward(x.clone()),
        Form::Relu => bn.forward_relu(x.clone()),
        Form::AddRelu => bn.forward_add_relu(x.clone(), r.clone()),
    };
    let grads = (out.clone() * tensor(&pt::DY, pt::SHAPE, device))
        .sum()
        .backward();
    [
        Some(out.into_data()),
        x.grad(&grads).map(Tensor::into_data),
        bn.weight.val().grad(&grads).map(Tensor::into_data),
        bn.bias.val().grad(&grads).map(Tensor::into_data),
        r.grad(&grads).map(Tensor::into_data),
    ]
}

#[test]
fn forward_and_gradients_match_pytorch() {
    let dev = Device::flex().autodiff();
    let cases: [(&str, bool, Form, [&[f32]; 5]); 5] = [
        (
            "train_add_relu",
            true,
            Form::AddRelu,
            [
                &pt::TRAIN_ADD_RELU_OUT,
                &pt::TRAIN_ADD_RELU_DX,
                &pt::TRAIN_ADD_RELU_DGAMMA,
                &pt::TRAIN_ADD_RELU_DBETA,
                &pt::TRAIN_ADD_RELU_DR,
            ],
        ),
        (
            "train_relu",
            true,
            Form::Relu,
            [
                &pt::TRAIN_RELU_OUT,
                &pt::TRAIN_RELU_DX,
                &pt::TRAIN_RELU_DGAMMA,
                &pt::TRAIN_RELU_DBETA,
                &[],
            ],
        ),
        (
            "train",
            true,
            Form::Plain,
            [
                &pt::TRAIN_OUT,
                &pt::TRAIN_DX,
                &pt::TRAIN_DGAMMA,
                &pt::TRAIN_DBETA,
                &[],
            ],
        ),
        (
            "eval_add_relu",
            false,
            Form::AddRelu,
            [
                &pt::EVAL_ADD_RELU_OUT,
                &pt::EVAL_ADD_RELU_DX,
                &pt::EVAL_ADD_RELU_DGAMMA,
                &pt::EVAL_ADD_RELU_DBETA,
                &pt::EVAL_ADD_RELU_DR,
            ],
        ),
        (
            "eval",
            false,
            Form::Plain,
            [
                &pt::EVAL_OUT,
                &pt::EVAL_DX,
                &pt::EVAL_DGAMMA,
                &pt::EVAL_DBETA,
                &[],
            ],
        ),
    ];
    let names = ["out", "dx", "dgamma", "dbeta", "dresidual"];
    for (case, train, form, expected) in cases {
        let got = run(&reference_layer(&dev, train), form, &dev);
        for ((got, expected), name) in got.into_iter().zip(expected).zip(names) {
            if expected.is_empty() {
                assert!(form != Form::AddRelu, "{case}: {name} expected");
                continue;
            }
            let got = got.unwrap_or_else(|| panic!("{case}: no {name}"));
            let expected = TensorData::new(expected.to_vec(), got.shape().clone());
            println!("{case} {name}");
            got.assert_approx_eq::<f32>(&expected, Tolerance::rel_abs(1e-5, 1e-5));
        }
    }
}

#[test]
fn running_statistics_after_a_train_step_match_pytorch() {
    let dev = Device::flex().autodiff();
    let bn = reference_layer(&dev, true);
    run(&bn, Form::AddRelu, &dev);
    let tol = Tolerance::rel_abs(1e-6, 1e-6);
    bn.running_mean
        .value_sync()
        .into_data()
        .assert_approx_eq::<f32>(&TensorData::from(pt::RUNNING_MEAN), tol);
    bn.running_var
        .value_sync()
        .into_data()
        .assert_approx_eq::<f32>(&TensorData::from(pt::RUNNING_VAR), tol);
    // Eval mode leaves them alone.
    let bn = reference_layer(&dev, false);
    run(&bn, Form::AddRelu, &dev);
    bn.running_var
        .value_sync()
        .into_data()
        .assert_eq(&TensorData::from(pt::RV), true);
}

/// Without autodiff (inference) the layer normalizes with its running statistics even in train
/// mode, as before the fused kernels, and the ReLU and residual forms agree with the composed ops.
#[test]
fn inference_uses_running_statistics() {
    let dev = Device::flex();
    let bn = reference_layer(&dev, true);
    let x = tensor(&pt::X, pt::SHAPE, &dev);
    let r = tensor(&pt::R, pt::SHAPE, &dev);
    let y = bn.forward_add_relu(x.clone(), r).into_data();
    y.assert_approx_eq::<f32>(
        &TensorData::new(pt::EVAL_ADD_RELU_OUT.to_vec(), pt::SHAPE),
        Tolerance::rel_abs(1e-5, 1e-5),
    );
    let plain = bn.forward(x.clone());
    bn.forward_relu(x)
        .into_data()
        .assert_eq(&burn::tensor::activation::relu(plain).into_data(), true);
}

/// `flex` with `f32` everywhere runs the kernels; another dtype (mixed precision) runs Burn's ops,
/// with the same result up to f16 rounding.
#[test]
fn routes_f32_flex_to_the_kernels_and_other_dtypes_to_burn() {
    let dev = Device::flex().autodiff();
    let mut bn = reference_layer(&dev, true);
    let x = tensor(&pt::X, pt::SHAPE, &dev);
    assert!(super::fusable(&x, None, [&bn.weight.val(), &bn.bias.val()]));
    // The half-precision step casts the whole model, as `afan-cli`'s precision module does.
    bn.weight = Param::from_tensor(bn.weight.val().cast(DType::F16).detach());
    bn.bias = Param::from_tensor(bn.bias.val().cast(DType::F16).detach());
    bn.running_mean = RunningState::new(bn.running_mean.value().cast(DType::F16));
    bn.running_var = RunningState::new(bn.running_var.value().cast(DType::F16));
    let half = x.cast(DType::F16);
    assert!(!super::fusable(
        &half,
        None,
        [&bn.weight.val(), &bn.bias.val()]
    ));
    let y = bn.forward_relu(half).cast(DType::F32).into_data();
    y.assert_approx_eq::<f32>(
        &TensorData::new(pt::TRAIN_RELU_OUT.to_vec(), pt::SHAPE),
        Tolerance::rel_abs(1e-2, 1e-2),
    );
}
