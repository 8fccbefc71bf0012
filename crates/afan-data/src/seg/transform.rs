//! The release's segmentation augmentations (VainF's `ext_transforms`) and batching.
//!
//! Training: random scale (bilinear image, nearest mask), random crop padded where the image is
//! smaller (image with 0, mask with 255 so padding is ignored), horizontal flip, optional colour
//! jitter. Validation: full size, or shorter side resized to the crop and a centre crop.

use image::{GrayImage, RgbImage};
use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::{IGNORE_LABEL, SegDataset, SegSample};
use crate::error::DataError;
use crate::seed::{rng_for, tag};

/// Training augmentation; the defaults are the release's VOC setting.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegAugment {
    /// Random scale range `[lo, hi]` (release: 0.5 to 2.0); `[1, 1]` keeps the size.
    pub scale: [f32; 2],
    /// Square crop side (release: 513 for VOC, 768 for Cityscapes); 0 keeps the size. (Plain
    /// values rather than options: a `None` would vanish from a saved TOML config and come back
    /// as the default.)
    pub crop: usize,
    /// Random horizontal flip with probability 0.5.
    pub flip: bool,
    /// Brightness, contrast and saturation jitter strength (release: 0.5 for Cityscapes, 0 = off
    /// for VOC): each factor uniform in `[1 - s, 1 + s]`.
    pub color_jitter: f32,
}

impl Default for SegAugment {
    fn default() -> Self {
        SegAugment {
            scale: [0.5, 2.0],
            crop: 513,
            flip: true,
            color_jitter: 0.0,
        }
    }
}

/// A batch as plain buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct SegBatch {
    /// `[batch, 3, height, width]`, normalized with the given mean and std.
    pub images: Vec<f32>,
    /// `[batch, height, width]`: class indices or 255.
    pub labels: Vec<u8>,
    /// Number of samples.
    pub batch: usize,
    /// Height of every sample.
    pub height: usize,
    /// Width of every sample.
    pub width: usize,
}

fn rgb_image(s: &SegSample) -> RgbImage {
    RgbImage::from_raw(s.width as u32, s.height as u32, s.rgb.clone()).expect("rgb size")
}

fn gray_image(s: &SegSample) -> GrayImage {
    GrayImage::from_raw(s.width as u32, s.height as u32, s.mask.clone()).expect("mask size")
}

fn from_images(rgb: RgbImage, mask: GrayImage) -> SegSample {
    let (w, h) = rgb.dimensions();
    SegSample {
        width: w as usize,
        height: h as usize,
        rgb: rgb.into_raw(),
        mask: mask.into_raw(),
    }
}

/// Resizes to `width x height` as the release's `ExtResize`/`ExtRandomScale` do
/// (`Segmentation/utils/ext_transforms.py`): Pillow's bilinear for the image, Pillow's nearest
/// for the labels.
fn resize(s: &SegSample, width: usize, height: usize) -> SegSample {
    if (width, height) == (s.width, s.height) {
        return s.clone();
    }
    let (w, h) = (width as u32, height as u32);
    from_images(
        crate::resize::resize_rgb(&rgb_image(s), w, h),
        crate::resize::resize_labels(&gray_image(s), w, h),
    )
}

/// The `side x side` window at `(x0, y0)` of `s` padded (right/bottom) to at least `side`.
fn crop(s: &SegSample, side: usize, x0: usize, y0: usize) -> SegSample {
    let mut rgb = vec![0u8; side * side * 3];
    let mut mask = vec![IGNORE_LABEL; side * side];
    for y in 0..side.min(s.height.saturating_sub(y0)) {
        let n = side.min(s.width.saturating_sub(x0));
        let src = (y0 + y) * s.width + x0;
        mask[y * side..y * side + n].copy_from_slice(&s.mask[src..src + n]);
        rgb[y * side * 3..(y * side + n) * 3].copy_from_slice(&s.rgb[src * 3..(src + n) * 3]);
    }
    SegSample {
        width: side,
        height: side,
        rgb,
        mask,
    }
}

fn flip(s: &mut SegSample) {
    for y in 0..s.height {
        s.mask[y * s.width..(y + 1) * s.width].reverse();
        let row = &mut s.rgb[y * s.width * 3..(y + 1) * s.width * 3];
        row.reverse();
        for px in row.chunks_exact_mut(3) {
            px.reverse(); // the row reversal also reversed each pixel's RGB
        }
    }
}

/// Brightness, contrast and saturation, each by a factor in `[1 - s, 1 + s]`, in a random order
/// (as torchvision's `ColorJitter`).
fn jitter(s: &mut SegSample, strength: f32, rng: &mut ChaCha8Rng) {
    let gray = |p: &[f32]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    let mut px: Vec<f32> = s.rgb.iter().map(|&v| f32::from(v)).collect();
    let mut order = [0, 1, 2];
    order.shuffle(rng);
    for op in order {
        let f = rng.random_range((1.0 - strength).max(0.0)..=1.0 + strength);
        match op {
            0 => px.iter_mut().for_each(|v| *v *= f),
            1 => {
                let n = (s.width * s.height).max(1) as f32;
                let mean = px.chunks_exact(3).map(gray).sum::<f32>() / n;
                px.iter_mut().for_each(|v| *v = (*v - mean) * f + mean);
            }
            _ => {
                for p in px.chunks_exact_mut(3) {
                    let g = gray(p);
                    p.iter_mut().for_each(|v| *v = (*v - g) * f + g);
                }
            }
        }
        // PIL clips to 0..255 after each operation.
        px.iter_mut().for_each(|v| *v = v.clamp(0.0, 255.0));
    }
    for (o, v) in s.rgb.iter_mut().zip(px) {
        *o = v.round() as u8;
    }
}

/// One random training view of `s`.
pub fn augment(s: &SegSample, aug: &SegAugment, rng: &mut ChaCha8Rng) -> SegSample {
    let [lo, hi] = aug.scale;
    let mut out = if lo == 1.0 && hi == 1.0 {
        s.clone()
    } else {
        let f = if hi > lo {
            rng.random_range(lo..=hi)
        } else {
            lo
        };
        let w = ((s.width as f32 * f).round() as usize).max(1);
        let h = ((s.height as f32 * f).round() as usize).max(1);
        resize(s, w, h)
    };
    if aug.crop > 0 {
        let side = aug.crop;
        let x0 = rng.random_range(0..=out.width.saturating_sub(side));
        let y0 = rng.random_range(0..=out.height.saturating_sub(side));
        out = crop(&out, side, x0, y0);
    }
    if aug.flip && rng.random_bool(0.5) {
        flip(&mut out);
    }
    if aug.color_jitter > 0.0 {
        jitter(&mut out, aug.color_jitter, rng);
    }
    out
}

/// The validation view: full size, or the shorter side resized to `crop` and a centre crop.
pub fn val_transform(s: &SegSample, crop_side: Option<usize>) -> SegSample {
    let Some(side) = crop_side else {
        return s.clone();
    };
    let short = s.width.min(s.height).max(1);
    let w = (s.width * side).div_ceil(short).max(side);
    let h = (s.height * side).div_ceil(short).max(side);
    let r = resize(s, w, h);
    crop(&r, side, (w - side) / 2, (h - side) / 2)
}

/// Stacks same-sized samples into a batch, scaling to `0..1` and normalizing per channel.
pub fn to_batch(
    samples: &[SegSample],
    mean: [f32; 3],
    std: [f32; 3],
) -> Result<SegBatch, DataError> {
    let first = samples
        .first()
        .ok_or_else(|| DataError::Inconsistent("empty segmentation batch".into()))?;
    let (w, h) = (first.width, first.height);
    if let Some(s) = samples.iter().find(|s| (s.width, s.height) != (w, h)) {
        return Err(DataError::Inconsistent(format!(
            "samples of {w}x{h} and {}x{} in one batch; set a crop or use batch size 1",
            s.width, s.height
        )));
    }
    let hw = w * h;
    let mut images = vec![0f32; samples.len() * 3 * hw];
    for (s, out) in samples.iter().zip(images.chunks_exact_mut(3 * hw)) {
        for (i, px) in s.rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * hw + i] = (f32::from(px[c]) / 255.0 - mean[c]) / std[c];
            }
        }
    }
    Ok(SegBatch {
        images,
        labels: samples
            .iter()
            .flat_map(|s| s.mask.iter().copied())
            .collect(),
        batch: samples.len(),
        height: h,
        width: w,
    })
}

/// Decodes `indices` of `dataset` in parallel and batches them: augmented with a generator per
/// `(seed, step, index)` when `aug` is given (so batches do not depend on thread count), else the
/// validation view with `val_crop`.
pub fn load_batch(
    dataset: &SegDataset,
    indices: &[usize],
    aug: Option<&SegAugment>,
    val_crop: Option<usize>,
    (seed, step): (u64, u64),
    (mean, std): ([f32; 3], [f32; 3]),
) -> Result<SegBatch, DataError> {
    let samples = indices
        .par_iter()
        .map(|&i| {
            let s = dataset.get(i)?;
            Ok(match aug {
                Some(a) => augment(&s, a, &mut rng_for(&[tag::AUGMENT, seed, step, i as u64])),
                None => val_transform(&s, val_crop),
            })
        })
        .collect::<Result<Vec<_>, DataError>>()?;
    to_batch(&samples, mean, std)
}
