//! Shared helpers for this crate's unit tests.

use burn::tensor::{Device, Tensor, TensorData};

/// The CPU, or the device `AFAN_TEST_DEVICE` names (these tests are backend-portable).
pub fn device() -> Device {
    crate::device::test_device()
}

pub fn tensor4(device: &Device, shape: [usize; 4], values: &[f32]) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}
