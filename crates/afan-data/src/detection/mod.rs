//! Object detection data: boxes, the VOC and COCO formats, transforms, batches
//! and their metrics.
//!
//! Like the rest of this crate it stays free of Burn: datasets are lists of
//! records (paths and boxes), batches are `Vec<f32>` pixels plus boxes, and the
//! metrics take plain detections.

pub mod batch;
pub mod boxes;
pub mod coco;
pub mod eval;
pub mod record;
pub mod sample;
pub mod synthetic;
pub mod transforms;
pub mod voc;

pub use batch::{DetectionBatch, DetectionLoaderConfig, detection_batches};
pub use boxes::BoxXyxy;
pub use record::{DetectionDataset, DetectionRecord};
pub use sample::{DetectionSample, DetectionSource};
pub use synthetic::{SHAPES_DET_CLASSES, shapes_det};
pub use transforms::ResizeConfig;
