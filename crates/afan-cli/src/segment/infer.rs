//! `afan infer --task segment`: one image in, a VOC-palette label PNG out.

use super::data::{NORMALIZE, to_tensors};
use super::eval::{load_run, predict_labels};
use afan_data::seg::{SegSample, read_rgb, to_batch, write_overlay_png, write_palette_png};
use anyhow::{Context, Result};
use burn::module::Module;
use burn::tensor::Device;
use std::path::Path;

/// Predicts the classes of `image` with the run at `checkpoint` and writes them to `out` (and,
/// if asked, the image tinted by class to `overlay`).
pub fn run(
    checkpoint: &Path,
    image: &Path,
    out: &Path,
    overlay: Option<&Path>,
    device: &Device,
) -> Result<()> {
    let (_, model) = load_run(checkpoint, device)?;
    let (rgb, width, height) = read_rgb(image)?;
    let sample = SegSample {
        width,
        height,
        mask: vec![0; width * height],
        rgb: rgb.clone(),
    };
    let (x, _) = to_tensors(to_batch(&[sample], NORMALIZE.0, NORMALIZE.1)?, device);
    let labels = predict_labels(&model.valid(), x)?;
    write_palette_png(out, &labels, width, height)
        .with_context(|| format!("cannot write {}", out.display()))?;
    if let Some(path) = overlay {
        write_overlay_png(path, &rgb, &labels, width, height, 0.5)?;
    }
    Ok(())
}
