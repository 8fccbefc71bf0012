//! afan's RoIAlign kernels against the weight-matrix product the other backends run (forward and
//! input gradient, through autodiff, on random features and boxes of every kind: inside, across
//! the edge, outside, tiny, several images out of order), and what that reference cannot show:
//! every output element written (outputs start as NaN), and results that do not depend on the
//! thread count. torchvision's values are checked in `roi_align_tests.rs`.

use super::kernel::{RoiSamples, roi_align_backward_into, roi_align_forward_into};
use super::{Roi, RoiPoolConfig, align_by_matrix};
use burn::tensor::{Device, Distribution, Tensor, Tolerance};
use std::mem::MaybeUninit;

/// Boxes in input pixels on a 12x15 map at scale 1/16 (192x240 pixels).
fn rois() -> Vec<Roi> {
    vec![
        (1, [10.0, 20.0, 150.0, 90.0]),
        (0, [0.0, 0.0, 239.0, 191.0]),
        (0, [-40.0, -30.0, 60.0, 50.0]),
        (1, [230.0, 180.0, 300.0, 260.0]),
        (0, [100.0, 100.0, 101.0, 101.5]),
        (2, [33.3, 47.7, 180.2, 121.9]),
        (1, [500.0, 500.0, 600.0, 600.0]),
    ]
}

fn configs() -> Vec<RoiPoolConfig> {
    let c = |output_size, sampling_ratio, aligned| RoiPoolConfig {
        output_size,
        sampling_ratio,
        aligned,
        ..RoiPoolConfig::default()
    };
    vec![
        c([7, 7], 0, false),
        c([14, 14], 0, false),
        c([3, 5], 2, true),
        c([1, 1], 1, false),
    ]
}

#[test]
fn gather_kernel_matches_the_weight_matrix_product() {
    let dev = Device::flex().autodiff();
    for config in configs() {
        let x = Tensor::<4>::random([3, 6, 12, 15], Distribution::Normal(0.0, 1.0), &dev);
        let run = |fast: bool| {
            let x = x.clone().require_grad();
            let out = if fast {
                config.forward(x.clone(), &rois())
            } else {
                let s = RoiSamples::new(&config.align_params(), &rois(), [3, 12, 15]);
                align_by_matrix(x.clone(), &s)
            };
            let r = Tensor::<4>::ones(out.dims(), &dev).cumsum(3).cumsum(1) / 7.0;
            let grads = (out.clone() * r).sum().backward();
            (out.inner(), x.grad(&grads).unwrap())
        };
        let ((y, dx), (y_ref, dx_ref)) = (run(true), run(false));
        let what = format!("{config:?}");
        assert_eq!(y.dims(), y_ref.dims(), "{what}");
        let tol = Tolerance::rel_abs(1e-5, 1e-5);
        y.into_data()
            .assert_approx_eq::<f32>(&y_ref.into_data(), tol);
        dx.into_data()
            .assert_approx_eq::<f32>(&dx_ref.into_data(), tol);
    }
}

/// Deterministic values in `[-1, 1]`.
fn values(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 211) as f32 / 105.0 - 1.0)
        .collect()
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// Both kernels into NaN-filled outputs (a reused buffer holding garbage) give the same as into
/// fresh ones, with 1 and 3 threads, bit for bit.
#[test]
fn outputs_are_fully_written_and_thread_count_invariant() {
    // 70 channels: three channel blocks of the backward scatter, the last one partial.
    let (b, c, h, w) = (3, 70, 12, 15);
    let x = values(b * c * h * w);
    for config in configs() {
        let s = RoiSamples::new(&config.align_params(), &rois(), [b, h, w]);
        let dy = values(s.len() * c * s.bins());
        let run = |threads: usize, fill: f32| {
            pool(threads).install(|| {
                let mut y = vec![MaybeUninit::new(fill); s.len() * c * s.bins()];
                roi_align_forward_into(&s, &x, c, &mut y);
                let mut dx = vec![MaybeUninit::new(fill); x.len()];
                roi_align_backward_into(&s, &dy, c, &mut dx);
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
                .all(|b| !f32::from_bits(*b).is_nan()),
            "{config:?}"
        );
        assert_eq!(one, run(1, f32::NAN), "{config:?}: NaN-poisoned outputs");
        assert_eq!(one, run(3, f32::NAN), "{config:?}: three threads");
    }
}

/// Regions outside the map and empty region lists give zeros, not NaN or a panic.
#[test]
fn outside_and_empty_regions_pool_to_zero() {
    let dev = Device::flex().autodiff();
    let x = Tensor::<4>::random([1, 2, 4, 4], Distribution::Normal(0.0, 1.0), &dev).require_grad();
    let config = RoiPoolConfig::default();
    let out = config.forward(x.clone(), &[(0, [1000.0, 1000.0, 1100.0, 1100.0])]);
    assert_eq!(out.dims(), [1, 2, 7, 7]);
    assert!(out.clone().into_data().iter::<f32>().all(|v| v == 0.0));
    let grads = out.sum().backward();
    assert!(
        x.grad(&grads)
            .unwrap()
            .into_data()
            .iter::<f32>()
            .all(|v| v == 0.0)
    );
    let none = config.forward(x, &[]);
    assert_eq!(none.dims(), [0, 2, 7, 7]);
}
