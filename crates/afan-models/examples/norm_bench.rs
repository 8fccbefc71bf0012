//! Times the batch norms (+ residual add) + ReLUs of a ResNet-20 training step at batch 128:
//! flex's own ops (`batch_norm_train`, `float_add`, `relu` and their backward passes) against
//! afan's fused kernels, on the same data in one run, with the caches flushed before each timed
//! call (in a training step the activations come from memory):
//!
//! ```sh
//! cargo run --release -p afan-models --example norm_bench [-- ITERS]
//! ```

mod common;

use afan_models::norm::backward::{NormGrad, normalize_backward};
use afan_models::norm::kernel::{self, Activation, Planes};
use burn::backend::Flex;
use burn::backend::ops::{ActivationOps, FloatTensorOps, ModuleOps};
use common::{data, iters_arg, tensor, time_cold as time};

const EPS: f64 = 1e-5;

fn main() {
    let iters = iters_arg(10);
    let n = 128;
    // (channels, size, residual add, how many per ResNet-20 step)
    let shapes = [
        (16, 32, false, 4),
        (16, 32, true, 3),
        (32, 16, false, 3),
        (32, 16, true, 3),
        (64, 8, false, 3),
        (64, 8, true, 3),
    ];
    println!(
        "{:<24} {:>5} | {:>9} {:>9} | {:>9} {:>9} | {:>6} {:>6}",
        "bn (+add) + relu",
        "count",
        "flex fwd",
        "flex bwd",
        "afan fwd",
        "afan bwd",
        "fwd x",
        "bwd x"
    );
    let mut totals = [0.0f64; 2];
    for (c, size, add, count) in shapes {
        let p = Planes {
            batch: n,
            channels: c,
            pixels: size * size,
        };
        let shape = [n, c, size, size];
        let (xv, rv, dyv) = (data(p.len(), 1), data(p.len(), 2), data(p.len(), 3));
        let gv: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 / c as f32).collect();
        let bv: Vec<f32> = (0..c).map(|i| 0.1 - i as f32 / (4 * c) as f32).collect();
        let (x, r, dy) = (
            tensor(xv.clone(), shape),
            tensor(rv.clone(), shape),
            tensor(dyv.clone(), shape),
        );
        let (gamma, beta) = (tensor(gv.clone(), [c]), tensor(bv.clone(), [c]));

        let flex_forward = || {
            let bn = Flex::batch_norm_train(x.clone(), gamma.clone(), beta.clone(), EPS);
            let y = if add {
                Flex::float_add(bn.output, r.clone())
            } else {
                bn.output
            };
            (Flex::relu(y), bn.mean, bn.variance)
        };
        let (out, mean, var) = flex_forward();
        let flex_backward = || {
            let g = Flex::relu_backward(out.clone(), dy.clone());
            Flex::batch_norm_train_backward(
                x.clone(),
                gamma.clone(),
                mean.clone(),
                var.clone(),
                EPS,
                g,
            )
        };
        let flex = [time(iters, flex_forward), time(iters, flex_backward)];

        let afan_forward = || {
            let (mean, var) = kernel::batch_stats(p, &xv);
            let inv_std = kernel::inv_std(&var, EPS);
            let [scale, shift] = kernel::affine(&gv, &bv, &mean, &inv_std);
            let y = kernel::normalize(
                p,
                &xv,
                [&scale, &shift],
                add.then_some(&rv[..]),
                Activation::Relu,
            );
            (y, mean, inv_std)
        };
        let (y, mean, inv_std) = afan_forward();
        let args = NormGrad {
            planes: p,
            x: &xv,
            activated: Some((Activation::Relu, &y)),
            gamma: &gv,
            mean: &mean,
            inv_std: &inv_std,
            batch_stats: true,
        };
        let afan = [
            time(iters, afan_forward),
            time(iters, || {
                normalize_backward(&args, &dyv, [true, true, true, add])
            }),
        ];
        let name = format!("{c} ch @{size}{}", if add { " +add" } else { "" });
        println!(
            "{name:<24} {count:>5} | {:>8.2}ms {:>8.2}ms | {:>8.2}ms {:>8.2}ms | {:>5.2}x {:>5.2}x",
            flex[0] * 1e3,
            flex[1] * 1e3,
            afan[0] * 1e3,
            afan[1] * 1e3,
            flex[0] / afan[0],
            flex[1] / afan[1],
        );
        totals[0] += count as f64 * (flex[0] + flex[1]);
        totals[1] += count as f64 * (afan[0] + afan[1]);
    }
    println!(
        "ResNet-20 step, all batch norms + adds + ReLUs (forward + backward): flex {:.3} s, afan {:.3} s ({:.2}x)",
        totals[0],
        totals[1],
        totals[0] / totals[1]
    );
}
