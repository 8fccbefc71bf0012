//! ReLU6 inside the fused batch norm (MobileNetV2's form, with or without a residual) against
//! three references: the two passes they replace (norm, then `crate::relu6`'s
//! kernel; bit for bit, as the fused kernels call the same element functions and sum in the same
//! order), the fallback composed of Burn's ops, and hand values at the bounds (0 and 6), below,
//! above and NaN. Also the kernels against their definition, element by element, with outputs that
//! start as NaN where a pass does not read them (an element left unwritten fails), and the layer's
//! `forward_relu6` against the composed layer.

use super::backward::{GradSums, NormGrad, grad_sums, input_grad_in_place};
use super::kernel::{self, Activation, Planes};
use super::{BatchNorm2dConfig, fallback, fused};
use burn::module::{Param, RunningState};
use burn::tensor::{DType, Device, Distribution, Tensor, TensorData};

/// How ReLU6 (or the add) is computed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Path {
    /// Inside the fused kernel.
    Fused,
    /// The fused kernel without an activation, then `crate::relu6::relu6` (the path before).
    TwoPasses,
    /// The fallback composed of Burn's ops.
    Burn,
}

fn values(d: &TensorData) -> Vec<f32> {
    d.clone().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Equal as `f32` (so 0.0 == -0.0) or both NaN, within `tol` relative to `max(1, |b|)`.
fn assert_close(a: &TensorData, b: &TensorData, tol: f32, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}: shape");
    for (i, (x, y)) in values(a).iter().zip(values(b)).enumerate() {
        let ok = (x.is_nan() && y.is_nan()) || (x - y).abs() <= tol * y.abs().max(1.0);
        assert!(ok, "{what}: element {i}: {x} against {y}");
    }
}

fn tensor<const D: usize>(v: &[f32], shape: [usize; D], dev: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), dev)
}

/// Output, statistics (train), then the gradients of x, gamma, beta and (with `r`) the residual
/// under `sum(out * dy)`.
fn outputs(
    path: Path,
    train: bool,
    [x, dy]: [&Tensor<4>; 2],
    r: Option<&Tensor<4>>,
    [gamma, beta, mean, var]: [&Tensor<1>; 4],
) -> Vec<TensorData> {
    let x = x.clone().require_grad();
    let r = r.map(|r| r.clone().require_grad());
    let (gamma, beta) = (gamma.clone().require_grad(), beta.clone().require_grad());
    let act = match path {
        Path::TwoPasses => Activation::None,
        _ => Activation::Relu6,
    };
    let gb = [gamma.clone(), beta.clone()];
    let (out, mut all) = if train {
        let (out, m, v) = match path {
            Path::Burn => fallback::train(x.clone(), gb, r.clone(), 1e-5, act),
            _ => fused::train(x.clone(), gb, r.clone(), 1e-5, act),
        };
        (out, vec![m.into_data(), v.into_data()])
    } else {
        let p = [gb[0].clone(), gb[1].clone(), mean.clone(), var.clone()];
        let out = match path {
            Path::Burn => fallback::eval(x.clone(), p, r.clone(), 1e-5, act),
            _ => fused::eval(x.clone(), p, r.clone(), 1e-5, act),
        };
        (out, vec![])
    };
    let out = match path {
        Path::TwoPasses => crate::relu6::relu6(out),
        _ => out,
    };
    let grads = (out.clone() * dy.clone()).sum().backward();
    all.insert(0, out.inner().into_data());
    all.push(x.grad(&grads).unwrap().into_data());
    all.push(gamma.grad(&grads).unwrap().into_data());
    all.push(beta.grad(&grads).unwrap().into_data());
    if let Some(r) = r {
        all.push(r.grad(&grads).unwrap().into_data());
    }
    all
}

/// Every output of `path` against the fused one: `tol` 0 asks for the same values.
fn compare(path: Path, case: &str, tol: f32, run: impl Fn(Path) -> Vec<TensorData>) {
    let (a, b) = (run(Path::Fused), run(path));
    assert_eq!(a.len(), b.len(), "{case}");
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        assert_close(a, b, tol, &format!("{case}, {path:?}, output {i}"));
    }
}

/// Random data spread over all three pieces of ReLU6 (about -9..15 after the norm), on a plane
/// of 63 pixels (32-lane chunks and a tail); train and eval, with and without a residual.
#[test]
fn relu6_in_the_norm_matches_two_passes_and_burn_ops() {
    let dev = Device::flex().autodiff();
    let shape = [2, 3, 7, 9];
    let normal = |s: [usize; 4]| Tensor::<4>::random(s, Distribution::Normal(0.0, 1.0), &dev);
    let offset = normal([1, 3, 1, 1]);
    let x = normal(shape) * offset.clone().exp() + offset;
    let (r, dy) = (normal(shape), normal(shape));
    let gamma = tensor(&[4.0, -3.0, 5.0], [3], &dev);
    let beta = tensor(&[3.0, 2.5, 4.0], [3], &dev);
    // Eval mode with the batch's own statistics (as running ones), so it spreads as train does.
    let unused = Tensor::zeros([3], &dev);
    let stats = outputs(
        Path::Fused,
        true,
        [&x, &dy],
        None,
        [&gamma, &beta, &unused, &unused],
    );
    let [mean, var] = [1, 2].map(|i| Tensor::<1>::from_data(stats[i].clone(), &dev));
    let params = [&gamma, &beta, &mean, &var];
    for train in [true, false] {
        for add in [false, true] {
            let case = format!("train {train}, add {add}");
            let run = |path| outputs(path, train, [&x, &dy], add.then_some(&r), params);
            let out = values(&run(Path::Fused)[0]);
            let (low, high) = (
                out.iter().filter(|&&v| v == 0.0),
                out.iter().filter(|&&v| v == 6.0),
            );
            assert!(
                low.count() > 20 && high.count() > 20,
                "{case}: all three pieces"
            );
            compare(Path::TwoPasses, &case, 0.0, run);
            compare(Path::Burn, &case, 1e-4, run);
        }
    }
}

/// Eval mode with gamma 1, beta 0, mean 0 and `var + eps` rounding to 1: the norm is the identity,
/// so the inputs sit exactly at the bounds. Channel 0 holds -1, 0, 0.5, 6, 7, 5.5, 3, -2; channel 1
/// a NaN. With `dy = 2`, PyTorch's `F.relu6` passes the gradient only on `0 < y < 6` and at NaN.
#[test]
fn hand_values_at_the_bounds() {
    let dev = Device::flex().autodiff();
    let var = 1.0f32 - 1e-5;
    assert_eq!(kernel::inv_std(&[var], 1e-5), [1.0]);
    #[rustfmt::skip]
    let x = [
        -1.0, 0.0, 0.5, 6.0, 7.0, 5.5, 3.0, -2.0,
        f32::NAN, 1.0, 2.0, 8.0, -3.0, 6.0, 0.0, 4.0,
    ];
    #[rustfmt::skip]
    let y = [
        0.0, 0.0, 0.5, 6.0, 6.0, 5.5, 3.0, 0.0,
        f32::NAN, 1.0, 2.0, 6.0, 0.0, 6.0, 0.0, 4.0,
    ];
    #[rustfmt::skip]
    let mask = [
        0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0,
        1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0,
    ];
    let shape = [1, 2, 2, 4];
    let dx: Vec<f32> = mask.iter().map(|m| m * 2.0).collect();
    // dgamma = sum g * xhat (xhat: the input, x or x - r), NaN in channel 1; dbeta = sum g.
    let dgamma = |xs: &[f32]| {
        let g_xhat = xs[..8].iter().zip(&dx).map(|(x, g)| x * g);
        [g_xhat.sum::<f32>(), f32::NAN]
    };
    let dbeta = [6.0, 8.0];
    let dy = tensor(&[2.0; 16], shape, &dev);
    let gamma = tensor(&[1.0, 1.0], [2], &dev);
    let beta = tensor(&[0.0, 0.0], [2], &dev);
    let (mean, var) = (
        tensor(&[0.0, 0.0], [2], &dev),
        tensor(&[var, var], [2], &dev),
    );
    let params = [&gamma, &beta, &mean, &var];
    // With a residual: x - r + r is x again (small exact values).
    let r: Vec<f32> = (0..16).map(|i| (i % 5) as f32 - 2.0).collect();
    let x_minus_r: Vec<f32> = x.iter().zip(&r).map(|(x, r)| x - r).collect();
    for path in [Path::Fused, Path::TwoPasses, Path::Burn] {
        for add in [false, true] {
            let case = format!("{path:?}, add {add}");
            let (xs, r) = match add {
                false => (&x[..], None),
                true => (&x_minus_r[..], Some(tensor(&r, shape, &dev))),
            };
            let dgamma = dgamma(xs);
            let xs = tensor(xs, shape, &dev);
            let got = outputs(path, false, [&xs, &dy], r.as_ref(), params);
            let mut expected = vec![
                TensorData::new(y.to_vec(), shape),
                TensorData::new(dx.clone(), shape),
                TensorData::new(dgamma.to_vec(), [2]),
                TensorData::new(dbeta.to_vec(), [2]),
            ];
            if add {
                expected.push(TensorData::new(dx.clone(), shape));
            }
            assert_eq!(got.len(), expected.len());
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert_close(g, e, 0.0, &format!("{case}: output {i}"));
            }
        }
    }
}

/// Train mode: each plane of channels 0 and 1 sums to zero in small integers, so the batch mean is
/// exactly 0 and the zeros of `x` land exactly on beta, 0 for channel 0 and 6 for channel 1; the
/// residual (zero) takes the masked gradient, which must be 0 there. Channel 2 holds a NaN, which
/// makes its whole channel NaN, gradient passed.
#[test]
fn bounds_reached_with_batch_statistics() {
    let dev = Device::flex().autodiff();
    let shape = [2, 3, 1, 6];
    #[rustfmt::skip]
    let x = [
        // Image 0, channels 0, 1, 2.
        0.0, 1.0, -1.0, 2.0, -2.0, 0.0,
        0.0, 3.0, -3.0, 1.0, -1.0, 0.0,
        f32::NAN, 1.0, 2.0, 0.0, 3.0, 1.0,
        // Image 1.
        3.0, -3.0, 0.0, 5.0, -5.0, 0.0,
        4.0, 0.0, -4.0, 2.0, -2.0, 0.0,
        1.0, 2.0, 0.5, 0.0, 1.0, 2.0,
    ];
    let x = tensor(&x, shape, &dev);
    let dy: Vec<f32> = (0..36).map(|i| 1.0 + (i % 7) as f32 * 0.25).collect();
    let dy = tensor(&dy, shape, &dev);
    let r = Tensor::<4>::zeros(shape, &dev);
    let gamma = tensor(&[3.0, 3.0, 1.0], [3], &dev);
    let beta = tensor(&[0.0, 6.0, 1.0], [3], &dev);
    let (mean, var) = (Tensor::zeros([3], &dev), Tensor::ones([3], &dev));
    let params = [&gamma, &beta, &mean, &var];
    let run = |path| outputs(path, true, [&x, &dy], Some(&r), params);
    let fused = run(Path::Fused);
    let (x, y, dr, dy) = (
        values(&x.to_data()),
        values(&fused[0]),
        values(&fused[6]),
        values(&dy.to_data()),
    );
    for i in 0..36 {
        let channel = (i / 6) % 3;
        if channel == 2 {
            assert!(y[i].is_nan() && dr[i] == dy[i], "NaN channel, element {i}");
        } else if x[i] == 0.0 {
            assert_eq!(y[i], [0.0, 6.0][channel], "element {i} on the bound");
            assert_eq!(dr[i], 0.0, "element {i}: no gradient on the bound");
        } else {
            let inside = y[i] > 0.0 && y[i] < 6.0;
            assert_eq!(dr[i], if inside { dy[i] } else { 0.0 }, "element {i}");
        }
    }
    compare(Path::TwoPasses, "batch statistics", 0.0, run);
    compare(Path::Burn, "batch statistics", 1e-4, run);
}

/// Deterministic values in about [-8, 8), a pattern with some exact zeros.
fn pattern(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| match (i * 7919 + seed * 104_729) % 1009 {
            0..=20 => 0.0,
            k => k as f32 / 63.0 - 8.0,
        })
        .collect()
}

/// The definitions, written out independently of the kernels (so not with `f32::clamp`, which
/// the kernel calls).
#[allow(clippy::manual_clamp)]
fn act_def(act: Activation, v: f32) -> f32 {
    match act {
        _ if v.is_nan() => v,
        Activation::None => v,
        Activation::Relu => v.max(0.0),
        Activation::Relu6 => v.max(0.0).min(6.0),
    }
}

fn mask_def(act: Activation, out: f32, dy: f32) -> f32 {
    let passes = match act {
        _ if out.is_nan() => true,
        Activation::None => true,
        Activation::Relu => out > 0.0,
        Activation::Relu6 => out > 0.0 && out < 6.0,
    };
    if passes { dy } else { 0.0 }
}

fn same_f32(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            x == y || (x.is_nan() && y.is_nan()),
            "{what}: {i}: {x} vs {y}"
        );
    }
}

/// Forward and both backward passes against the definitions, every element, on odd extents (77
/// pixels: chunks and a tail; 5: tail only; 1), with and without batch statistics and residual.
/// The input gradient is written into a NaN-filled buffer when the pass reads the kept masked
/// gradient instead of its buffer's old values.
#[test]
fn kernels_match_the_definitions_element_by_element() {
    let shapes = [(3, 5, 77), (2, 3, 5), (4, 2, 1), (40, 3, 77)];
    for (batch, channels, pixels) in shapes {
        let p = Planes {
            batch,
            channels,
            pixels,
        };
        let (x, r, dy) = (
            pattern(p.len(), 1),
            pattern(p.len(), 2),
            pattern(p.len(), 3),
        );
        let c = |i: usize| (i / pixels) % channels;
        let scale: Vec<f32> = (0..channels).map(|k| 0.5 + k as f32 * 0.7).collect();
        let shift: Vec<f32> = (0..channels).map(|k| 3.0 - k as f32).collect();
        for act in [Activation::None, Activation::Relu, Activation::Relu6] {
            for residual in [None, Some(&r[..])] {
                let case = format!("{p:?} {act:?} residual {}", residual.is_some());
                let y = kernel::normalize(p, &x, [&scale, &shift], residual, act);
                let def: Vec<f32> = (0..p.len())
                    .map(|i| {
                        let v = x[i] * scale[c(i)] + shift[c(i)];
                        act_def(act, residual.map_or(v, |r| v + r[i]))
                    })
                    .collect();
                same_f32(&y, &def, &format!("{case}: forward"));
                backward_matches_the_definition(p, [&x, &y, &dy], act, &case);
            }
        }
    }
}

fn backward_matches_the_definition(
    p: Planes,
    [x, y, dy]: [&[f32]; 3],
    act: Activation,
    case: &str,
) {
    let c = |i: usize| (i / p.pixels) % p.channels;
    let gamma: Vec<f32> = (0..p.channels).map(|k| 1.5 - k as f32 * 0.4).collect();
    let mean: Vec<f32> = (0..p.channels).map(|k| k as f32 * 0.3 - 0.2).collect();
    let inv_std: Vec<f32> = (0..p.channels).map(|k| 0.8 + k as f32 * 0.1).collect();
    let g: Vec<f32> = (0..p.len()).map(|i| mask_def(act, y[i], dy[i])).collect();
    for batch_stats in [false, true] {
        let a = NormGrad {
            planes: p,
            x,
            activated: Some((act, y)),
            gamma: &gamma,
            mean: &mean,
            inv_std: &inv_std,
            batch_stats,
        };
        for keep_masked in [false, true] {
            let case = format!("{case}, batch stats {batch_stats}, masked kept {keep_masked}");
            let sums: GradSums = grad_sums(&a, dy, [true, keep_masked]);
            match (&sums.masked, keep_masked && act != Activation::None) {
                (Some(m), true) => same_f32(m, &g, &format!("{case}: masked")),
                (None, false) => {}
                _ => panic!("{case}: masked gradient kept wrongly"),
            }
            let m = p.per_channel() as f64;
            // [sum, sum of magnitudes] of g and of g * (x - mean), per channel, in f64.
            let mut sums64 = vec![[0f64; 4]; p.channels];
            for i in 0..p.len() {
                let (g, gx) = (g[i] as f64, g[i] as f64 * (x[i] - mean[c(i)]) as f64);
                let s = &mut sums64[c(i)];
                *s = [s[0] + g, s[1] + g.abs(), s[2] + gx, s[3] + gx.abs()];
            }
            for (k, [g, g_abs, gx, gx_abs]) in sums64.into_iter().enumerate() {
                let near = |a: f64, b: f64, size: f64| (a - b).abs() <= 1e-5 * size + 1e-6;
                assert!(near(sums.sum_g[k], g, g_abs), "{case}: sum g");
                assert!(near(sums.sum_gx[k], gx, gx_abs), "{case}: sum gx");
            }
            // The pass reads its buffer's old values only when the masked gradient was not kept.
            let mut dx = match &sums.masked {
                Some(_) => vec![f32::NAN; p.len()],
                None => dy.to_vec(),
            };
            input_grad_in_place(&a, &sums, &mut dx);
            for i in 0..p.len() {
                let k = c(i);
                let kk = gamma[k] as f64 * inv_std[k] as f64;
                let mut want = kk * g[i] as f64;
                if batch_stats {
                    let is2 = inv_std[k] as f64 * inv_std[k] as f64;
                    want -= kk * is2 * sums.sum_gx[k] / m * (x[i] - mean[k]) as f64;
                    want -= kk * sums.sum_g[k] / m;
                }
                let tol = 1e-4 * want.abs().max(1.0);
                assert!(
                    (dx[i] as f64 - want).abs() <= tol,
                    "{case}: dx {i}: {} vs {want}",
                    dx[i]
                );
            }
        }
    }
}

/// The layer's `forward_relu6` gives the composed layer's (`relu6(forward(x))`) values,
/// gradients and running statistics, bit for bit (the environment switch is on by default).
#[test]
fn forward_relu6_matches_the_composed_layer() {
    let dev = Device::flex().autodiff();
    let shape = [2, 4, 5, 6];
    let normal = |s: [usize; 4]| Tensor::<4>::random(s, Distribution::Normal(0.0, 3.0), &dev);
    let (x, dy) = (normal(shape), normal(shape));
    let run = |fused: bool| {
        let mut bn = BatchNorm2dConfig::new(4).init(&dev);
        bn.weight = Param::from_tensor(tensor(&[2.0, -1.0, 3.0, 0.5], [4], &dev));
        bn.bias = Param::from_tensor(tensor(&[3.0, 1.0, 2.0, 0.0], [4], &dev));
        let x = x.clone().require_grad();
        let out = match fused {
            true => bn.forward_relu6(x.clone()),
            false => crate::relu6::relu6(bn.forward(x.clone())),
        };
        let grads = (out.clone() * dy.clone()).sum().backward();
        [
            out.inner().into_data(),
            x.grad(&grads).unwrap().into_data(),
            bn.weight.val().grad(&grads).unwrap().into_data(),
            bn.bias.val().grad(&grads).unwrap().into_data(),
            bn.running_mean.value_sync().into_data(),
            bn.running_var.value_sync().into_data(),
        ]
    };
    let (a, b) = (run(true), run(false));
    for (i, (a, b)) in a.iter().zip(&b).enumerate() {
        assert_close(a, b, 0.0, &format!("output {i}"));
    }
}

/// Half precision runs the fallback's ReLU6: the fused `f32` result up to `f16` rounding.
#[test]
fn half_precision_runs_the_fallback() {
    let dev = Device::flex().autodiff();
    let x = Tensor::<4>::random([2, 3, 4, 5], Distribution::Normal(0.0, 1.0), &dev);
    let mut bn = BatchNorm2dConfig::new(3).init(&dev);
    bn.weight = Param::from_tensor(tensor(&[4.0, 3.0, 5.0], [3], &dev));
    bn.bias = Param::from_tensor(tensor(&[3.0, 2.5, 4.0], [3], &dev));
    let full = bn.forward_relu6(x.clone()).into_data();
    bn.weight = Param::from_tensor(bn.weight.val().cast(DType::F16).detach());
    bn.bias = Param::from_tensor(bn.bias.val().cast(DType::F16).detach());
    bn.running_mean = RunningState::new(bn.running_mean.value().cast(DType::F16));
    bn.running_var = RunningState::new(bn.running_var.value().cast(DType::F16));
    let half = bn
        .forward_relu6(x.cast(DType::F16))
        .cast(DType::F32)
        .into_data();
    assert_close(&half, &full, 1e-2, "f16 against f32");
}
