//! What afan's own CPU kernels (convolution, batch norm) share about Burn's `flex` backend: whether
//! a device is flex, and moving contiguous `f32` data in and out of `FlexTensor`s.

use burn::tensor::Device;

/// Whether `device` is the `flex` backend (with or without autodiff), where afan's kernels run.
#[cfg(feature = "flex")]
pub(crate) fn is_flex(device: &Device) -> bool {
    use burn::backend::DispatchDevice;
    matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}

/// Without the `flex` feature no device runs afan's kernels.
#[cfg(not(feature = "flex"))]
pub(crate) fn is_flex(_: &Device) -> bool {
    false
}

#[cfg(feature = "flex")]
pub(crate) use tensors::*;

#[cfg(feature = "flex")]
mod tensors {
    use burn::backend::TensorMetadata;
    use burn::backend::flex::FlexTensor;
    use burn::tensor::{Shape, TensorData};

    /// The four dimensions of an NCHW (or `[K, C, kh, kw]`) tensor.
    pub(crate) fn dims4(t: &FlexTensor) -> [usize; 4] {
        let shape = t.shape();
        [shape[0], shape[1], shape[2], shape[3]]
    }

    /// A contiguous `f32` tensor of `shape` owning `values` (no copy).
    pub(crate) fn flex_tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(values, Shape::from(shape)))
    }

    /// Plain contiguous storage, which the kernels index directly (views are copied once).
    pub(crate) fn contiguous(t: FlexTensor) -> FlexTensor {
        if t.is_contiguous() && t.layout().start_offset() == 0 {
            t
        } else {
            t.to_contiguous()
        }
    }
}
