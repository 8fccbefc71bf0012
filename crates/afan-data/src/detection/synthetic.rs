//! `shapes-det`: the embedded detection dataset, drawn in-process.
//!
//! Like `shapes10` for classification, it lets the detector train and be evaluated
//! with no download. Each 64x64 image holds one to three filled shapes (circle,
//! square, upward triangle, plus-shaped cross) of 12-32 pixels, in random colours
//! brighter than a random background (by at least [`MIN_CONTRAST`]), over mild
//! per-pixel noise. Shapes overlap at most slightly (box IoU <= 0.2), so every
//! object is visible. Boxes are the shapes' exact geometric extent. Every image
//! has its own generator seeded by `(seed, split, index)`.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::boxes::BoxXyxy;
use super::eval::coco_eval::{CocoGroundTruth, GtBox};
use super::record::DetectionRecord;
use super::sample::DetectionSample;
use crate::seed::{rng_for, tag};

/// Class names of `shapes-det`, in label order.
pub const SHAPES_DET_CLASSES: [&str; 4] = ["circle", "square", "triangle", "cross"];

/// Side of the square images.
pub const SHAPES_DET_SIDE: usize = 64;

/// Minimum brightness (0..255) of a shape over its background.
pub const MIN_CONTRAST: f32 = 70.0;

const NOISE: f32 = 8.0;

/// Draws `num_train` training and `num_test` test images (independent streams).
/// Same seed, same pixels.
pub fn shapes_det(
    num_train: usize,
    num_test: usize,
    seed: u64,
) -> (Vec<DetectionSample>, Vec<DetectionSample>) {
    (generate(num_train, seed, 0), generate(num_test, seed, 1))
}

fn generate(n: usize, seed: u64, split: u64) -> Vec<DetectionSample> {
    (0..n)
        .into_par_iter()
        .map(|i| {
            draw(
                &mut rng_for(&[tag::DETECTION_SHAPES, seed, split, i as u64]),
                i as u64,
            )
        })
        .collect()
}

/// Is pixel centre `(x, y)` inside shape `label` drawn in box `b`?
fn inside(label: usize, b: &BoxXyxy, x: f64, y: f64) -> bool {
    if x < b.x1 || x >= b.x2 || y < b.y1 || y >= b.y2 {
        return false;
    }
    let (u, v) = ((x - b.x1) / b.width(), (y - b.y1) / b.height());
    match label {
        0 => (u - 0.5).powi(2) + (v - 0.5).powi(2) <= 0.25,
        1 => true,
        2 => (u - 0.5).abs() <= v / 2.0,
        _ => (u - 0.5).abs() <= 1.0 / 6.0 || (v - 0.5).abs() <= 1.0 / 6.0,
    }
}

fn draw(rng: &mut ChaCha8Rng, image_id: u64) -> DetectionSample {
    let side = SHAPES_DET_SIDE;
    let mut boxes: Vec<BoxXyxy> = Vec::new();
    let mut labels = Vec::new();
    let count = rng.random_range(1..=3);
    for _ in 0..50 {
        if boxes.len() == count {
            break;
        }
        let s = rng.random_range(12..=32) as f64;
        let x = rng.random_range(0..=side - s as usize) as f64;
        let y = rng.random_range(0..=side - s as usize) as f64;
        let b = BoxXyxy::new(x, y, x + s, y + s);
        if boxes.iter().all(|o| o.iou(&b) <= 0.2) {
            boxes.push(b);
            labels.push(rng.random_range(0..SHAPES_DET_CLASSES.len()));
        }
    }
    let bg: [f32; 3] = std::array::from_fn(|_| rng.random_range(0.0..120.0));
    let colours: Vec<[f32; 3]> = labels
        .iter()
        .map(|_| {
            std::array::from_fn(|c| (bg[c] + rng.random_range(MIN_CONTRAST..135.0)).min(255.0))
        })
        .collect();
    let mut pixels = vec![0f32; 3 * side * side];
    for y in 0..side {
        for x in 0..side {
            let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
            // Later shapes are drawn on top.
            let colour = boxes
                .iter()
                .zip(&labels)
                .zip(&colours)
                .filter(|((b, l), _)| inside(**l, b, px, py))
                .map(|(_, c)| c)
                .next_back()
                .unwrap_or(&bg);
            for c in 0..3 {
                let v = colour[c] + rng.random_range(-NOISE..=NOISE);
                pixels[(c * side + y) * side + x] = v.clamp(0.0, 255.0) / 255.0;
            }
        }
    }
    DetectionSample {
        pixels,
        height: side,
        width: side,
        boxes,
        labels,
        image_id,
        scale: 1.0,
    }
}

/// Ground-truth records of generated samples, for [`super::eval::voc_map()`].
pub fn records_of(samples: &[DetectionSample]) -> Vec<DetectionRecord> {
    samples
        .iter()
        .map(|s| DetectionRecord {
            image: Default::default(),
            image_id: s.image_id,
            width: s.width as u32,
            height: s.height as u32,
            boxes: s.boxes.clone(),
            labels: s.labels.clone(),
            difficult: vec![false; s.boxes.len()],
            crowd: vec![],
        })
        .collect()
}

/// COCO-style ground truth of generated samples (category id = label + 1, area = box
/// area), for [`super::eval::coco_evaluate`].
pub fn coco_ground_truth(samples: &[DetectionSample], num_classes: usize) -> CocoGroundTruth {
    CocoGroundTruth {
        image_ids: samples.iter().map(|s| s.image_id).collect(),
        category_ids: (1..=num_classes as u64).collect(),
        annotations: samples
            .iter()
            .flat_map(|s| {
                s.boxes.iter().zip(&s.labels).map(|(b, &l)| GtBox {
                    image_id: s.image_id,
                    category_id: l as u64 + 1,
                    bbox: b.to_xywh(),
                    area: b.area(),
                    iscrowd: false,
                })
            })
            .collect(),
    }
}

#[cfg(test)]
#[path = "synthetic_tests.rs"]
mod tests;
