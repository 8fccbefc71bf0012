//! The in-memory image dataset shared by every source (CIFAR files, the
//! synthetic shapes).
//!
//! Images are kept as raw `u8` in the CIFAR binary order (one record of
//! `C*H*W` bytes per image, channel planes one after the other, each plane
//! row-major). Keeping bytes rather than floats makes CIFAR-10 train 150 MB
//! instead of 600 MB, and the conversion to `f32` happens per batch in the
//! loader, where augmentation has to touch every pixel anyway. The crate does
//! not depend on any tensor library: the training code turns batches into
//! tensors.

use rand::seq::SliceRandom;

use crate::error::DataError;
use crate::seed::{rng_for, tag};

/// A labelled set of same-sized images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDataset {
    /// `len()` records of `channels * height * width` bytes each, CHW order.
    pub images: Vec<u8>,
    /// One label per record, each `< num_classes`.
    pub labels: Vec<u16>,
    /// Number of classes of the task (not necessarily all present).
    pub num_classes: usize,
    /// Channels per image (3 for RGB).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Human-readable name of each class, `num_classes` entries.
    pub class_names: Vec<String>,
}

impl ImageDataset {
    /// Builds a dataset and checks that the buffers agree with the shape, so
    /// that later indexing cannot go out of bounds.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u16>,
        num_classes: usize,
        (channels, height, width): (usize, usize, usize),
        class_names: Vec<String>,
    ) -> Result<Self, DataError> {
        let dataset = ImageDataset {
            images,
            labels,
            num_classes,
            channels,
            height,
            width,
            class_names,
        };
        dataset.validate()?;
        Ok(dataset)
    }

    /// Checks the invariants documented on the fields.
    pub fn validate(&self) -> Result<(), DataError> {
        let per_image = self.image_len();
        if per_image == 0 {
            return Err(DataError::Inconsistent(format!(
                "image shape {}x{}x{} has no pixels",
                self.channels, self.height, self.width
            )));
        }
        if self.images.len() != self.labels.len() * per_image {
            return Err(DataError::Inconsistent(format!(
                "{} image bytes for {} labels of {per_image}-byte images (expected {} bytes)",
                self.images.len(),
                self.labels.len(),
                self.labels.len() * per_image
            )));
        }
        if self.class_names.len() != self.num_classes {
            return Err(DataError::Inconsistent(format!(
                "{} class names for {} classes",
                self.class_names.len(),
                self.num_classes
            )));
        }
        if let Some((i, &l)) = self
            .labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| usize::from(l) >= self.num_classes)
        {
            return Err(DataError::Inconsistent(format!(
                "label {l} of image {i} is not below num_classes = {}",
                self.num_classes
            )));
        }
        Ok(())
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image: `channels * height * width`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The `C*H*W` bytes of image `i` (CHW order). Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// How many images each class has (`num_classes` entries).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            counts[usize::from(l)] += 1;
        }
        counts
    }

    /// A new dataset holding the images at `indices`, in that order
    /// (repetitions allowed). Panics if an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> ImageDataset {
        let n = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        ImageDataset {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            num_classes: self.num_classes,
            channels: self.channels,
            height: self.height,
            width: self.width,
            class_names: self.class_names.clone(),
        }
    }

    /// Splits off a random validation set of `val_size` images, returning
    /// `(train, val)`; the release's optional 45k/5k split of CIFAR training
    /// data is `train_val_split(5000, seed)`.
    ///
    /// The choice is a seeded ChaCha8 shuffle, so the same seed always gives
    /// the same split on every machine. Both parts keep the original relative
    /// order of their images, so the split itself adds no ordering bias.
    /// Panics if `val_size > len()`.
    pub fn train_val_split(&self, val_size: usize, seed: u64) -> (ImageDataset, ImageDataset) {
        assert!(
            val_size <= self.len(),
            "validation size {val_size} exceeds dataset size {}",
            self.len()
        );
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut rng_for(&[tag::SPLIT, seed]));
        let (val, train) = order.split_at_mut(val_size);
        val.sort_unstable();
        train.sort_unstable();
        (self.subset(train), self.subset(val))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 images of 1x2x2 whose every byte is the image index.
    fn tiny() -> ImageDataset {
        let images = (0..10u8).flat_map(|i| [i; 4]).collect();
        let labels = (0..10u16).map(|i| i % 3).collect();
        let names = vec!["a".into(), "b".into(), "c".into()];
        ImageDataset::new(images, labels, 3, (1, 2, 2), names).unwrap()
    }

    #[test]
    fn accessors() {
        let d = tiny();
        assert_eq!(d.len(), 10);
        assert!(!d.is_empty());
        assert_eq!(d.image(7), &[7, 7, 7, 7]);
        assert_eq!(d.class_counts(), vec![4, 3, 3]);
    }

    #[test]
    fn subset_picks_images_and_labels_in_order() {
        let d = tiny().subset(&[5, 1, 5]);
        assert_eq!(d.images, vec![5, 5, 5, 5, 1, 1, 1, 1, 5, 5, 5, 5]);
        assert_eq!(d.labels, vec![2, 1, 2]);
        d.validate().unwrap();
    }

    #[test]
    fn split_is_a_reproducible_partition() {
        let d = tiny();
        let (train, val) = d.train_val_split(3, 42);
        assert_eq!((train.len(), val.len()), (7, 3));
        let mut seen: Vec<u8> = train
            .images
            .iter()
            .chain(&val.images)
            .step_by(4)
            .copied()
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<u8>>());
        // Labels still belong to their images.
        for part in [&train, &val] {
            for i in 0..part.len() {
                assert_eq!(part.labels[i], u16::from(part.image(i)[0]) % 3);
            }
        }
        assert_eq!(d.train_val_split(3, 42), (train.clone(), val.clone()));
        let differs = (0..20).any(|s| d.train_val_split(3, s).1 != val);
        assert!(differs, "the seed must change the split");
    }

    #[test]
    fn new_rejects_inconsistent_buffers() {
        let bad = ImageDataset::new(vec![0; 7], vec![0, 0], 1, (1, 2, 2), vec!["a".into()]);
        assert!(matches!(bad, Err(DataError::Inconsistent(_))));
        let bad = ImageDataset::new(vec![0; 4], vec![1], 1, (1, 2, 2), vec!["a".into()]);
        assert!(matches!(bad, Err(DataError::Inconsistent(_))));
    }
}
