//! Boxes of image files, in original-image pixels, and the images drawn with them.

use super::model::images;
use crate::error::{Result, TrainError};
use afan_data::detection::sample::decode_rgb;
use afan_data::detection::transforms::{ResizeConfig, resize};
use afan_data::detection::{DetectionSample, batch::collate};
use afan_models::FasterRcnn;
use burn::tensor::Device;
use plotters::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One detected object, in original-image pixels.
#[derive(Clone, Debug, Serialize)]
pub struct DetectedBox {
    /// Class index (0-based).
    pub class: usize,
    /// Class name.
    pub label: String,
    /// Confidence.
    pub score: f32,
    /// Left.
    pub x1: f32,
    /// Top.
    pub y1: f32,
    /// Right.
    pub x2: f32,
    /// Bottom.
    pub y2: f32,
}

/// The objects of one image.
#[derive(Clone, Debug, Serialize)]
pub struct ImageDetections {
    /// The file.
    pub image: PathBuf,
    /// Its objects, most confident first.
    pub boxes: Vec<DetectedBox>,
}

/// The decoded image, as a sample without objects.
pub fn load_image(path: &Path) -> Result<DetectionSample> {
    let (pixels, height, width) = decode_rgb(path)?;
    Ok(DetectionSample {
        pixels,
        height,
        width,
        boxes: vec![],
        labels: vec![],
        image_id: 0,
        scale: 1.0,
    })
}

/// The boxes `model` finds in `image` (resized as the run's evaluation resizes), scores at
/// least `min_score`, named by `class_names`.
pub fn detect(
    model: &FasterRcnn,
    image: &DetectionSample,
    resize_to: Option<&ResizeConfig>,
    class_names: &[String],
    min_score: f32,
    device: &Device,
) -> Vec<DetectedBox> {
    // On a worker of rayon's pool, as the training step (afan_models::on_pool).
    afan_models::on_pool(|| {
        let sample = match resize_to {
            Some(r) => resize(image.clone(), r),
            None => image.clone(),
        };
        let scale = sample.scale as f32;
        let batch = collate(vec![sample], 16);
        let (x, sizes) = images(&batch, device);
        let det = model.detect(x, &sizes).remove(0);
        det.boxes
            .iter()
            .zip(&det.scores)
            .zip(&det.labels)
            .filter(|((_, s), _)| **s >= min_score)
            .map(|((b, &score), &l)| DetectedBox {
                class: l - 1,
                label: class_names
                    .get(l - 1)
                    .cloned()
                    .unwrap_or_else(|| format!("class{}", l - 1)),
                score,
                x1: b[0] / scale,
                y1: b[1] / scale,
                x2: b[2] / scale,
                y2: b[3] / scale,
            })
            .collect()
    })
}

const COLOURS: [RGBColor; 6] = [RED, GREEN, BLUE, CYAN, MAGENTA, YELLOW];

/// The image with a rectangle and a `label score` caption per box, as PNG.
pub fn draw(image: &DetectionSample, boxes: &[DetectedBox], path: &Path) -> Result<()> {
    crate::plot::register_font();
    let (w, h) = (image.width, image.height);
    let mut rgb = vec![0u8; 3 * w * h];
    for (i, px) in rgb.chunks_mut(3).enumerate() {
        for (c, v) in px.iter_mut().enumerate() {
            *v = (image.pixels[c * w * h + i] * 255.0).round() as u8;
        }
    }
    let paint = |rgb: &mut [u8]| -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::with_buffer(rgb, (w as u32, h as u32)).into_drawing_area();
        let font_size = (h.min(w) as f64 / 25.0).clamp(8.0, 20.0);
        for b in boxes {
            let colour = COLOURS[b.class % COLOURS.len()];
            let (x1, y1) = (b.x1.round() as i32, b.y1.round() as i32);
            let (x2, y2) = (b.x2.round() as i32, b.y2.round() as i32);
            root.draw(&Rectangle::new(
                [(x1, y1), (x2, y2)],
                colour.stroke_width(2),
            ))?;
            let style = ("sans-serif", font_size).into_font().color(&colour);
            root.draw(&Text::new(
                format!("{} {:.2}", b.label, b.score),
                (x1 + 2, y1 + 2),
                style,
            ))?;
        }
        root.present()?;
        Ok(())
    };
    paint(&mut rgb).map_err(|e| TrainError::Config(format!("cannot draw boxes: {e}")))?;
    image::save_buffer(
        path,
        &rgb,
        w as u32,
        h as u32,
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| TrainError::Config(format!("cannot write {}: {e}", path.display())))
}
