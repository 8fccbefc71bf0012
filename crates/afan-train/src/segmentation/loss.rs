//! The segmentation loss: `nn.CrossEntropyLoss(ignore_index=255)` on logits upsampled to the
//! labels' size, the mean over labelled pixels.

use afan_models::deeplab::upsample_bilinear;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Mean cross-entropy over pixels whose label is not 255; `logits` `[B, K, h, w]` at any
/// resolution (bilinearly upsampled, `align_corners=False`), `labels` `[B, H, W]`.
pub fn seg_cross_entropy(logits: Tensor<4>, labels: Tensor<3, Int>) -> Tensor<1> {
    let [b, h, w] = labels.dims();
    let logits = upsample_bilinear(logits, [h, w]);
    let valid = labels.clone().not_equal_elem(255);
    let safe = labels.mask_fill(valid.clone().bool_not(), 0);
    let log_p = log_softmax(logits, 1).gather(1, safe.reshape([b, 1, h, w]));
    // In the logits' type: half under mixed precision.
    let dtype = burn::tensor::FloatDType::from(log_p.dtype());
    let weight = valid.float().cast(dtype).reshape([b, 1, h, w]);
    let count = weight.clone().sum().clamp_min(1.0);
    (log_p * weight).sum().neg() / count
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn ignored_pixels_do_not_count() {
        let dev = Device::default();
        // 1 image, 2 classes, 1x3 pixels: logits (0, ln 3), (0, 0), (5, -5); labels 1, 0, 255.
        let l3 = 3f32.ln();
        let logits = Tensor::<4>::from_floats([[[[0.0, 0.0, 5.0]], [[l3, 0.0, -5.0]]]], &dev);
        let labels = Tensor::<3, Int>::from_data(TensorData::from([[[1i64, 0, 255]]]), &dev);
        // Pixel 0: -ln(3/4); pixel 1: ln 2; mean over the two labelled pixels.
        let expected = ((4.0f64 / 3.0).ln() + 2f64.ln()) / 2.0;
        let got = f64::from(seg_cross_entropy(logits, labels).into_scalar::<f32>());
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
    }
}
