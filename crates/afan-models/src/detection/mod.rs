//! Faster R-CNN in the C4 layout of the A-FAN release, one concept per file as in torchvision's
//! `models.detection` package.

pub mod afan;
pub mod anchors;
pub mod box_coder;
pub mod boxes;
pub mod faster_rcnn;
pub mod head_init;
pub mod losses;
pub mod nms;
pub mod optional;
pub mod release_keys;
pub mod roi_align;
pub mod roi_heads;
pub mod rpn;
pub mod sampler;
pub mod step;
