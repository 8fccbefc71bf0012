//! ImageNet-style folders (`ROOT/train/CLASS/*.JPEG`, `ROOT/val/CLASS/*.JPEG`), torchvision's
//! `ImageFolder` rules: one class per sub-folder, classes in sorted order, files with image
//! extensions only. Images are decoded when a batch needs them — ImageNet does not fit in memory —
//! in parallel with rayon, and the batch's random crops are pure functions of (seed, epoch,
//! image), so a resumed epoch sees the batches the uninterrupted one would have.
//!
//! Training: torchvision's `RandomResizedCrop(size)` (scale 0.08-1, ratio 3/4-4/3, ten tries,
//! then the centre fallback) and a horizontal flip; evaluation: `Resize(resize)` and
//! `CenterCrop(size)` via [`ImageTransform`].

use crate::error::DataError;
use crate::image_input::{ImageTransform, decode_image, to_chw};
use crate::loader::{Batch, LoaderConfig, epoch_order, num_batches};
use crate::seed::{rng_for, tag};
use rand::Rng;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Extensions torchvision's `ImageFolder` accepts that the `image` crate here decodes.
const EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "JPEG"];

/// The files of one split and their classes.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    /// Image files, sorted by class then name.
    pub files: Vec<PathBuf>,
    /// Class index of each file.
    pub labels: Vec<u32>,
    /// Class names (the sub-folder names, sorted).
    pub class_names: Vec<String>,
}

/// Output sizes of the two transforms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FolderTransform {
    /// Side of the training crop and of the evaluation centre crop (ImageNet: 224).
    pub crop: u32,
    /// Shorter side before the evaluation centre crop (ImageNet: 256).
    pub resize: u32,
}

impl Default for FolderTransform {
    fn default() -> Self {
        Self {
            crop: 224,
            resize: 256,
        }
    }
}

impl ImageFolder {
    /// Scans `root` (one sub-folder per class).
    pub fn open(root: &Path) -> Result<Self, DataError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| DataError::Io { path, error }
        };
        let mut class_dirs: Vec<PathBuf> = std::fs::read_dir(root)
            .map_err(io(root))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        class_dirs.sort();
        let (mut files, mut labels, mut class_names) = (Vec::new(), Vec::new(), Vec::new());
        for dir in &class_dirs {
            let mut images: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(io(dir))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
                })
                .collect();
            if images.is_empty() {
                // As torchvision: skipping it would shift every later class index.
                return Err(DataError::Inconsistent(format!(
                    "class folder {} holds no .jpg/.jpeg/.png image",
                    dir.display()
                )));
            }
            images.sort();
            let label = class_names.len() as u32;
            class_names.push(
                dir.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
            labels.extend(std::iter::repeat_n(label, images.len()));
            files.extend(images);
        }
        if files.is_empty() {
            return Err(DataError::Inconsistent(format!(
                "{} holds no class folders with .jpg/.jpeg/.png images (expected ROOT/CLASS/image.JPEG)",
                root.display()
            )));
        }
        Ok(Self {
            files,
            labels,
            class_names,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the split has no image.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Batch `index` of epoch `epoch`: decoded, cropped (randomly when `config.augment`), flipped.
    pub fn batch(
        &self,
        config: &LoaderConfig,
        transform: FolderTransform,
        epoch: usize,
        index: usize,
    ) -> Result<Batch, DataError> {
        let order = epoch_order(self.len(), config, epoch);
        let start = index * config.batch_size;
        let ids = &order[start..(start + config.batch_size).min(order.len())];
        self.batch_of(ids, config, transform, epoch)
    }

    /// Every batch of epoch `epoch`, in order. The epoch's order (a shuffle of the whole split)
    /// is drawn once here, not once per batch.
    pub fn epoch(
        &self,
        config: &LoaderConfig,
        transform: FolderTransform,
        epoch: usize,
    ) -> impl Iterator<Item = Result<Batch, DataError>> + '_ {
        let order = epoch_order(self.len(), config, epoch);
        let (config, n) = (config.clone(), self.num_batches(config));
        (0..n).map(move |i| {
            let ids = &order[i * config.batch_size..((i + 1) * config.batch_size).min(order.len())];
            self.batch_of(ids, &config, transform, epoch)
        })
    }

    /// The images `ids`, decoded, cropped (randomly when `config.augment`) and flipped.
    fn batch_of(
        &self,
        ids: &[usize],
        config: &LoaderConfig,
        transform: FolderTransform,
        epoch: usize,
    ) -> Result<Batch, DataError> {
        let c = transform.crop as usize;
        let images: Vec<Vec<f32>> = ids
            .par_iter()
            .map(|&i| {
                let path = &self.files[i];
                if config.augment {
                    let mut rng = rng_for(&[tag::FOLDER_CROP, config.seed, epoch as u64, i as u64]);
                    random_resized_crop(path, transform.crop, &mut rng)
                } else {
                    ImageTransform {
                        resize: transform.resize,
                        crop: transform.crop,
                    }
                    .load(path)
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Batch {
            images: images.concat(),
            labels: ids.iter().map(|&i| self.labels[i] as i64).collect(),
            indices: ids.to_vec(),
            batch_size: ids.len(),
            channels: 3,
            height: c,
            width: c,
        })
    }

    /// The number of batches an epoch has.
    pub fn num_batches(&self, config: &LoaderConfig) -> usize {
        num_batches(self.len(), config)
    }
}

/// torchvision's `RandomResizedCrop.get_params` (scale (0.08, 1), ratio (3/4, 4/3)) followed by
/// Pillow's bilinear resize to `size` (what `F.resized_crop` runs on a PIL image) and a horizontal
/// flip with probability 1/2; `[3, size, size]` in [0, 1].
fn random_resized_crop(path: &Path, size: u32, rng: &mut impl Rng) -> Result<Vec<f32>, DataError> {
    let image = decode_image(path)?;
    let (w, h) = image.dimensions();
    let (x, y, cw, ch) = crop_params(w, h, rng);
    let crop = image::imageops::crop_imm(&image, x, y, cw, ch).to_image();
    let mut out = crate::resize::resize_rgb(&crop, size, size);
    if rng.random::<bool>() {
        image::imageops::flip_horizontal_in_place(&mut out);
    }
    Ok(to_chw(&out))
}

/// The crop box `(x, y, w, h)`: ten tries at an area fraction in [0.08, 1] and a log-uniform aspect
/// ratio in [3/4, 4/3]; failing those, the largest centred box within the ratio bounds.
pub fn crop_params(w: u32, h: u32, rng: &mut impl Rng) -> (u32, u32, u32, u32) {
    let area = (w * h) as f64;
    let (lo, hi) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let target = area * rng.random_range(0.08..=1.0);
        let ratio = rng.random_range(lo..=hi).exp();
        let cw = (target * ratio).sqrt().round() as u32;
        let ch = (target / ratio).sqrt().round() as u32;
        if 0 < cw && cw <= w && 0 < ch && ch <= h {
            return (
                rng.random_range(0..=w - cw),
                rng.random_range(0..=h - ch),
                cw,
                ch,
            );
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (cw, ch) = if in_ratio < 3.0 / 4.0 {
        (w, (w as f64 / (3.0 / 4.0)).round() as u32)
    } else if in_ratio > 4.0 / 3.0 {
        ((h as f64 * 4.0 / 3.0).round() as u32, h)
    } else {
        (w, h)
    };
    ((w - cw) / 2, (h - ch) / 2, cw, ch)
}

#[cfg(test)]
#[path = "image_folder_tests.rs"]
mod tests;
