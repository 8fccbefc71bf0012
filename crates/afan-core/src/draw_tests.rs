//! The draw scope: values a function of the seed and the draw's order alone, on any thread and
//! pool; masks and uniforms with the values they promise.

use super::*;
use crate::test_util::device;
use burn::tensor::DType;
use std::sync::Barrier;

fn host(t: Tensor<1>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Three draws of a scope of `seed`: two masks (one of several chunks) and a uniform.
fn three_draws(seed: u64, device: &Device) -> Vec<Vec<f32>> {
    let _scope = DrawScope::enter(seed);
    let like = Tensor::<1>::zeros([100], device);
    vec![
        host(keep_mask([100], (device, DType::F32), 0.5)),
        host(keep_mask([3 * CHUNK + 7], (device, DType::F32), 0.9)),
        host(uniform_like(&like, -2.0, 2.0)),
    ]
}

#[test]
fn a_scopes_draws_are_the_same_on_any_thread_whatever_draws_beside_it() {
    let device = device();
    let alone = three_draws(7, &device);
    // Two threads with scopes of their own start drawing at the same instant: each sees
    // exactly what it would have seen alone.
    let barrier = Barrier::new(2);
    let (a, b) = std::thread::scope(|s| {
        let run = |seed| {
            let device = device.clone();
            let barrier = &barrier;
            move || {
                barrier.wait();
                three_draws(seed, &device)
            }
        };
        let a = s.spawn(run(7));
        let b = s.spawn(run(8));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a, alone);
    assert_eq!(b, three_draws(8, &device));
    assert_ne!(a, b, "another seed draws other values");
    assert_ne!(alone[0], alone[2], "consecutive draws differ");
}

#[test]
fn values_do_not_depend_on_the_pool_that_generates_them() {
    let device = device();
    let in_pool = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| three_draws(11, &device))
    };
    assert_eq!(in_pool(1), in_pool(3));
}

#[test]
fn masks_keep_their_share_scaled_and_uniforms_fill_their_interval() {
    let device = device();
    let _scope = DrawScope::enter(3);
    let n = 100_000;
    let mask = host(keep_mask([n], (&device, DType::F32), 0.8));
    assert!(
        mask.iter().all(|&v| v == 0.0 || v == 1.25),
        "values 0 or 1/keep"
    );
    let kept = mask.iter().filter(|&&v| v > 0.0).count() as f64 / n as f64;
    // The kept share's standard deviation is sqrt(0.8 * 0.2 / n) = 0.0013.
    assert!((kept - 0.8).abs() < 0.006, "kept share {kept}");
    let like = Tensor::<1>::zeros([n], &device);
    let u = host(uniform_like(&like, -3.0, 1.0));
    assert!(u.iter().all(|&v| (-3.0..1.0).contains(&v)));
    let mean = u.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    // Mean -1, standard deviation of the mean 4 / sqrt(12 n) = 0.0037.
    assert!((mean + 1.0).abs() < 0.02, "mean {mean}");
    let below = u.iter().filter(|&&v| v < -2.0).count() as f64 / n as f64;
    assert!((below - 0.25).abs() < 0.01, "share below -2: {below}");
}

#[test]
fn a_draw_takes_the_dtype_and_shape_it_is_given() {
    let device = device();
    let _scope = DrawScope::enter(5);
    let mask = keep_mask([2, 3, 1, 4], (&device, DType::F16), 0.5);
    assert_eq!(mask.dims(), [2, 3, 1, 4]);
    assert_eq!(mask.dtype(), DType::F16);
    let values: Vec<f32> = mask
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(values.iter().all(|&v| v == 0.0 || v == 2.0));
}

#[test]
fn scopes_nest_and_restore_and_outside_them_the_backend_draws() {
    assert_eq!(next_key(), None, "no scope: the backend's generator");
    {
        let _outer = DrawScope::enter(1);
        assert_eq!(next_key(), Some((1, 0)));
        {
            let _inner = DrawScope::enter(2);
            assert_eq!(next_key(), Some((2, 0)));
            assert_eq!(next_key(), Some((2, 1)));
        }
        assert_eq!(
            next_key(),
            Some((1, 1)),
            "the outer scope goes on where it was"
        );
    }
    assert_eq!(next_key(), None);
    // Outside a scope the backend draws a mask of the same kind.
    let device = device();
    let mask = host(keep_mask([1000], (&device, DType::F32), 0.5));
    assert!(mask.iter().all(|&v| v == 0.0 || v == 2.0));
    assert!(mask.contains(&0.0) && mask.contains(&2.0));
}
