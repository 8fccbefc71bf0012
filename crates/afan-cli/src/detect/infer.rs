//! `afan infer --task detect`: boxes of one image as text or JSON, and an annotated PNG.

use super::eval::eval_loader;
use super::model::{build, images, load};
use afan_data::detection::sample::decode_rgb;
use afan_data::detection::transforms::resize;
use afan_data::detection::{DetectionSample, batch::collate};
use anyhow::{Context, Result};
use plotters::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// `afan infer --task detect` arguments.
#[derive(clap::Args, Debug)]
pub struct DetInferArgs {
    /// A detection checkpoint.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The image (JPEG or PNG).
    #[arg(long)]
    pub image: PathBuf,
    /// Write the image with its boxes to this PNG.
    #[arg(long)]
    pub draw: Option<PathBuf>,
    /// Report boxes with a score at least this (the model's own threshold applies first).
    #[arg(long, default_value_t = 0.0)]
    pub min_score: f32,
    /// Backend device.
    #[arg(long, env = "BURN_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

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

/// Runs the detector of a checkpoint on one image.
pub fn run(args: DetInferArgs) -> Result<()> {
    let device = crate::device::parse_device(&args.device)?;
    let ckpt = load(&args.checkpoint)?;
    let mut config = ckpt.state.config.clone();
    config.weights = None;
    let model =
        crate::checkpoint::load_record(build(&config, &device)?, ckpt.model, &args.checkpoint)?;
    let (pixels, height, width) = decode_rgb(&args.image)?;
    let original = DetectionSample {
        pixels,
        height,
        width,
        boxes: vec![],
        labels: vec![],
        image_id: 0,
        scale: 1.0,
    };
    let loader = eval_loader(&config);
    let sample = match &loader.resize {
        Some(r) => resize(original.clone(), r),
        None => original.clone(),
    };
    let scale = sample.scale as f32;
    let batch = collate(vec![sample], loader.size_divisibility);
    let (x, sizes) = images(&batch, &device);
    let det = model.detect(x, &sizes).remove(0);
    let names = &ckpt.state.class_names;
    let boxes: Vec<DetectedBox> = det
        .boxes
        .iter()
        .zip(&det.scores)
        .zip(&det.labels)
        .filter(|((_, s), _)| **s >= args.min_score)
        .map(|((b, &score), &l)| DetectedBox {
            class: l - 1,
            label: names
                .get(l - 1)
                .cloned()
                .unwrap_or_else(|| format!("class{}", l - 1)),
            score,
            x1: b[0] / scale,
            y1: b[1] / scale,
            x2: b[2] / scale,
            y2: b[3] / scale,
        })
        .collect();
    if let Some(path) = &args.draw {
        draw(&original, &boxes, path)?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({"image": args.image, "boxes": boxes})
        );
    } else {
        println!("{}: {} objects", args.image.display(), boxes.len());
        for b in &boxes {
            println!(
                "  {:<12} {:.3}  [{:.1}, {:.1}, {:.1}, {:.1}]",
                b.label, b.score, b.x1, b.y1, b.x2, b.y2
            );
        }
        if let Some(p) = &args.draw {
            println!("drawn to {}", p.display());
        }
    }
    Ok(())
}

const COLOURS: [RGBColor; 6] = [RED, GREEN, BLUE, CYAN, MAGENTA, YELLOW];

/// The image with a rectangle and a `label score` caption per box, as PNG.
fn draw(image: &DetectionSample, boxes: &[DetectedBox], path: &Path) -> Result<()> {
    crate::metrics::register_font();
    let (w, h) = (image.width, image.height);
    let mut rgb = vec![0u8; 3 * w * h];
    for (i, px) in rgb.chunks_mut(3).enumerate() {
        for (c, v) in px.iter_mut().enumerate() {
            *v = (image.pixels[c * w * h + i] * 255.0).round() as u8;
        }
    }
    let paint = |rgb: &mut [u8]| -> Result<(), Box<dyn std::error::Error>> {
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
    paint(&mut rgb).map_err(|e| anyhow::anyhow!("cannot draw boxes: {e}"))?;
    image::save_buffer(
        path,
        &rgb,
        w as u32,
        h as u32,
        image::ExtendedColorType::Rgb8,
    )
    .with_context(|| format!("cannot write {}", path.display()))
}
