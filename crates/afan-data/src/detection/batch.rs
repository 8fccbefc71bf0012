//! Detection batches: aspect-ratio grouping, per-image transforms, zero padding.
//!
//! Images of a batch are padded to a common size, so mixing portrait and
//! landscape images would waste up to half of every batch on padding; like
//! Detectron2's `AspectRatioGroupedDataset`, images are put in two buckets
//! (wider than tall, or not) and a batch is emitted when its bucket is full.

use rand::Rng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use super::sample::{DetectionSample, DetectionSource};
use super::transforms::{ResizeConfig, hflip, resize};
use crate::DataError;
use crate::seed::{rng_for, tag};

/// How a detection set is batched.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectionLoaderConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Resize rule; `None` keeps original sizes (e.g. the small generated set).
    pub resize: Option<ResizeConfig>,
    /// Random horizontal flip with probability 1/2 (training).
    pub hflip: bool,
    /// Shuffle the order each epoch (training); otherwise dataset order.
    pub shuffle: bool,
    /// Padded height and width are rounded up to a multiple of this (1: none).
    pub size_divisibility: usize,
    /// Seed of the order and the flips.
    pub seed: u64,
}

/// A padded batch, ready to become tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectionBatch {
    /// `[batch, 3, height, width]`, zero beyond each image's own size.
    pub images: Vec<f32>,
    /// Padded height.
    pub height: usize,
    /// Padded width.
    pub width: usize,
    /// `(height, width)` of each image inside the padding.
    pub image_sizes: Vec<(usize, usize)>,
    /// Boxes per image, `[x1, y1, x2, y2]` in that image's (resized) pixels.
    pub boxes: Vec<Vec<[f32; 4]>>,
    /// Class per box, per image.
    pub labels: Vec<Vec<usize>>,
    /// Image ids, to report detections.
    pub image_ids: Vec<u64>,
    /// Resize factor per image (divide detections by it for original coordinates).
    pub scales: Vec<f64>,
}

/// The index batches of one epoch, grouped by aspect ratio. Every image appears
/// once: the incomplete batches left in the buckets come last.
pub fn aspect_grouped_batches(
    sizes: &[(usize, usize)],
    config: &DetectionLoaderConfig,
    epoch: u64,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    if config.shuffle {
        order.shuffle(&mut rng_for(&[tag::DETECTION_ORDER, config.seed, epoch]));
    }
    let mut buckets: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    let mut batches = Vec::new();
    for i in order {
        let (w, h) = sizes[i];
        let bucket = &mut buckets[usize::from(w <= h)];
        bucket.push(i);
        if bucket.len() == config.batch_size.max(1) {
            batches.push(std::mem::take(bucket));
        }
    }
    batches.extend(buckets.into_iter().filter(|b| !b.is_empty()));
    batches
}

/// Pads transformed samples into one batch.
pub fn collate(samples: Vec<DetectionSample>, size_divisibility: usize) -> DetectionBatch {
    let d = size_divisibility.max(1);
    let round = |v: usize| v.div_ceil(d) * d;
    let height = round(samples.iter().map(|s| s.height).max().unwrap_or(0));
    let width = round(samples.iter().map(|s| s.width).max().unwrap_or(0));
    let mut images = vec![0f32; samples.len() * 3 * height * width];
    for (b, s) in samples.iter().enumerate() {
        for c in 0..3 {
            for y in 0..s.height {
                let src = &s.pixels[(c * s.height + y) * s.width..][..s.width];
                let dst = ((b * 3 + c) * height + y) * width;
                images[dst..dst + s.width].copy_from_slice(src);
            }
        }
    }
    DetectionBatch {
        images,
        height,
        width,
        image_sizes: samples.iter().map(|s| (s.height, s.width)).collect(),
        boxes: samples
            .iter()
            .map(|s| {
                s.boxes
                    .iter()
                    .map(|b| [b.x1 as f32, b.y1 as f32, b.x2 as f32, b.y2 as f32])
                    .collect()
            })
            .collect(),
        labels: samples.iter().map(|s| s.labels.clone()).collect(),
        image_ids: samples.iter().map(|s| s.image_id).collect(),
        scales: samples.iter().map(|s| s.scale).collect(),
    }
}

/// Loads, transforms and pads one batch of `indices` (decoding in parallel). The
/// flip of an image depends only on `(seed, epoch, index)`.
pub fn load_batch<S: DetectionSource + ?Sized>(
    source: &S,
    indices: &[usize],
    config: &DetectionLoaderConfig,
    epoch: u64,
) -> Result<DetectionBatch, DataError> {
    let samples = indices
        .par_iter()
        .map(|&i| {
            let mut s = source.sample(i)?;
            if let Some(r) = &config.resize {
                s = resize(s, r);
            }
            let flip = config.hflip
                && rng_for(&[tag::DETECTION_FLIP, config.seed, epoch, i as u64]).random_bool(0.5);
            Ok(if flip { hflip(s) } else { s })
        })
        .collect::<Result<Vec<_>, DataError>>()?;
    Ok(collate(samples, config.size_divisibility))
}

/// All batches of one epoch, loaded lazily in order.
pub fn detection_batches<'a, S: DetectionSource + ?Sized>(
    source: &'a S,
    config: DetectionLoaderConfig,
    epoch: u64,
) -> impl Iterator<Item = Result<DetectionBatch, DataError>> + 'a {
    let sizes: Vec<(usize, usize)> = (0..source.len()).map(|i| source.size(i)).collect();
    aspect_grouped_batches(&sizes, &config, epoch)
        .into_iter()
        .map(move |idx| load_batch(source, &idx, &config, epoch))
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
