//! Object detection data: boxes, the VOC and COCO formats, and their metrics.
//!
//! Like the rest of this crate it stays free of Burn: datasets are lists of
//! records (paths and boxes), batches are `Vec<f32>` pixels plus boxes, and the
//! metrics take plain detections.

pub mod boxes;
pub mod coco;
pub mod eval;
pub mod record;
pub mod voc;

pub use boxes::BoxXyxy;
pub use record::{DetectionDataset, DetectionRecord};
