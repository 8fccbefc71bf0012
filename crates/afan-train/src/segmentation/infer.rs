//! One image in, its per-pixel classes out: a VOC-palette label PNG and, if asked, the photo
//! tinted by class.

use super::data::to_tensors;
use super::evaluate::predict_labels;
use crate::error::{Result, TrainError};
use afan_data::segmentation::{
    SegSample, read_rgb, to_batch, write_overlay_png, write_palette_png,
};
use afan_models::DeepLabV3Plus;
use burn::tensor::Device;
use std::path::Path;

/// Predicts the classes of `image` (normalized by `norm`: mean, deviation) and writes them to
/// `mask` (and the image tinted by class to `overlay`).
pub fn segment_image(
    model: &DeepLabV3Plus,
    norm: ([f32; 3], [f32; 3]),
    image: &Path,
    mask: &Path,
    overlay: Option<&Path>,
    device: &Device,
) -> Result<()> {
    // On a worker of rayon's pool, as the training step (afan_models::on_pool).
    afan_models::on_pool(|| {
        let (rgb, width, height) = read_rgb(image)?;
        let sample = SegSample {
            width,
            height,
            mask: vec![0; width * height],
            rgb: rgb.clone(),
        };
        let (x, _) = to_tensors(to_batch(&[sample], norm.0, norm.1)?, device);
        let labels = predict_labels(model, x)?;
        write_palette_png(mask, &labels, width, height)
            .map_err(|e| TrainError::Config(format!("cannot write {}: {e}", mask.display())))?;
        if let Some(path) = overlay {
            write_overlay_png(path, &rgb, &labels, width, height, 0.5)?;
        }
        Ok(())
    })
}
