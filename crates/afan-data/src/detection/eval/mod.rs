//! Detection metrics: COCO's 12 numbers (pycocotools) and VOC mAP (the devkit).

pub mod coco_eval;

pub use coco_eval::{
    AREA_RANGES, COCO_STAT_NAMES, CocoGroundTruth, CocoStats, DetBox, GtBox, MAX_DETS,
    coco_evaluate,
};
