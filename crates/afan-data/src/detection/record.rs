//! The data-side description of a detection dataset, whatever its format.

use std::path::PathBuf;

use super::boxes::BoxXyxy;

/// One image and its objects, before decoding.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectionRecord {
    /// The image file.
    pub image: PathBuf,
    /// The dataset's own id of the image (COCO `images[].id`; VOC: position in the split).
    pub image_id: u64,
    /// Width in pixels, as the annotation states it.
    pub width: u32,
    /// Height in pixels, as the annotation states it.
    pub height: u32,
    /// Object boxes, continuous corners (see [`super::boxes`]).
    pub boxes: Vec<BoxXyxy>,
    /// Contiguous class index (0-based; the model adds its own background class) per box.
    pub labels: Vec<usize>,
    /// VOC's `difficult` per box (always false for COCO): kept for evaluation, where
    /// such objects are neither found nor missed; training code may drop them.
    pub difficult: Vec<bool>,
    /// COCO crowd regions (`iscrowd = 1`), kept apart from `boxes`: not objects to
    /// learn, but areas where detections are not false positives.
    pub crowd: Vec<BoxXyxy>,
}

/// A whole split: records plus the class names their labels index.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectionDataset {
    /// Class names in label order.
    pub class_names: Vec<String>,
    /// One record per image.
    pub records: Vec<DetectionRecord>,
    /// Degenerate boxes (zero or negative width or height) dropped while loading,
    /// so the caller can warn about them once.
    pub skipped_boxes: usize,
}

impl DetectionDataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The training view, as py-faster-rcnn (`use_diff=False`) and Detectron2 train:
    /// `difficult` objects dropped, then images left without objects dropped.
    /// Evaluation uses the full set, where difficult objects must stay.
    pub fn for_training(mut self) -> Self {
        for r in &mut self.records {
            let kept = |i: &usize| !r.difficult[*i];
            let idx: Vec<usize> = (0..r.boxes.len()).filter(kept).collect();
            r.boxes = idx.iter().map(|&i| r.boxes[i]).collect();
            r.labels = idx.iter().map(|&i| r.labels[i]).collect();
            r.difficult = vec![false; idx.len()];
        }
        self.records.retain(|r| !r.boxes.is_empty());
        self
    }

    /// This dataset followed by `other` (e.g. VOC07+12), which must have the same classes.
    pub fn concat(mut self, other: DetectionDataset) -> Result<Self, crate::DataError> {
        if self.class_names != other.class_names {
            return Err(crate::DataError::Inconsistent(format!(
                "cannot concatenate detection sets with different classes ({:?} vs {:?})",
                self.class_names, other.class_names
            )));
        }
        self.records.extend(other.records);
        self.skipped_boxes += other.skipped_boxes;
        Ok(self)
    }
}

/// Checks one annotated box against its image: `Ok(None)` for a degenerate box that
/// the caller skips and counts, an error for a box more than one pixel outside the
/// image (a wrong image size or a corrupt annotation, not rounding).
pub(crate) fn check_box(
    b: BoxXyxy,
    width: u32,
    height: u32,
    file: &std::path::Path,
    field: &str,
) -> Result<Option<BoxXyxy>, crate::DataError> {
    if !b.is_proper() {
        return Ok(None);
    }
    let (w, h) = (width as f64, height as f64);
    if b.x1 < -1.0 || b.y1 < -1.0 || b.x2 > w + 1.0 || b.y2 > h + 1.0 {
        return Err(crate::DataError::invalid(
            file,
            field,
            format!(
                "box [{}, {}, {}, {}] (x1, y1, x2, y2) lies outside the {width}x{height} image",
                b.x1, b.y1, b.x2, b.y2
            ),
        ));
    }
    Ok(Some(b))
}
