//! afan's ReLU6 against Burn's `clamp(0, 6)` (values, and gradients away from the bounds, where
//! Burn's `clamp` backward may pick another side), hand values at the bounds (PyTorch's
//! `hardtanh_backward`: zero gradient at 0 and 6), and what those cannot show: every output
//! element written (outputs start as NaN) and results that do not depend on the thread count.

use super::kernel::{relu6_backward_into, relu6_forward_into};
use super::*;
use burn::tensor::{Device, Distribution, TensorData};
use std::mem::MaybeUninit;

#[test]
fn matches_burn_clamp_away_from_the_bounds() {
    let dev = Device::flex().autodiff();
    // Normal(3, 4): plenty below 0, inside and above 6; none exactly at a bound (checked).
    let x = Tensor::<4>::random([2, 5, 9, 11], Distribution::Normal(3.0, 4.0), &dev);
    let values = x.clone().into_data().try_to_vec::<f32>().unwrap();
    assert!(values.iter().all(|&v| v != 0.0 && v != 6.0));
    let r = Tensor::<4>::random([2, 5, 9, 11], Distribution::Normal(0.0, 1.0), &dev);
    let run = |fast: bool| {
        let x = x.clone().require_grad();
        let y = if fast {
            relu6(x.clone())
        } else {
            x.clone().clamp(0.0, 6.0)
        };
        let grads = (y.clone() * r.clone()).sum().backward();
        (y.inner(), x.grad(&grads).unwrap())
    };
    let ((y, dx), (y_ref, dx_ref)) = (run(true), run(false));
    y.into_data().assert_eq(&y_ref.into_data(), true);
    dx.into_data().assert_eq(&dx_ref.into_data(), true);
}

/// PyTorch (`F.relu6`, i.e. `F.hardtanh(x, 0, 6)`): `y = [0, 0, 0, 0.5, 6, 6, 6]` and, with
/// `dy = 1`, `dx = [0, 0, 0, 1, 0, 0, 0]` for `x = [-inf, -1, 0, 0.5, 6, 7, inf]`, in any rank.
#[test]
fn hand_values_at_the_bounds() {
    let dev = Device::flex().autodiff();
    let x = [f32::NEG_INFINITY, -1.0, 0.0, 0.5, 6.0, 7.0, f32::INFINITY];
    let x = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [1, 7]), &dev).require_grad();
    let y = relu6(x.clone());
    let grads = y.clone().sum().backward();
    y.inner().into_data().assert_eq(
        &TensorData::new(vec![0f32, 0.0, 0.0, 0.5, 6.0, 6.0, 6.0], [1, 7]),
        true,
    );
    x.grad(&grads).unwrap().into_data().assert_eq(
        &TensorData::new(vec![0f32, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0], [1, 7]),
        true,
    );
    // NaN: PyTorch's clamp keeps it, and neither `x <= 0` nor `x >= 6` holds for the gradient.
    let nan = relu6_forward_and_grad(f32::NAN, 2.0);
    assert!(nan.0.is_nan());
    assert_eq!(nan.1.to_bits(), 2f32.to_bits());
}

/// The path of the devices and dtypes the kernel does not take (`relu6_composed`, also batch
/// norm's fallback) has the same values and boundary gradient as the kernel, NaN included; Burn's
/// `clamp` would pass the gradient at 0 and 6.
#[test]
fn the_composed_path_has_the_kernels_boundary_gradient() {
    let dev = Device::flex().autodiff();
    let x = [
        f32::NEG_INFINITY,
        -1.0,
        0.0,
        0.5,
        6.0,
        7.0,
        f32::INFINITY,
        f32::NAN,
    ];
    let x = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [1, 8]), &dev).require_grad();
    let y = super::relu6_composed(x.clone());
    let grads = (y.clone() * 2.0).sum().backward();
    let y = y.inner().into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(&y[..7], &[0f32, 0.0, 0.0, 0.5, 6.0, 6.0, 6.0]);
    assert!(y[7].is_nan());
    let dx = x
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(dx, [0f32, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 2.0]);
}

fn relu6_forward_and_grad(x: f32, dy: f32) -> (f32, f32) {
    let y = kernel::relu6_forward(&[x])[0];
    (y, kernel::relu6_backward(&[dy], &[y])[0])
}

/// Without autodiff and on a strided view (a transpose).
#[test]
fn views_and_inference() {
    let dev = Device::flex();
    let x = Tensor::<3>::random([3, 4, 5], Distribution::Normal(3.0, 4.0), &dev).swap_dims(0, 2);
    relu6(x.clone())
        .into_data()
        .assert_eq(&x.clamp(0.0, 6.0).into_data(), true);
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// Both kernels into NaN-filled outputs give the same bits as into fresh ones, with 1 and 2
/// threads, on lengths around the chunk size.
#[test]
fn outputs_are_fully_written_and_thread_count_invariant() {
    for len in [1, 7, (1 << 14) - 1, 1 << 14, 3 * (1 << 14) + 5] {
        let x: Vec<f32> = (0..len)
            .map(|i| ((i * 7919) % 211) as f32 / 15.0 - 3.0)
            .collect();
        let dy: Vec<f32> = (0..len)
            .map(|i| ((i * 104_729) % 199) as f32 / 99.0 - 1.0)
            .collect();
        let run = |threads: usize, fill: f32| {
            pool(threads).install(|| {
                let mut y = vec![MaybeUninit::new(fill); len];
                relu6_forward_into(&x, &mut y);
                let mut dx = vec![MaybeUninit::new(fill); len];
                relu6_backward_into(&dy, &x, &mut dx);
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
        assert_eq!(one, run(1, f32::NAN), "{len}: NaN-poisoned outputs");
        assert_eq!(one, run(2, f32::NAN), "{len}: two threads");
    }
}
