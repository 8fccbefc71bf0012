//! afan's bilinear resize against PyTorch's `F.interpolate` (values and input gradients from
//! `tests/fixtures/resize_bilinear.safetensors`, written by `xtask/reference/resize_bilinear.py`),
//! against Burn's own `interpolate` on flex, and what those cannot show: every output element
//! written (outputs start as NaN) and results that do not depend on the thread count.

use super::kernel::{
    Resize, backward_into_with, bilinear_backward_into, bilinear_forward_into, forward_into_with,
};
use super::*;
use crate::StateDict;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Distribution, TensorData, Tolerance};
use std::mem::MaybeUninit;
use std::path::Path;

/// The gradient within 5e-6 rather than 1e-6: the separable backward (see [`kernel`]) adds each
/// input element's contributions rows first, in another order than PyTorch (measured: 1.7e-6).
#[test]
fn matches_pytorch_values_and_gradients() {
    check_against_pytorch(&Device::flex().autodiff(), resize_bilinear, [1e-6, 5e-6]);
}

/// The path of every other backend (two matmuls), on the test device (`AFAN_TEST_DEVICE`; CI
/// runs it on wgpu too). 1e-6 on the CPU; 1e-5 elsewhere, whose matmuls sum in other orders.
#[test]
fn the_matmul_resize_matches_pytorch_values_and_gradients() {
    let tol = afan_core::device::test_tolerance(1e-6, 1e-5);
    let dev = afan_core::device::test_device().autodiff();
    check_against_pytorch(&dev, resize_by_matmul, [tol, tol]);
}

fn check_against_pytorch(
    dev: &Device,
    resize: fn(Tensor<4>, [usize; 2], bool) -> Tensor<4>,
    [tol_y, tol_dx]: [f32; 2],
) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/resize_bilinear.safetensors");
    let dict = StateDict::from_safetensors(&path).unwrap();
    let tensor = |key: &str| {
        let (values, shape) = dict
            .get(key)
            .unwrap_or_else(|| panic!("fixture lacks {key}"));
        Tensor::<4>::from_data(TensorData::new(values.to_vec(), shape.to_vec()), dev)
    };
    for (h, w) in [(20, 28), (17, 13), (3, 4), (1, 1)] {
        for ac in [false, true] {
            let case = format!("{h}x{w}_{}", u8::from(ac));
            let x = tensor("x").require_grad();
            let y = resize(x.clone(), [h, w], ac);
            let grads = (y.clone() * tensor(&format!("{case}.r"))).sum().backward();
            let (tol_y, tol_dx) = (
                Tolerance::rel_abs(tol_y, tol_y),
                Tolerance::rel_abs(tol_dx, tol_dx),
            );
            y.inner().into_data().assert_approx_eq::<f32>(
                &tensor(&format!("{case}.out")).inner().into_data(),
                tol_y,
            );
            x.grad(&grads).unwrap().into_data().assert_approx_eq::<f32>(
                &tensor(&format!("{case}.grad")).inner().into_data(),
                tol_dx,
            );
        }
    }
}

/// Burn's `interpolate` and its backward (flex's own kernels, which compute the coordinates in
/// `f64`) on DeepLab's resizes in miniature: x4 to the decoder, x4 to the input, and uneven ones.
#[test]
fn matches_burn_interpolate() {
    let dev = Device::flex().autodiff();
    for ([h, w], size) in [
        ([5, 5], [20, 20]),
        ([9, 9], [33, 33]),
        ([6, 7], [13, 29]),
        ([8, 8], [3, 5]),
    ] {
        for ac in [false, true] {
            let x = Tensor::<4>::random([2, 3, h, w], Distribution::Normal(0.0, 1.0), &dev);
            let run = |fast: bool| {
                let x = x.clone().require_grad();
                let y = if fast {
                    resize_bilinear(x.clone(), size, ac)
                } else {
                    interpolate(
                        x.clone(),
                        InterpolateOptions::new(InterpolateMode::Bilinear)
                            .with_align_corners(ac)
                            .with_output_size(size),
                    )
                };
                let r = Tensor::<4>::ones(y.dims(), &dev).cumsum(3).cumsum(2) / 9.0;
                let grads = (y.clone() * r).sum().backward();
                (y.inner(), x.grad(&grads).unwrap())
            };
            let ((y, dx), (y_ref, dx_ref)) = (run(true), run(false));
            let tol = Tolerance::rel_abs(1e-5, 1e-5);
            y.into_data()
                .assert_approx_eq::<f32>(&y_ref.into_data(), tol);
            dx.into_data()
                .assert_approx_eq::<f32>(&dx_ref.into_data(), tol);
        }
    }
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// Both kernels into NaN-filled outputs give the same bits as into fresh ones, with 1 and 3
/// threads.
#[test]
fn outputs_are_fully_written_and_thread_count_invariant() {
    for r in [
        Resize {
            planes: 7,
            input: [9, 9],
            output: [33, 33],
            align_corners: false,
        },
        Resize {
            planes: 5,
            input: [6, 7],
            output: [13, 29],
            align_corners: true,
        },
        Resize {
            planes: 3,
            input: [8, 8],
            output: [3, 5],
            align_corners: false,
        },
        // Several tasks of planes with a ragged last one (3 + 3 + 1 planes of 129x129).
        Resize {
            planes: 7,
            input: [9, 9],
            output: [129, 129],
            align_corners: false,
        },
    ] {
        let x: Vec<f32> = (0..r.planes * r.input[0] * r.input[1])
            .map(|i| ((i * 7919) % 211) as f32 / 105.0 - 1.0)
            .collect();
        let dy: Vec<f32> = (0..r.planes * r.output[0] * r.output[1])
            .map(|i| ((i * 104_729) % 199) as f32 / 99.0 - 1.0)
            .collect();
        let run = |threads: usize, fill: f32| {
            pool(threads).install(|| {
                let mut y = vec![MaybeUninit::new(fill); dy.len()];
                bilinear_forward_into(&r, &x, &mut y);
                let mut dx = vec![MaybeUninit::new(fill); x.len()];
                bilinear_backward_into(&r, &dy, &mut dx);
                // SAFETY: initialised by `vec!`, then (we check) overwritten.
                let bits = |v: &[MaybeUninit<f32>]| -> Vec<u32> {
                    v.iter()
                        .map(|v| unsafe { v.assume_init() }.to_bits())
                        .collect()
                };
                (bits(&y), bits(&dx))
            })
        };
        let one = run(1, 0.0);
        assert!(
            one.0
                .iter()
                .chain(&one.1)
                .all(|b| !f32::from_bits(*b).is_nan())
        );
        assert_eq!(one, run(1, f32::NAN), "{r:?}: NaN-poisoned outputs");
        assert_eq!(one, run(3, f32::NAN), "{r:?}: three threads");
    }
}

/// The separable passes (upsampling in height) against the element-wise loops: the forward
/// bit-equal (the same operations per element), the backward within float reordering; into
/// NaN-poisoned outputs, several tasks with a ragged last one, 1 and 3 threads.
#[test]
fn separable_passes_match_the_elementwise_loops() {
    for (planes, input, output, align_corners) in [
        (7, [9, 9], [33, 33], false),
        (7, [9, 9], [129, 129], false),
        (5, [6, 7], [13, 29], true),
        (4, [1, 1], [5, 3], false),
        (3, [5, 9], [5, 4], false),
        (2, [33, 33], [129, 129], true),
    ] {
        let r = Resize {
            planes,
            input,
            output,
            align_corners,
        };
        let x: Vec<f32> = (0..planes * input[0] * input[1])
            .map(|i| ((i * 7919) % 211) as f32 / 105.0 - 1.0)
            .collect();
        let dy: Vec<f32> = (0..planes * output[0] * output[1])
            .map(|i| ((i * 104_729) % 199) as f32 / 99.0 - 1.0)
            .collect();
        let run = |threads: usize, separable: bool| {
            pool(threads).install(|| {
                let mut y = vec![MaybeUninit::new(f32::NAN); dy.len()];
                forward_into_with(&r, &x, &mut y, separable);
                let mut dx = vec![MaybeUninit::new(f32::NAN); x.len()];
                backward_into_with(&r, &dy, &mut dx, separable);
                // SAFETY: initialised by `vec!`, then (we check) overwritten.
                let values = |v: Vec<MaybeUninit<f32>>| -> Vec<f32> {
                    v.into_iter().map(|v| unsafe { v.assume_init() }).collect()
                };
                (values(y), values(dx))
            })
        };
        let (y, dx) = run(1, false);
        let (ys, dxs) = run(1, true);
        assert!(
            ys.iter().chain(&dxs).all(|v| !v.is_nan()),
            "{r:?}: unwritten"
        );
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&y), bits(&ys), "{r:?}: forward");
        for (i, (a, b)) in dx.iter().zip(&dxs).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                "{r:?}: input gradient {i}: {a} vs {b}"
            );
        }
        let three = run(3, true);
        assert_eq!(
            (bits(&three.0), bits(&three.1)),
            (bits(&ys), bits(&dxs)),
            "{r:?}: three threads"
        );
    }
}

/// A resize to the same size is the identity (no kernel runs).
#[test]
fn same_size_is_the_input() {
    let dev = Device::flex();
    let x = Tensor::<4>::random([1, 2, 5, 6], Distribution::Normal(0.0, 1.0), &dev);
    resize_bilinear(x.clone(), [5, 6], false)
        .into_data()
        .assert_eq(&x.into_data(), true);
}
