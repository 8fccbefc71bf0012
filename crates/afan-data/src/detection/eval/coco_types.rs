//! The inputs, outputs and fixed parameters of the COCO box evaluation
//! (pycocotools' `Params` for `iouType="bbox"`).

/// Names of the 12 numbers of [`CocoStats::stats`], in pycocotools' order.
pub const COCO_STAT_NAMES: [&str; 12] = [
    "AP@[.50:.95] all maxDets=100",
    "AP@.50 all maxDets=100",
    "AP@.75 all maxDets=100",
    "AP@[.50:.95] small maxDets=100",
    "AP@[.50:.95] medium maxDets=100",
    "AP@[.50:.95] large maxDets=100",
    "AR@[.50:.95] all maxDets=1",
    "AR@[.50:.95] all maxDets=10",
    "AR@[.50:.95] all maxDets=100",
    "AR@[.50:.95] small maxDets=100",
    "AR@[.50:.95] medium maxDets=100",
    "AR@[.50:.95] large maxDets=100",
];

/// Short names of the 12 numbers (as Detectron2 prints them), for JSON output.
pub const COCO_STAT_KEYS: [&str; 12] = [
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
];

/// Detections kept per image and category (COCO's `maxDets`).
pub const MAX_DETS: [usize; 3] = [1, 10, 100];

/// Area ranges all, small, medium, large (inclusive bounds, in pixels²).
pub const AREA_RANGES: [(f64, f64); 4] = [
    (0.0, 1e10),
    (0.0, 32.0 * 32.0),
    (32.0 * 32.0, 96.0 * 96.0),
    (96.0 * 96.0, 1e10),
];

/// One ground-truth annotation.
#[derive(Clone, Debug, PartialEq)]
pub struct GtBox {
    /// Image the object is in.
    pub image_id: u64,
    /// COCO category id (not necessarily contiguous).
    pub category_id: u64,
    /// `[x, y, w, h]`.
    pub bbox: [f64; 4],
    /// The annotation's `area` field (the mask area in COCO, not the box area):
    /// it decides small/medium/large.
    pub area: f64,
    /// A crowd region: never a false negative, absorbs detections.
    pub iscrowd: bool,
}

/// One detection, as in a COCO result file.
#[derive(Clone, Debug, PartialEq)]
pub struct DetBox {
    /// Image it was found in.
    pub image_id: u64,
    /// Predicted COCO category id.
    pub category_id: u64,
    /// `[x, y, w, h]`.
    pub bbox: [f64; 4],
    /// Confidence; higher first.
    pub score: f64,
}

/// What is evaluated against: every image and category of the ground truth file,
/// including images without objects and categories without detections.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CocoGroundTruth {
    /// All image ids (`images[].id`).
    pub image_ids: Vec<u64>,
    /// All category ids (`categories[].id`).
    pub category_ids: Vec<u64>,
    /// All annotations.
    pub annotations: Vec<GtBox>,
}

/// The result of an evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct CocoStats {
    /// pycocotools' `stats`, named by [`COCO_STAT_NAMES`]; -1 where undefined.
    pub stats: [f64; 12],
    /// AP@[.50:.95] (all areas, 100 detections) per category id, ascending; -1
    /// for a category without ground truth.
    pub per_category_ap: Vec<(u64, f64)>,
}
