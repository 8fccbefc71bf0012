//! afan's max pool against Burn's `max_pool2d` on flex (values bit for bit, gradients through
//! autodiff), hand values for PyTorch's picks (first maximum, last NaN), and what those cannot
//! show: every output element written (outputs start as NaN) and results that do not depend on
//! the thread count.

use super::kernel::{max_pool2d_backward, max_pool2d_forward, max_pool2d_forward_into};
use super::*;
use burn::tensor::{Device, Distribution, Tolerance};
use std::mem::MaybeUninit;

/// `[N, C, H, W]` and the pool: the ResNet stem's (odd and even sizes), the RoI head's 2x2 (an
/// odd size drops the last row and column), a stride-1 "same" pool, a non-square one.
const CASES: [([usize; 4], Pool2d); 6] = [
    (
        [2, 3, 9, 11],
        Pool2d {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
        },
    ),
    (
        [1, 4, 8, 8],
        Pool2d {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
        },
    ),
    (
        [3, 4, 7, 7],
        Pool2d {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
        },
    ),
    (
        [2, 2, 6, 6],
        Pool2d {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
        },
    ),
    (
        [1, 3, 5, 6],
        Pool2d {
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
        },
    ),
    (
        [2, 2, 7, 9],
        Pool2d {
            kernel: [3, 2],
            stride: [2, 1],
            padding: [1, 0],
        },
    ),
];

fn burn_pool(x: Tensor<4>, pool: Pool2d) -> Tensor<4> {
    let options = MaxPoolOptions::new(pool.kernel)
        .with_stride(pool.stride)
        .with_padding_pairs([0, 1].map(|d| (pool.padding[d], pool.padding[d])));
    burn::tensor::module::max_pool2d(x, options)
}

#[test]
fn matches_burn_max_pool2d() {
    let dev = Device::flex().autodiff();
    for (dims, pool) in CASES {
        let x = Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &dev);
        let [oh, ow] = pool.out_hw([dims[2], dims[3]]);
        let r = Tensor::<4>::random([dims[0], dims[1], oh, ow], Distribution::Default, &dev);
        let run = |fast: bool| {
            let x = x.clone().require_grad();
            let y = if fast {
                max_pool2d(x.clone(), pool)
            } else {
                burn_pool(x.clone(), pool)
            };
            let grads = (y.clone() * r.clone()).sum().backward();
            (y.inner(), x.grad(&grads).unwrap())
        };
        let ((y, dx), (y_ref, dx_ref)) = (run(true), run(false));
        y.into_data().assert_eq(&y_ref.into_data(), true);
        // Overlapping windows add their gradients onto one input in another order.
        dx.into_data()
            .assert_approx_eq::<f32>(&dx_ref.into_data(), Tolerance::absolute(1e-6));
    }
}

/// PyTorch's picks, 2x2 windows at stride 1 over `[[1, 3, 3], [2, NaN, 0], [5, NaN, 4]]`: a NaN
/// wins, the later of two NaNs wins; over `[[3, 3], [3, 1]]` the first of equal maxima wins.
/// With `dy = 1` the gradient lands on the picks, summed where windows share one.
#[test]
fn picks_follow_pytorch() {
    let nan = f32::NAN;
    let x = [1.0, 3.0, 3.0, 2.0, nan, 0.0, 5.0, nan, 4.0];
    let pool = Pool2d {
        kernel: [2, 2],
        stride: [1, 1],
        padding: [0, 0],
    };
    let (y, idx) = max_pool2d_forward(&x, [1, 1, 3, 3], &pool, true);
    assert!(y.iter().all(|v| v.is_nan()));
    assert_eq!(idx.unwrap(), [4, 4, 7, 7]);
    let (y, idx) = max_pool2d_forward(&[3.0, 3.0, 3.0, 1.0], [1, 1, 2, 2], &pool, true);
    assert_eq!((y, idx.unwrap()), (vec![3.0], vec![0]));
    let dx = max_pool2d_backward(&[1.0, 2.0, 4.0, 8.0], &[4, 4, 7, 7], [1, 1, 3, 3]);
    assert_eq!(dx, [0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 12.0, 0.0]);
    // Padding is never picked: an all -inf map picks its first in-map element.
    let pool = Pool2d::square(3, 2, 1);
    let (y, idx) = max_pool2d_forward(&[f32::NEG_INFINITY; 4], [1, 1, 2, 2], &pool, true);
    assert_eq!((y, idx.unwrap()), (vec![f32::NEG_INFINITY], vec![0]));
}

/// Without autodiff and on a strided view (a transpose), and a pool the kernel does not take
/// (padding over half the window: Burn refuses it too, so a 2x2 pool on a 1x1 map instead).
#[test]
fn views_inference_and_other_pools() {
    let dev = Device::flex();
    let x = Tensor::<4>::random([2, 3, 9, 8], Distribution::Default, &dev).swap_dims(2, 3);
    let pool = Pool2d::square(3, 2, 1);
    max_pool2d(x.clone(), pool)
        .into_data()
        .assert_eq(&burn_pool(x, pool).into_data(), true);
    assert!(!Pool2d::square(2, 2, 0).applies([1, 1]));
    assert!(!Pool2d::square(2, 1, 2).applies([5, 5]));
}

fn threads(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
}

/// Values, picks and gradients into NaN-filled outputs give the same bits as into fresh ones,
/// with 1 and 2 threads.
#[test]
fn outputs_are_fully_written_and_thread_count_invariant() {
    for (dims, pool) in CASES {
        let len = dims.iter().product::<usize>();
        let x: Vec<f32> = (0..len)
            .map(|i| ((i * 7919) % 211) as f32 / 15.0 - 3.0)
            .collect();
        let [oh, ow] = pool.out_hw([dims[2], dims[3]]);
        let out = dims[0] * dims[1] * oh * ow;
        let run = |n: usize, fill: f32| {
            threads(n).install(|| {
                let mut y = vec![MaybeUninit::new(fill); out];
                let mut idx = vec![MaybeUninit::new(-7i64); out];
                max_pool2d_forward_into(&x, dims, &pool, &mut y, &mut []);
                // SAFETY: initialised by `vec!`, then (we check) overwritten.
                let y0: Vec<u32> = y
                    .iter()
                    .map(|v| unsafe { v.assume_init() }.to_bits())
                    .collect();
                max_pool2d_forward_into(&x, dims, &pool, &mut y, &mut idx);
                // SAFETY: as above.
                let y1: Vec<u32> = y
                    .iter()
                    .map(|v| unsafe { v.assume_init() }.to_bits())
                    .collect();
                let idx: Vec<i64> = idx.iter().map(|v| unsafe { v.assume_init() }).collect();
                let dy: Vec<f32> = (0..out).map(|i| (i % 13) as f32 - 6.0).collect();
                let dx: Vec<u32> = max_pool2d_backward(&dy, &idx, dims)
                    .iter()
                    .map(|v| v.to_bits())
                    .collect();
                (y0, y1, idx, dx)
            })
        };
        let one = run(1, 0.0);
        assert_eq!(one.0, one.1, "{dims:?}: with and without indices");
        assert!(one.0.iter().all(|b| !f32::from_bits(*b).is_nan()));
        assert!(one.2.iter().all(|&i| i >= 0));
        assert_eq!(one, run(1, f32::NAN), "{dims:?}: NaN-poisoned outputs");
        assert_eq!(one, run(2, f32::NAN), "{dims:?}: two threads");
    }
}
