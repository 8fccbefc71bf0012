//! What `afan infer` writes for a detector (boxes, drawn images) and a DeepLab (masks,
//! overlays), from a checkpoint.

use afan_train::detection::DetectionTask;
use afan_train::segmentation::SegmentationTask;
use afan_train::{Checkpoint, Purpose, Task};
use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::Device;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Boxes of each image, drawn into `out` if given.
pub fn detection(
    c: Checkpoint,
    images: &[(PathBuf, String)],
    min_score: f32,
    out: Option<&Path>,
    json: bool,
    device: &Device,
) -> Result<()> {
    use afan_train::detection::infer::{ImageDetections, detect, draw, load_image};
    let config = c.config(&afan_train::detection::config::release(), &[])?;
    let names = c.class_names();
    let task = if names.is_empty() {
        DetectionTask::open(config, Purpose::Infer)?
    } else {
        DetectionTask::without_data(config, names)
    };
    let model = c.load_model(task.build_model(device, false)?)?.valid();
    let mut all = Vec::new();
    for (path, stem) in images {
        let image = load_image(path)?;
        let resize = task.config().task.resize;
        let boxes = detect(
            &model,
            &image,
            resize.as_ref(),
            task.class_names(),
            min_score,
            device,
        );
        if let Some(dir) = out {
            draw(&image, &boxes, &dir.join(format!("{stem}.png")))?;
        }
        all.push(ImageDetections {
            image: path.clone(),
            boxes,
        });
    }
    if json {
        println!("{}", serde_json::to_string(&all)?);
        return Ok(());
    }
    for d in &all {
        println!("{}: {} objects", d.image.display(), d.boxes.len());
        for b in &d.boxes {
            println!(
                "  {:<12} {:.3}  [{:.1}, {:.1}, {:.1}, {:.1}]",
                b.label, b.score, b.x1, b.y1, b.x2, b.y2
            );
        }
    }
    if let Some(dir) = out {
        println!("drawn into {}", dir.display());
    }
    Ok(())
}

/// The mask of each image (and its overlay) written into `out`.
pub fn segmentation(
    c: Checkpoint,
    images: &[(PathBuf, String)],
    out: Option<&Path>,
    overlay: bool,
    json: bool,
    device: &Device,
) -> Result<()> {
    let Some(dir) = out else {
        bail!("--task segmentation writes each image's mask into --out DIR; pass it");
    };
    let config = c.config(&afan_train::segmentation::config::release(), &[])?;
    let task = SegmentationTask::open(config, Purpose::Infer)?;
    let model = c.load_model(task.build_model(device, false)?)?.valid();
    let mut written = Vec::new();
    for (path, stem) in images {
        let mask = dir.join(format!("{stem}.png"));
        let overlay = overlay.then(|| dir.join(format!("{stem}.overlay.png")));
        afan_train::segmentation::infer::segment_image(
            &model,
            task.normalization(),
            path,
            &mask,
            overlay.as_deref(),
            device,
        )?;
        written.push(json!({"image": path, "mask": mask, "overlay": overlay}));
    }
    if json {
        println!("{}", serde_json::Value::Array(written));
    } else {
        eprintln!("wrote {} masks into {}", written.len(), dir.display());
    }
    Ok(())
}
