//! Detection metrics: COCO's 12 numbers (pycocotools) and VOC mAP (the devkit).

pub mod coco_eval;
pub mod coco_types;
pub mod voc_map;

pub use coco_eval::{
    AREA_RANGES, COCO_STAT_KEYS, COCO_STAT_NAMES, CocoGroundTruth, CocoStats, DetBox, GtBox,
    MAX_DETS, coco_evaluate,
};
pub use voc_map::{ApRule, Detection, VocMap, average_precision, voc_map};
