//! Decoded detection images and where they come from (files or memory).

use std::path::Path;

use super::boxes::BoxXyxy;
use super::record::{DetectionDataset, DetectionRecord};
use crate::DataError;

/// One image as the model sees it: RGB, channel-major (`[3, height, width]`), values
/// in `[0, 1]` (the detector normalises with its own mean and std, as torchvision's
/// `GeneralizedRCNNTransform` does), with its targets in the same pixel frame.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectionSample {
    /// `3 * height * width` values, channel-major.
    pub pixels: Vec<f32>,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// Object boxes in this image's pixel frame.
    pub boxes: Vec<BoxXyxy>,
    /// Class per box (0-based).
    pub labels: Vec<usize>,
    /// The record's image id, to report detections against the ground truth.
    pub image_id: u64,
    /// Factor from the original image to this one (1 until resized), to map
    /// detections back to original coordinates for evaluation.
    pub scale: f64,
}

/// Anything that yields detection samples by index: a dataset on disk, or the
/// generated one in memory.
pub trait DetectionSource: Sync {
    /// Number of images.
    fn len(&self) -> usize;
    /// True when there are no images.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `(width, height)` of image `i`, known without decoding (for aspect grouping).
    fn size(&self, i: usize) -> (usize, usize);
    /// Image `i`, decoded, at its original size.
    fn sample(&self, i: usize) -> Result<DetectionSample, DataError>;
}

/// Decodes an image file (JPEG or PNG) into `[3, h, w]` floats in `[0, 1]`.
pub fn decode_rgb(path: &Path) -> Result<(Vec<f32>, usize, usize), DataError> {
    let img = crate::image_input::decode_image(path)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    Ok((crate::image_input::to_chw(&img), h, w))
}

/// A record's image, decoded, checked against the size its annotation states
/// (boxes are in that frame, so a mismatch would misplace every box).
pub fn load_record(rec: &DetectionRecord) -> Result<DetectionSample, DataError> {
    let (pixels, height, width) = decode_rgb(&rec.image)?;
    if (width, height) != (rec.width as usize, rec.height as usize) {
        return Err(DataError::invalid(
            &rec.image,
            "size",
            format!(
                "the image is {width}x{height} but its annotation says {}x{}",
                rec.width, rec.height
            ),
        ));
    }
    Ok(DetectionSample {
        pixels,
        height,
        width,
        boxes: rec.boxes.clone(),
        labels: rec.labels.clone(),
        image_id: rec.image_id,
        scale: 1.0,
    })
}

impl DetectionSource for DetectionDataset {
    fn len(&self) -> usize {
        self.records.len()
    }

    fn size(&self, i: usize) -> (usize, usize) {
        let r = &self.records[i];
        (r.width as usize, r.height as usize)
    }

    fn sample(&self, i: usize) -> Result<DetectionSample, DataError> {
        load_record(&self.records[i])
    }
}

impl DetectionSource for [DetectionSample] {
    fn len(&self) -> usize {
        <[DetectionSample]>::len(self)
    }

    fn size(&self, i: usize) -> (usize, usize) {
        (self[i].width, self[i].height)
    }

    fn sample(&self, i: usize) -> Result<DetectionSample, DataError> {
        Ok(self[i].clone())
    }
}
