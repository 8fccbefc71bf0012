//! Comparison of afan's f32 results with PyTorch's float64 references, shared by the golden tests.

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
