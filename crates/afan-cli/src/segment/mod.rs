//! Semantic segmentation: DeepLabV3+ on VOC 2012, Cityscapes or the generated `shapes-seg`,
//! baseline or A-FAN (`afan train/eval/infer --task segment`).

pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod eval;
pub mod infer;
pub mod loss;
pub mod objective;
pub mod resume;
pub mod step;
pub mod train;
