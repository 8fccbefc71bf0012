//! Datasets, batching and metrics for afan, as plain Rust buffers.
//!
//! This crate deliberately does not depend on Burn: it reads CIFAR-10/100 in
//! their official binary layouts (or generates the embedded synthetic
//! `shapes10` set), batches and augments them into `Vec<f32>`, and scores
//! logits given as `&[f32]`. [`seg`] does the same for semantic segmentation (VOC 2012,
//! Cityscapes, the generated `shapes-seg`). The training code converts batches to tensors,
//! which keeps this crate fast to build and easy to test.

pub mod cifar;
pub mod corruption;
pub mod dataset;
pub mod detection;
pub mod error;
pub mod fixtures;
pub mod image_folder;
pub mod image_input;
#[cfg(feature = "libjpeg")]
mod jpeg;
pub mod loader;
pub mod metrics;
pub mod prefetch;
pub mod resize;
mod seed;
pub mod seg;
pub mod synthetic;

pub use cifar::{CifarKind, CifarSplit, load_cifar};
pub use corruption::Corruption;
pub use dataset::ImageDataset;
pub use error::DataError;
pub use fixtures::{CifarFixture, write_cifar_archive, write_cifar_dataset, write_cifar_fixture};
pub use image_folder::{FolderTransform, ImageFolder};
pub use image_input::ImageTransform;
pub use loader::{
    Augmentation, Batch, Batches, CROP_PADDING, LoaderConfig, batches, epoch_order, num_batches,
    shared_batches,
};
pub use metrics::{AccuracyMeter, top_k, topk_correct};
pub use prefetch::{Prefetch, with_prefetch};
pub use synthetic::{SHAPES10_CLASSES, shapes10};
