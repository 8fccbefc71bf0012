//! Semantic segmentation data: Pascal VOC 2012 and Cityscapes in their official layouts, the
//! generated `shapes-seg` set, the release's augmentations and the confusion-matrix metrics.
//!
//! File-backed datasets only list their files up front (VOC-aug is 10,582 JPEGs); a sample is
//! decoded when a batch asks for it, so a bad file is reported — by name — when it is first read,
//! while a file missing from a split list is reported when the dataset is opened.

mod cityscapes;
mod io;
mod metrics;
mod synthetic;
mod transform;
mod voc;

#[cfg(test)]
mod loader_tests;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use crate::error::DataError;

pub use cityscapes::{CITYSCAPES_CLASSES, cityscapes_train_id, load_cityscapes};
pub use io::{
    read_mask, read_rgb, voc_palette, write_gray_png, write_overlay_png, write_palette_png,
};
pub use metrics::{ConfusionMatrix, SegScores, argmax_classes};
pub use synthetic::{SHAPES_SEG_CLASSES, shapes_seg};
pub use transform::{SegAugment, SegBatch, augment, load_batch, to_batch, val_transform};
pub use voc::{load_voc, load_voc_folder, voc_seg_classes};

/// The label of pixels that count for neither loss nor metrics (object borders in VOC, void in
/// Cityscapes, padding added by a crop).
pub const IGNORE_LABEL: u8 = 255;

/// One decoded image with its per-pixel labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegSample {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height * width * 3` bytes, RGB, row-major (the decoders' order; the batcher transposes).
    pub rgb: Vec<u8>,
    /// `height * width` labels: a class index or [`IGNORE_LABEL`].
    pub mask: Vec<u8>,
}

/// An image file and its mask file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegEntry {
    /// The JPEG/PNG image.
    pub image: PathBuf,
    /// The 8-bit label PNG.
    pub mask: PathBuf,
}

/// How raw mask values become training labels: `table[v]` is the label of value `v`, `None` for a
/// value the format does not allow (reported as [`DataError::BadLabel`]).
#[derive(Debug, Clone)]
pub(crate) struct LabelMap {
    table: [Option<u8>; 256],
    expected: String,
}

impl LabelMap {
    /// Values `0..num_classes` are themselves, 255 is ignored, anything else is an error.
    pub(crate) fn identity(num_classes: usize) -> Self {
        let mut table = [None; 256];
        for (v, slot) in table.iter_mut().enumerate().take(num_classes) {
            *slot = Some(v as u8);
        }
        table[usize::from(IGNORE_LABEL)] = Some(IGNORE_LABEL);
        LabelMap {
            table,
            expected: format!("a class index 0..={}", num_classes - 1),
        }
    }

    pub(crate) fn table(table: [Option<u8>; 256], expected: String) -> Self {
        LabelMap { table, expected }
    }

    /// Maps `mask` in place; the first invalid value is reported with its position.
    pub(crate) fn apply(
        &self,
        mask: &mut [u8],
        width: usize,
        path: &std::path::Path,
    ) -> Result<(), DataError> {
        for (i, v) in mask.iter_mut().enumerate() {
            *v = self.table[usize::from(*v)].ok_or_else(|| DataError::BadLabel {
                path: path.to_path_buf(),
                x: i % width,
                y: i / width,
                value: *v,
                expected: self.expected.clone(),
            })?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Source {
    Files {
        entries: Vec<SegEntry>,
        labels: Box<LabelMap>,
    },
    Memory(Vec<SegSample>),
}

/// A segmentation split: file-backed (decoded on demand) or generated in memory.
#[derive(Debug, Clone)]
pub struct SegDataset {
    /// Number of classes (labels `0..num_classes`, plus 255 = ignore).
    pub num_classes: usize,
    /// Class names in label order.
    pub class_names: Vec<String>,
    source: Source,
}

impl SegDataset {
    pub(crate) fn files(entries: Vec<SegEntry>, labels: LabelMap, names: &[&str]) -> Self {
        SegDataset {
            num_classes: names.len(),
            class_names: names.iter().map(|s| s.to_string()).collect(),
            source: Source::Files {
                entries,
                labels: Box::new(labels),
            },
        }
    }

    /// A dataset of samples already in memory; checks that buffers fit their sizes and that every
    /// label is a class or 255.
    pub fn in_memory(samples: Vec<SegSample>, class_names: Vec<String>) -> Result<Self, DataError> {
        let k = class_names.len();
        for (i, s) in samples.iter().enumerate() {
            if s.rgb.len() != s.width * s.height * 3 || s.mask.len() != s.width * s.height {
                return Err(DataError::Inconsistent(format!(
                    "sample {i}: {} RGB bytes and {} labels for {}x{} pixels",
                    s.rgb.len(),
                    s.mask.len(),
                    s.width,
                    s.height
                )));
            }
            if let Some(&v) = s
                .mask
                .iter()
                .find(|&&v| usize::from(v) >= k && v != IGNORE_LABEL)
            {
                return Err(DataError::Inconsistent(format!(
                    "sample {i}: label {v} is neither a class below {k} nor 255"
                )));
            }
        }
        Ok(SegDataset {
            num_classes: k,
            class_names,
            source: Source::Memory(samples),
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        match &self.source {
            Source::Files { entries, .. } => entries.len(),
            Source::Memory(s) => s.len(),
        }
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The files of a file-backed dataset (empty for a generated one).
    pub fn entries(&self) -> &[SegEntry] {
        match &self.source {
            Source::Files { entries, .. } => entries,
            Source::Memory(_) => &[],
        }
    }

    /// Sample `i`, decoded and with labels mapped to training ids. Panics if `i >= len()`.
    pub fn get(&self, i: usize) -> Result<SegSample, DataError> {
        match &self.source {
            Source::Memory(samples) => Ok(samples[i].clone()),
            Source::Files { entries, labels } => {
                let e = &entries[i];
                let (rgb, image_w, image_h) = read_rgb(&e.image)?;
                let (mut mask, mask_w, mask_h) = read_mask(&e.mask)?;
                if (mask_w, mask_h) != (image_w, image_h) {
                    return Err(DataError::MaskSize {
                        mask: e.mask.clone(),
                        image: e.image.clone(),
                        mask_w,
                        mask_h,
                        image_w,
                        image_h,
                    });
                }
                labels.apply(&mut mask, mask_w, &e.mask)?;
                Ok(SegSample {
                    width: image_w,
                    height: image_h,
                    rgb,
                    mask,
                })
            }
        }
    }
}

/// `path` if it is a file, else [`DataError::MissingFile`] with `hint`.
pub(crate) fn require_file(path: PathBuf, hint: &str) -> Result<PathBuf, DataError> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(DataError::MissingFile {
            path,
            hint: hint.to_string(),
        })
    }
}
