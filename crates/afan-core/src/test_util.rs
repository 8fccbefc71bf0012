//! Shared helpers for this crate's unit tests.

use burn::tensor::{Device, Tensor, TensorData};

pub fn device() -> Device {
    Device::flex()
}

pub fn tensor4(device: &Device, shape: [usize; 4], values: &[f32]) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}
