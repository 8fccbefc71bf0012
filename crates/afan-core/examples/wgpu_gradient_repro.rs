//! Minimal reproduction of a wrong gradient on Burn 0.22.1's wgpu backend (fusion and autotune
//! on, as `afan-cli/wgpu` builds it), found on Mesa's lavapipe: docs/gpu.md, "Known wgpu
//! differences". Burn's own ops only; afan's code is not involved.
//!
//! `f(x) = relu(relu(conv2d(x, k) * p) * q).mean over h, w).matmul(w)`, applied to two different
//! inputs and summed: d sum / d p on wgpu differs from flex's by ~26% of its size, while each
//! branch alone, the same input twice, or the graph without the conv, the second relu or the
//! matmul agree to 1e-7 (the flags below remove one piece each).
//!
//! ```sh
//! cargo run --features afan-cli/wgpu --workspace --example wgpu_gradient_repro [-- VARIANT [DEVICE]]
//! ```
//! VARIANT: empty (the failing graph), or any of `one` (one branch), `same` (the same input
//! twice), `noconv`, `norelu2`, `nomatmul`; DEVICE defaults to `wgpu:vulkan:cpu` (lavapipe).
//! Exits with 1 when the gradients differ by more than 1e-4 of their size.

use burn::tensor::activation::relu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};

/// Deterministic values in [-0.3, 0.3] (no RNG: the same on every backend).
fn data<const D: usize>(shape: [usize; D], seed: u32, dev: &Device) -> Tensor<D> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n as u32)
        .map(|i| ((i.wrapping_mul(2654435761) ^ seed.wrapping_mul(40503)) % 1000) as f32)
        .map(|v| (v / 500.0 - 1.0) * 0.3)
        .collect();
    Tensor::from_data(TensorData::new(v, shape), dev)
}

/// d loss / d p for the graph `variant` names.
fn gradient(device: &Device, variant: &str) -> Vec<f32> {
    let dev = device.clone().autodiff();
    let p = data([64], 4, &dev).require_grad();
    let q = data([64], 6, &dev) + 1.0;
    let w = data([64, 10], 8, &dev);
    let k = data([64, 32, 3, 3], 2, &dev);
    let x = if variant == "noconv" {
        data([2, 64, 4, 4], 1, &dev)
    } else {
        data([2, 32, 8, 8], 1, &dev)
    };
    let f = |x: Tensor<4>| {
        let c = if variant == "noconv" {
            x
        } else {
            conv2d(
                x,
                k.clone(),
                None,
                ConvOptions::new([2, 2], [1, 1], [1, 1], 1),
            )
        };
        let o = relu(c * p.clone().reshape([1, 64, 1, 1]));
        let o = if variant == "norelu2" {
            o
        } else {
            relu(o * q.clone().reshape([1, 64, 1, 1]))
        };
        let pooled = o.mean_dim(2).mean_dim(3).reshape([2, 64]);
        if variant == "nomatmul" {
            pooled * data([2, 64], 10, &dev)
        } else {
            pooled.matmul(w.clone())
        }
    };
    let out = match variant {
        "one" => f(x),
        "same" => f(x.clone()) + f(x),
        _ => f(x.clone()) + f(x * 1.5),
    };
    let grads = out.sum().backward();
    p.grad(&grads)
        .unwrap()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_default();
    let name = args.next().unwrap_or_else(|| "wgpu:vulkan:cpu".into());
    let device = afan_core::device::parse_device(&name).unwrap_or_else(|e| panic!("{e}"));
    let want = gradient(&Device::flex(), &variant);
    let got = gradient(&device, &variant);
    let worst = want
        .iter()
        .zip(&got)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    println!("flex    {:?}", &want[..4]);
    println!("{name} {:?}", &got[..4]);
    println!(
        "variant `{variant}`: max |flex - {name}| / max |flex| = {:.1e}",
        worst / scale
    );
    if worst > 1e-4 * scale {
        std::process::exit(1);
    }
}
