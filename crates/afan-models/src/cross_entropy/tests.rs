//! afan's cross-entropy against Burn's `log_softmax` + `gather` path (values and gradients, with
//! ignored pixels), hand values, and what those cannot show: every gradient element written
//! (outputs start as NaN), results that do not depend on the thread count, refused labels.

use super::kernel::{PixelLogits, cross_entropy_backward_into, cross_entropy_forward};
use super::*;
use burn::tensor::{Device, Distribution, TensorData};
use std::mem::MaybeUninit;

fn labels(values: Vec<i64>, shape: [usize; 3], dev: &Device) -> Tensor<3, Int> {
    Tensor::from_data(TensorData::new(values, shape), dev)
}

/// Loss and logits' gradient of `pixel_cross_entropy` (or Burn's path), times `scale`.
fn loss_and_grad(
    logits: &Tensor<4>,
    y: &Tensor<3, Int>,
    fast: bool,
    scale: f32,
) -> (f32, Vec<f32>) {
    let x = logits.clone().require_grad();
    let loss = if fast {
        pixel_cross_entropy(x.clone(), y.clone(), 255)
    } else {
        burn_pixel_cross_entropy(x.clone(), y.clone(), 255)
    };
    let grads = (loss.clone() * scale).backward();
    let dx = x
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    (loss.into_scalar::<f32>(), dx)
}

#[test]
fn matches_burns_log_softmax_and_gather() {
    let dev = Device::flex().autodiff();
    let [b, k, h, w] = [2, 5, 7, 9];
    let x = Tensor::<4>::random([b, k, h, w], Distribution::Normal(0.0, 3.0), &dev);
    // Every fourth pixel ignored, the others cycling through the classes.
    let y: Vec<i64> = (0..b * h * w)
        .map(|i| if i % 4 == 3 { 255 } else { (i * 7 % k) as i64 })
        .collect();
    let y = labels(y, [b, h, w], &dev);
    let (loss, dx) = loss_and_grad(&x, &y, true, 1.7);
    let (loss_ref, dx_ref) = loss_and_grad(&x, &y, false, 1.7);
    assert!(
        (loss - loss_ref).abs() <= 1e-5 * loss_ref.abs(),
        "{loss} vs {loss_ref}"
    );
    for (i, (a, r)) in dx.iter().zip(&dx_ref).enumerate() {
        assert!((a - r).abs() <= 1e-6, "dx[{i}]: {a} vs {r}");
    }
    // Ignored pixels get no gradient in any class.
    assert!((0..k).all(|c| dx[c * h * w + 3] == 0.0));
}

/// One image, 2 classes, 1x3 pixels: logits (0, ln 3), (0, 0), (5, -5), labels 1, 0, 255.
/// Loss: (-ln(3/4) + ln 2) / 2. Gradient (softmax - one-hot) / 2: pixel 0 (1/8, -1/8), pixel 1
/// (-1/4, 1/4), pixel 2 (ignored) 0.
#[test]
fn hand_values() {
    let dev = Device::flex().autodiff();
    let l3 = 3f32.ln();
    let x = Tensor::<4>::from_floats([[[[0.0, 0.0, 5.0]], [[l3, 0.0, -5.0]]]], &dev);
    let y = labels(vec![1, 0, 255], [1, 1, 3], &dev);
    let (loss, dx) = loss_and_grad(&x, &y, true, 1.0);
    let expected = (((4.0f64 / 3.0).ln() + 2f64.ln()) / 2.0) as f32;
    assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
    let dx_expected = [0.125, -0.25, 0.0, -0.125, 0.25, 0.0];
    for (i, (a, e)) in dx.iter().zip(dx_expected).enumerate() {
        assert!((a - e).abs() < 1e-6, "dx[{i}]: {a} vs {e}");
    }
}

#[test]
fn no_labelled_pixel_gives_zero_and_no_gradient() {
    let dev = Device::flex().autodiff();
    let x = Tensor::<4>::random([1, 3, 2, 2], Distribution::Normal(0.0, 1.0), &dev);
    let y = labels(vec![255; 4], [1, 2, 2], &dev);
    let (loss, dx) = loss_and_grad(&x, &y, true, 1.0);
    assert_eq!(loss, 0.0);
    assert!(dx.iter().all(|&g| g == 0.0), "{dx:?}");
}

#[test]
fn a_nan_logit_makes_the_loss_nan() {
    let dev = Device::flex().autodiff();
    let x = Tensor::<4>::from_floats([[[[0.0, f32::NAN]], [[1.0, 2.0]]]], &dev);
    let y = labels(vec![0, 1], [1, 1, 2], &dev);
    assert!(loss_and_grad(&x, &y, true, 1.0).0.is_nan());
}

#[test]
#[should_panic(expected = "label 7 at image 1, pixel (0, 2): expected a class 0..3")]
fn a_label_outside_the_classes_is_refused_naming_it() {
    let dev = Device::flex();
    let x = Tensor::<4>::zeros([2, 3, 2, 3], &dev);
    let y = labels(vec![0, 1, 2, 255, 0, 1, 0, 1, 7, 0, 0, 0], [2, 2, 3], &dev);
    let _ = pixel_cross_entropy(x, y, 255);
}

/// Several images, a pixel count that is not a multiple of the forward's chunk, classes that do
/// not divide anything: the loss and the gradient are the same bits in 1- and 3-thread pools, and
/// the backward writes every element of a NaN-filled output.
#[test]
fn results_do_not_depend_on_thread_count_and_every_element_is_written() {
    let shape = PixelLogits {
        images: 3,
        classes: 7,
        pixels: 1100,
    };
    let n = shape.images * shape.classes * shape.pixels;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 9.0)
        .collect();
    let y: Vec<i64> = (0..shape.images * shape.pixels)
        .map(|i| if i % 5 == 0 { 255 } else { (i * 3 % 7) as i64 })
        .collect();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let fwd = cross_entropy_forward(shape, &x, &y, 255);
            let mut dx = vec![MaybeUninit::new(f32::NAN); n];
            cross_entropy_backward_into(shape, 0.5, &x, &fwd.lse, &y, 255, &mut dx);
            let dx: Vec<f32> = dx.iter().map(|v| unsafe { v.assume_init() }).collect();
            (fwd.loss, fwd.labelled, dx)
        })
    };
    let (one, three) = (run(1), run(3));
    assert!(one.0.is_finite() && one.0 > 0.0, "loss {}", one.0);
    assert_eq!(one.1, shape.images * shape.pixels * 4 / 5);
    assert!(
        one.2.iter().all(|v| v.is_finite()),
        "an element left unwritten"
    );
    assert_eq!(one.0.to_bits(), three.0.to_bits());
    assert!(
        one.2
            .iter()
            .zip(&three.2)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}
