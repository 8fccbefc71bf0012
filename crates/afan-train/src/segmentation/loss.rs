//! The segmentation loss: `nn.CrossEntropyLoss(ignore_index=255)` on logits upsampled to the
//! labels' size, the mean over labelled pixels.

use afan_models::cross_entropy::pixel_cross_entropy;
use afan_models::deeplab::upsample_bilinear;
use burn::tensor::{Int, Tensor};

/// Mean cross-entropy over pixels whose label is not 255; `logits` `[B, K, h, w]` at any
/// resolution (bilinearly upsampled, `align_corners=False`), `labels` `[B, H, W]`.
pub fn seg_cross_entropy(logits: Tensor<4>, labels: Tensor<3, Int>) -> Tensor<1> {
    let [_, h, w] = labels.dims();
    pixel_cross_entropy(upsample_bilinear(logits, [h, w]), labels, 255)
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
