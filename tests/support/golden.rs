//! Comparison of afan's f32 results with PyTorch's float64 references, shared by the golden tests.

#![allow(dead_code)] // each test file uses the part it needs

use afan_models::StateDict;
use burn::tensor::{Device, Tensor, TensorData};

/// The fixture tensor `key` on `device`.
pub fn tensor<const D: usize>(dict: &StateDict, key: &str, device: &Device) -> Tensor<D> {
    let (values, shape) = dict
        .get(key)
        .unwrap_or_else(|| panic!("fixture lacks {key}"));
    Tensor::from_data(TensorData::new(values.to_vec(), shape.to_vec()), device)
}

/// A tensor's values on the host.
pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// Every element within `rel * (|want| + 0.1 * max|want|)`: relative for the elements of the size
/// of the tensor, absolute (relative to the tensor's scale) for those near zero, where f32
/// against PyTorch's f64 can only agree absolutely.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], rel: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let floor = 0.1 * want.iter().fold(0f32, |m, v| m.max(v.abs())) + f32::MIN_POSITIVE;
    let (mut worst, mut at) = (0.0f32, 0);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let e = (g - w).abs() / (w.abs() + floor);
        if e > worst {
            (worst, at) = (e, i);
        }
    }
    if std::env::var_os("GOLDEN_VERBOSE").is_some() {
        eprintln!("{what}: worst relative error {worst:e}");
    }
    assert!(
        worst <= rel,
        "{what}: element {at} is {} but PyTorch has {} (relative error {worst:e} > {rel:e})",
        got[at],
        want[at]
    );
}

/// A feature after sign steps: every element within 1e-5 of PyTorch's, except where PyTorch's first
/// gradient is ~0 (|g| < 1e-9) and f32 rounding may pick the other sign; such elements must differ
/// by whole steps, and be rare (under 1 in 1000).
pub fn assert_sign_steps_close(what: &str, got: &[f32], want: &[f32], grad0: &[f32], step: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut flipped = 0;
    for (i, (a, r)) in got.iter().zip(want).enumerate() {
        if (a - r).abs() > 1e-5 {
            assert!(
                grad0[i].abs() < 1e-9,
                "{what} {i}: {a} vs {r} with gradient {}",
                grad0[i]
            );
            let steps = (a - r).abs() / step;
            assert!(
                (steps - steps.round()).abs() < 1e-2,
                "{what} {i} differs by {steps} steps"
            );
            flipped += 1;
        }
    }
    assert!(flipped * 1000 < got.len(), "{what}: {flipped} sign flips");
}

/// A feature after several sign steps: every element within 1e-5 of PyTorch's, or a whole number
/// of steps away in under 1 element of 200. Where a later step's gradient is within f32 rounding
/// of zero the sign may go either way, and the first gradient (see [`assert_sign_steps_close`])
/// cannot show which elements those are; what such a flip does downstream is bounded by the
/// tests of the losses and gradients that follow.
pub fn assert_steps_close(what: &str, got: &[f32], want: &[f32], step: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut flipped = 0;
    for (i, (a, r)) in got.iter().zip(want).enumerate() {
        if (a - r).abs() > 1e-5 {
            let steps = (a - r).abs() / step;
            assert!(
                (steps - steps.round()).abs() < 1e-2,
                "{what} {i}: {a} vs {r}, {steps} steps apart"
            );
            flipped += 1;
        }
    }
    assert!(flipped * 200 < got.len(), "{what}: {flipped} sign flips");
}
