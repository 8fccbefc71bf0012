//! The fused kernels against the fallback composed of Burn's ops (forward, statistics and all
//! gradients, every form, train and eval, contiguous or not) and their determinism across thread
//! counts.

use super::backward::{NormGrad, normalize_backward};
use super::kernel::{self, Activation, Planes};
use super::{fallback, fused};
use burn::tensor::{Device, Distribution, Tensor, TensorData, Tolerance};

fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

/// Output, batch mean and variance (train only), and the gradients of x, gamma, beta, residual.
fn outputs(
    path_fused: bool,
    train: bool,
    [x, r, dy]: [&Tensor<4>; 3],
    params: [&Tensor<1>; 4],
    (add, act): (bool, Activation),
) -> Vec<TensorData> {
    let [gamma, beta, mean, var] = params.map(|t| t.clone());
    let (x, r) = (x.clone().require_grad(), r.clone().require_grad());
    let (gamma, beta) = (gamma.require_grad(), beta.require_grad());
    let residual = add.then(|| r.clone());
    let eps = 1e-5;
    let (out, stats) = if train {
        let (out, m, v) = if path_fused {
            fused::train(x.clone(), [gamma.clone(), beta.clone()], residual, eps, act)
        } else {
            fallback::train(x.clone(), [gamma.clone(), beta.clone()], residual, eps, act)
        };
        (out, vec![m.into_data(), v.into_data()])
    } else {
        let p = [gamma.clone(), beta.clone(), mean, var];
        let out = if path_fused {
            fused::eval(x.clone(), p, residual, eps, act)
        } else {
            fallback::eval(x.clone(), p, residual, eps, act)
        };
        (out, vec![])
    };
    let grads = (out.clone() * dy.clone()).sum().backward();
    let mut all = vec![out.into_data()];
    all.extend(stats);
    all.push(x.grad(&grads).unwrap().into_data());
    all.push(gamma.grad(&grads).unwrap().into_data());
    all.push(beta.grad(&grads).unwrap().into_data());
    if add {
        all.push(r.grad(&grads).unwrap().into_data());
    }
    all
}

/// Every (residual add, activation) pair.
const FORMS: [(bool, Activation); 6] = [
    (false, Activation::None),
    (false, Activation::Relu),
    (false, Activation::Relu6),
    (true, Activation::None),
    (true, Activation::Relu),
    (true, Activation::Relu6),
];

#[test]
fn fused_matches_burn_ops_in_every_form() {
    let dev = Device::flex().autodiff();
    // 35 pixels (lanes and a tail), 64 pixels (lanes only), 1 pixel (the ASPP pooling branch).
    for shape in [[3, 4, 5, 7], [2, 3, 8, 8], [4, 2, 1, 1]] {
        let (x, r, dy) = (
            random(shape, &dev),
            random(shape, &dev),
            random(shape, &dev),
        );
        // An offset and a spread per channel, as convolution outputs have.
        let offset = random([1, shape[1], 1, 1], &dev);
        let x = x * offset.clone().exp() + offset;
        let c = shape[1];
        let gamma = random([c], &dev).add_scalar(1.0);
        let beta = random([c], &dev);
        let mean = random([c], &dev);
        let var = random([c], &dev).abs().add_scalar(0.5);
        let params = [&gamma, &beta, &mean, &var];
        for train in [true, false] {
            for form in FORMS {
                let case = format!("{shape:?} train {train} (add, activation) {form:?}");
                let a = outputs(true, train, [&x, &r, &dy], params, form);
                let b = outputs(false, train, [&x, &r, &dy], params, form);
                assert_eq!(a.len(), b.len());
                for (i, (a, b)) in a.iter().zip(&b).enumerate() {
                    assert_eq!(a.shape(), b.shape(), "{case}: output {i}");
                    println!("{case}: output {i}");
                    a.assert_approx_eq::<f32>(b, Tolerance::rel_abs(1e-4, 1e-4));
                }
            }
        }
    }
}

/// Views (a transposed input, a strided residual) are read as the tensors they stand for.
#[test]
fn non_contiguous_inputs_match_burn_ops() {
    let dev = Device::flex().autodiff();
    let x = random([2, 3, 6, 5], &dev).swap_dims(2, 3);
    let r = random([2, 3, 10, 6], &dev).slice(burn::tensor::s![.., .., ..;2, ..]);
    let dy = random([2, 3, 5, 6], &dev);
    let (gamma, beta) = (random([3], &dev), random([3], &dev));
    let (mean, var) = (random([3], &dev), random([3], &dev).abs());
    for train in [true, false] {
        let params = [&gamma, &beta, &mean, &var];
        for act in [Activation::Relu, Activation::Relu6] {
            let [a, b] =
                [true, false].map(|f| outputs(f, train, [&x, &r, &dy], params, (true, act)));
            for (a, b) in a.iter().zip(&b) {
                a.assert_approx_eq::<f32>(b, Tolerance::rel_abs(1e-4, 1e-4));
            }
        }
    }
}

/// Deterministic values in -1.5..2.5 (a pattern, not noise: enough for bit comparisons).
fn pattern(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 250.0 - 1.5)
        .collect()
}

/// Everything the kernels compute for one batch, as bits.
fn kernel_bits(p: Planes, x: &[f32], r: &[f32], dy: &[f32], act: Activation) -> Vec<Vec<u32>> {
    let c = p.channels;
    let gamma: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 * 0.1).collect();
    let beta: Vec<f32> = (0..c).map(|i| i as f32 * 0.05 - 0.3).collect();
    let (mean, var) = kernel::batch_stats(p, x);
    let inv_std = kernel::inv_std(&var, 1e-5);
    let [scale, shift] = kernel::affine(&gamma, &beta, &mean, &inv_std);
    let y = kernel::normalize(p, x, [&scale, &shift], Some(r), act);
    let g = normalize_backward(
        &NormGrad {
            planes: p,
            x,
            activated: Some((act, &y)),
            gamma: &gamma,
            mean: &mean,
            inv_std: &inv_std,
            batch_stats: true,
        },
        dy,
        [true; 4],
    );
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect();
    let masked = g.masked.unwrap_or_else(|| dy.to_vec());
    let grads = [g.x.unwrap(), g.gamma.unwrap(), g.beta.unwrap(), masked];
    [&mean, &var, &y]
        .into_iter()
        .chain(&grads)
        .map(|v| bits(v))
        .collect()
}

/// The sums are per plane and then in image order, so 1, 2 and 3 threads give the same bits
/// (the CLI's resume test compares whole training runs bit for bit).
#[test]
fn results_do_not_depend_on_the_thread_count() {
    // 512 planes of 64 pixels: several rayon tasks.
    let p = Planes {
        batch: 16,
        channels: 32,
        pixels: 64,
    };
    let (x, r, dy) = (
        pattern(p.len(), 1),
        pattern(p.len(), 2),
        pattern(p.len(), 3),
    );
    for act in [Activation::None, Activation::Relu, Activation::Relu6] {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| kernel_bits(p, &x, &r, &dy, act))
        };
        let one = run(1);
        assert_eq!(one, run(2), "{act:?}");
        assert_eq!(one, run(3), "{act:?}");
        assert_eq!(one, run(3), "{act:?}");
    }
}
