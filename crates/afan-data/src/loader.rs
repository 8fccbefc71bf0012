//! Mini-batches with the release's CIFAR augmentation.
//!
//! The order of epoch `e` and the augmentation of each sample in it are pure
//! functions of `(seed, e, sample index)`: a run resumed from a checkpoint at
//! epoch `e` (or at batch `b` of it, via [`Iterator::nth`], which skips
//! without computing) sees exactly the batches the uninterrupted run would
//! have seen, whatever the number of threads. Pixels become `f32` in `0..=1`
//! (`u8 / 255`); normalisation, if any, belongs to the model.
//!
//! Augmentation is the release's: pad by [`CROP_PADDING`] zero pixels on
//! every side, take a random crop of the original size, then flip
//! horizontally with probability 1/2 (torchvision's `RandomCrop(32,
//! padding=4)` followed by `RandomHorizontalFlip()`).

use std::ops::Deref;
use std::sync::Arc;

use rand::Rng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use crate::dataset::ImageDataset;
use crate::seed::{rng_for, tag};

/// Zero padding on each side before the random crop.
pub const CROP_PADDING: usize = 4;

/// How to cut a dataset into batches.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoaderConfig {
    /// Images per batch (the last batch may be smaller unless `drop_last`).
    pub batch_size: usize,
    /// Visit the images in a fresh seeded random order every epoch.
    pub shuffle: bool,
    /// Random crop with zero padding plus horizontal flip.
    pub augment: bool,
    /// Drop the last, incomplete batch.
    pub drop_last: bool,
    /// Seed of the shuffle and the augmentation.
    pub seed: u64,
}

impl LoaderConfig {
    /// Training: shuffled and augmented, incomplete last batch kept.
    pub fn train(batch_size: usize, seed: u64) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: true,
            augment: true,
            drop_last: false,
            seed,
        }
    }

    /// Evaluation: dataset order, no augmentation, every image once.
    pub fn eval(batch_size: usize) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: false,
            augment: false,
            drop_last: false,
            seed: 0,
        }
    }
}

/// One mini-batch as plain buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[batch_size, channels, height, width]`, row-major, values in `0..=1`.
    pub images: Vec<f32>,
    /// Class index of each image.
    pub labels: Vec<i64>,
    /// Index in the dataset of each image (for debugging and bookkeeping).
    pub indices: Vec<usize>,
    /// Number of images in this batch.
    pub batch_size: usize,
    /// Channels per image.
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
}

impl Batch {
    /// `[batch_size, channels, height, width]`.
    pub fn shape(&self) -> [usize; 4] {
        [self.batch_size, self.channels, self.height, self.width]
    }
}

/// Number of batches of an epoch over `len` images.
pub fn num_batches(len: usize, config: &LoaderConfig) -> usize {
    assert!(config.batch_size > 0, "batch size must be positive");
    if config.drop_last {
        len / config.batch_size
    } else {
        len.div_ceil(config.batch_size)
    }
}

/// The order in which epoch `epoch` visits the `len` images.
pub fn epoch_order(len: usize, config: &LoaderConfig, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    if config.shuffle {
        order.shuffle(&mut rng_for(&[tag::EPOCH_ORDER, config.seed, epoch as u64]));
    }
    order
}

/// The random crop and flip applied to one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Augmentation {
    /// Left edge of the crop in the padded image, `0..=2 * CROP_PADDING`.
    pub crop_x: usize,
    /// Top edge of the crop in the padded image, `0..=2 * CROP_PADDING`.
    pub crop_y: usize,
    /// Mirror left-right after cropping.
    pub flip: bool,
}

impl Augmentation {
    /// Leaves the image unchanged.
    pub const IDENTITY: Augmentation = Augmentation {
        crop_x: CROP_PADDING,
        crop_y: CROP_PADDING,
        flip: false,
    };

    /// The augmentation of dataset image `index` in epoch `epoch`.
    pub fn sample(seed: u64, epoch: usize, index: usize) -> Self {
        let mut rng = rng_for(&[tag::AUGMENT, seed, epoch as u64, index as u64]);
        Augmentation {
            crop_x: rng.random_range(0..=2 * CROP_PADDING),
            crop_y: rng.random_range(0..=2 * CROP_PADDING),
            flip: rng.random(),
        }
    }

    /// Writes the augmented `src` (CHW bytes) into `out` as `f32` in `0..=1`:
    /// `out[c][y][x] = padded[c][y + crop_y][x' + crop_x]` with
    /// `x' = width - 1 - x` when flipped, where `padded` is `src` with
    /// `CROP_PADDING` zeros around it.
    pub fn apply(
        &self,
        src: &[u8],
        (channels, height, width): (usize, usize, usize),
        out: &mut [f32],
    ) {
        assert_eq!(src.len(), channels * height * width, "source size");
        assert_eq!(out.len(), src.len(), "output size");
        let shift = |p: usize, crop: usize, len: usize| {
            (p + crop).checked_sub(CROP_PADDING).filter(|&q| q < len)
        };
        for c in 0..channels {
            let plane = c * height * width;
            for y in 0..height {
                let row = &mut out[plane + y * width..plane + (y + 1) * width];
                let Some(sy) = shift(y, self.crop_y, height) else {
                    row.fill(0.0);
                    continue;
                };
                let src_row = &src[plane + sy * width..plane + (sy + 1) * width];
                for (x, o) in row.iter_mut().enumerate() {
                    let x = if self.flip { width - 1 - x } else { x };
                    *o = shift(x, self.crop_x, width)
                        .map_or(0.0, |sx| f32::from(src_row[sx]) / 255.0);
                }
            }
        }
    }
}

/// A dataset held by reference or shared ownership (the latter lets batches
/// be produced on a background thread, see [`Prefetch`](crate::Prefetch)).
enum Source<'a> {
    Borrowed(&'a ImageDataset),
    Shared(Arc<ImageDataset>),
}

impl Deref for Source<'_> {
    type Target = ImageDataset;
    fn deref(&self) -> &ImageDataset {
        match self {
            Source::Borrowed(d) => d,
            Source::Shared(d) => d,
        }
    }
}

/// The batches of one epoch; see [`batches`].
pub struct Batches<'a> {
    data: Source<'a>,
    config: LoaderConfig,
    epoch: usize,
    order: Vec<usize>,
    next: usize,
    total: usize,
}

/// The batches of epoch `epoch` of `dataset`. Panics if `batch_size` is 0.
pub fn batches<'a>(dataset: &'a ImageDataset, config: &LoaderConfig, epoch: usize) -> Batches<'a> {
    Batches::new(Source::Borrowed(dataset), config, epoch)
}

/// Like [`batches`], for a shared dataset; the iterator is `'static` and
/// `Send`, so it can feed a [`Prefetch`](crate::Prefetch).
pub fn shared_batches(
    dataset: Arc<ImageDataset>,
    config: &LoaderConfig,
    epoch: usize,
) -> Batches<'static> {
    Batches::new(Source::Shared(dataset), config, epoch)
}

impl<'a> Batches<'a> {
    fn new(data: Source<'a>, config: &LoaderConfig, epoch: usize) -> Self {
        let total = num_batches(data.len(), config);
        let order = epoch_order(data.len(), config, epoch);
        Batches {
            data,
            config: config.clone(),
            epoch,
            order,
            next: 0,
            total,
        }
    }

    fn make(&self, b: usize) -> Batch {
        let d = &*self.data;
        let start = b * self.config.batch_size;
        let end = (start + self.config.batch_size).min(d.len());
        let indices = self.order[start..end].to_vec();
        let n = d.image_len();
        let shape = (d.channels, d.height, d.width);
        let mut images = vec![0f32; indices.len() * n];
        images
            .par_chunks_exact_mut(n)
            .zip(&indices)
            .for_each(|(out, &i)| {
                let aug = if self.config.augment {
                    Augmentation::sample(self.config.seed, self.epoch, i)
                } else {
                    Augmentation::IDENTITY
                };
                aug.apply(d.image(i), shape, out);
            });
        Batch {
            images,
            labels: indices.iter().map(|&i| i64::from(d.labels[i])).collect(),
            batch_size: indices.len(),
            indices,
            channels: d.channels,
            height: d.height,
            width: d.width,
        }
    }
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.total {
            return None;
        }
        self.next += 1;
        Some(self.make(self.next - 1))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total - self.next;
        (left, Some(left))
    }

    /// Skips `n` batches without building them (resuming mid-epoch).
    fn nth(&mut self, n: usize) -> Option<Batch> {
        self.next = self.next.saturating_add(n).min(self.total);
        self.next()
    }
}

impl ExactSizeIterator for Batches<'_> {}

#[cfg(test)]
#[path = "loader_tests.rs"]
mod tests;
