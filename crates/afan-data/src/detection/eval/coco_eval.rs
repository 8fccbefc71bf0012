//! COCO box AP/AR, computed exactly as pycocotools' `COCOeval` (`iouType="bbox"`).
//!
//! Papers report these 12 numbers from pycocotools, so the rule is reproduced
//! step by step rather than "in spirit"; the fixtures under
//! `tests/fixtures/coco_eval/` (written by `xtask/reference/coco_eval_fixtures.py`)
//! hold pycocotools' own output for randomized cases. The details that change
//! numbers, all from pycocotools 2.0:
//!
//! - IoU is computed on `[x, y, w, h]` as its C `bbIou` does; against a crowd
//!   ground truth the union is the detection's own area (`iscrowd` rule).
//! - Per image and category, detections are sorted by score (stable, so ties keep
//!   file order) and cut to the largest `maxDets` (100) before matching; the
//!   smaller `maxDets` take a prefix of that matching (greedy matching in score
//!   order makes the prefix independent of later detections).
//! - Ground truths are ignored when crowd or outside the area range (their
//!   `area` field, inclusive bounds); ignored ones are tried last. A detection
//!   keeps the highest-IoU match (the later one on ties) with IoU >= the
//!   threshold, never re-uses a matched non-crowd ground truth, and stops at
//!   ignored ones once it has a regular match. Detections matched to ignored
//!   ground truth, and unmatched ones whose own `w*h` is outside the area
//!   range, count neither as TP nor FP.
//! - Across images (in ascending id order) detections are merged by a stable sort
//!   on score; precision is made monotone and read at 101 recall points
//!   (`searchsorted`, zero past the last recall); entries without ground truth
//!   stay -1 and are left out of the means, which are -1 when nothing is left.
//!
//! One deliberate difference: pycocotools marks "unmatched" by a ground-truth id
//! of 0, so a ground truth whose annotation id is 0 can never be matched there;
//! here matches are tracked by index and ids play no part.

use std::collections::HashMap;

use rayon::prelude::*;

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

const T: usize = 10;
const R: usize = 101;

/// `np.linspace(start, stop, num)` bit for bit: `i * step + start`, last = `stop`.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
}

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

/// pycocotools' `bbIou` for one pair.
fn bb_iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let w = (d[2] + d[0]).min(g[2] + g[0]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[3] + d[1]).min(g[3] + g[1]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let (i, da) = (w * h, d[2] * d[3]);
    let u = if crowd { da } else { da + g[2] * g[3] - i };
    i / u
}

/// Matching of one image, one category, one area range (`evaluateImg`).
struct ImageEval {
    /// Scores of the (sorted, cut) detections.
    scores: Vec<f64>,
    /// Per threshold and detection: matched to some ground truth.
    matched: Vec<Vec<bool>>,
    /// Per threshold and detection: neither TP nor FP.
    ignored: Vec<Vec<bool>>,
    /// Per ground truth: ignored.
    gt_ignored: Vec<bool>,
}

fn out_of(range: (f64, f64), area: f64) -> bool {
    area < range.0 || area > range.1
}

fn evaluate_image(
    gts: &[&GtBox],
    dts: &[&DetBox],
    ious: &[Vec<f64>],
    range: (f64, f64),
    iou_thrs: &[f64],
) -> Option<ImageEval> {
    if gts.is_empty() && dts.is_empty() {
        return None;
    }
    let ignore: Vec<bool> = gts
        .iter()
        .map(|g| g.iscrowd || out_of(range, g.area))
        .collect();
    // Stable: regular ground truths first, each group in file order.
    let mut order: Vec<usize> = (0..gts.len()).collect();
    order.sort_by_key(|&i| ignore[i]);
    let gt_ignored: Vec<bool> = order.iter().map(|&i| ignore[i]).collect();
    let crowd: Vec<bool> = order.iter().map(|&i| gts[i].iscrowd).collect();
    let (nd, ng) = (dts.len(), gts.len());
    let mut matched = vec![vec![false; nd]; T];
    let mut ignored = vec![vec![false; nd]; T];
    if nd > 0 && ng > 0 {
        for (t, &thr) in iou_thrs.iter().enumerate() {
            let mut gt_taken = vec![false; ng];
            for d in 0..nd {
                let mut best = thr.min(1.0 - 1e-10);
                let mut m: Option<usize> = None;
                for (g, &gi) in order.iter().enumerate() {
                    if gt_taken[g] && !crowd[g] {
                        continue;
                    }
                    if m.is_some_and(|m| !gt_ignored[m]) && gt_ignored[g] {
                        break;
                    }
                    if ious[d][gi] < best {
                        continue;
                    }
                    best = ious[d][gi];
                    m = Some(g);
                }
                if let Some(m) = m {
                    ignored[t][d] = gt_ignored[m];
                    matched[t][d] = true;
                    gt_taken[m] = true;
                }
            }
        }
    }
    for d in 0..nd {
        let b = &dts[d].bbox;
        if out_of(range, b[2] * b[3]) {
            for t in 0..T {
                ignored[t][d] |= !matched[t][d];
            }
        }
    }
    Some(ImageEval {
        scores: dts.iter().map(|d| d.score).collect(),
        matched,
        ignored,
        gt_ignored,
    })
}

/// Indices of `scores` sorted by descending score, stable (numpy's mergesort on `-score`).
fn by_score_desc(scores: impl Iterator<Item = f64>) -> Vec<usize> {
    let s: Vec<f64> = scores.collect();
    let mut idx: Vec<usize> = (0..s.len()).collect();
    idx.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
    idx
}

/// Precision at the recall points and final recall for one threshold (`accumulate`'s
/// inner loop). `None` stands for pycocotools' -1 (no ground truth).
fn precision_recall(tp_fp: &[(bool, bool)], npig: usize, rec_thrs: &[f64]) -> (Vec<f64>, f64) {
    let (mut tp, mut fp) = (0.0f64, 0.0f64);
    let mut rc = Vec::with_capacity(tp_fp.len());
    let mut pr = Vec::with_capacity(tp_fp.len());
    for &(is_tp, is_fp) in tp_fp {
        tp += is_tp as u8 as f64;
        fp += is_fp as u8 as f64;
        rc.push(tp / npig as f64);
        pr.push(tp / (fp + tp + f64::EPSILON));
    }
    let recall = rc.last().copied().unwrap_or(0.0);
    for i in (1..pr.len()).rev() {
        if pr[i] > pr[i - 1] {
            pr[i - 1] = pr[i];
        }
    }
    let q = rec_thrs
        .iter()
        .map(|&r| {
            pr.get(rc.partition_point(|&x| x < r))
                .copied()
                .unwrap_or(0.0)
        })
        .collect();
    (q, recall)
}

/// pycocotools' mean of the defined entries, -1 when there are none.
fn mean(vals: &[f64]) -> f64 {
    if vals.is_empty() {
        -1.0
    } else {
        vals.iter().sum::<f64>() / vals.len() as f64
    }
}

/// Ground truths, and detections, grouped by (image, category) in file order.
type Cell<'a> = HashMap<(u64, u64), Vec<&'a GtBox>>;
type DetCell<'a> = HashMap<(u64, u64), Vec<&'a DetBox>>;

/// `accumulate` for one category: `(precision at the recall points, recall)` per
/// `(area, maxDets, threshold)`, `None` where pycocotools leaves -1.
fn evaluate_category(
    cat: u64,
    images: &[u64],
    gts: &Cell,
    dts: &DetCell,
    iou_thrs: &[f64],
    rec_thrs: &[f64],
) -> Vec<(Option<Vec<f64>>, Option<f64>)> {
    let max_det = MAX_DETS[2];
    let mut out = vec![(None, None); AREA_RANGES.len() * MAX_DETS.len() * T];
    // Per image: sorted, cut detections and their IoUs with every ground truth.
    let per_image: Vec<_> = images
        .iter()
        .map(|&img| {
            let g: &[&GtBox] = gts.get(&(img, cat)).map_or(&[], |v| v);
            let d: &[&DetBox] = dts.get(&(img, cat)).map_or(&[], |v| v);
            let mut d: Vec<&DetBox> = by_score_desc(d.iter().map(|d| d.score))
                .into_iter()
                .map(|i| d[i])
                .collect();
            d.truncate(max_det);
            let ious: Vec<Vec<f64>> = d
                .iter()
                .map(|d| {
                    g.iter()
                        .map(|g| bb_iou(&d.bbox, &g.bbox, g.iscrowd))
                        .collect()
                })
                .collect();
            (g, d, ious)
        })
        .collect();
    for (a, &range) in AREA_RANGES.iter().enumerate() {
        let evals: Vec<ImageEval> = per_image
            .iter()
            .filter_map(|(g, d, ious)| evaluate_image(g, d, ious, range, iou_thrs))
            .collect();
        if evals.is_empty() {
            continue;
        }
        let npig = evals
            .iter()
            .flat_map(|e| &e.gt_ignored)
            .filter(|&&i| !i)
            .count();
        if npig == 0 {
            continue;
        }
        for (m, &md) in MAX_DETS.iter().enumerate() {
            // (image, detection) pairs in image order, then merged by score.
            let pairs: Vec<(usize, usize)> = evals
                .iter()
                .enumerate()
                .flat_map(|(e, ev)| (0..ev.scores.len().min(md)).map(move |d| (e, d)))
                .collect();
            let order = by_score_desc(pairs.iter().map(|&(e, d)| evals[e].scores[d]));
            for t in 0..T {
                let tp_fp: Vec<(bool, bool)> = order
                    .iter()
                    .map(|&i| {
                        let (e, d) = pairs[i];
                        let (hit, ign) = (evals[e].matched[t][d], evals[e].ignored[t][d]);
                        (hit && !ign, !hit && !ign)
                    })
                    .collect();
                let (q, rc) = precision_recall(&tp_fp, npig, rec_thrs);
                out[(a * MAX_DETS.len() + m) * T + t] = (Some(q), Some(rc));
            }
        }
    }
    out
}

/// Evaluates `dets` against `gt` (see the module docs for the rule). Detections of
/// images or categories absent from `gt` are ignored, as in pycocotools (the result
/// file reader rejects unknown images before this).
pub fn coco_evaluate(gt: &CocoGroundTruth, dets: &[DetBox]) -> CocoStats {
    let iou_thrs = linspace(0.5, 0.95, T);
    let rec_thrs = linspace(0.0, 1.0, R);
    let mut images = gt.image_ids.clone();
    images.sort_unstable();
    images.dedup();
    let mut cats = gt.category_ids.clone();
    cats.sort_unstable();
    cats.dedup();

    let mut gts: Cell = HashMap::new();
    for g in &gt.annotations {
        gts.entry((g.image_id, g.category_id)).or_default().push(g);
    }
    let mut dts: DetCell = HashMap::new();
    for d in dets {
        dts.entry((d.image_id, d.category_id)).or_default().push(d);
    }

    // precision[k][a][m][t] -> R values; recall[k][a][m][t]; None = -1.
    let (na, nm) = (AREA_RANGES.len(), MAX_DETS.len());
    let at = |k: usize, a: usize, m: usize, t: usize| ((k * na + a) * nm + m) * T + t;

    let per_category: Vec<_> = cats
        .par_iter()
        .map(|&cat| evaluate_category(cat, &images, &gts, &dts, &iou_thrs, &rec_thrs))
        .collect();
    let (precision, recall): (Vec<_>, Vec<_>) = per_category.into_iter().flatten().unzip();

    let (precision, recall) = (&precision, &recall);
    let ap = |ts: &[usize], a: usize, ks: &[usize]| {
        let mut vals = Vec::new();
        for &k in ks {
            for &t in ts {
                if let Some(q) = &precision[at(k, a, 2, t)] {
                    vals.extend(q.iter().copied().filter(|&p| p > -1.0));
                }
            }
        }
        mean(&vals)
    };
    let ar = |a: usize, m: usize| {
        let vals: Vec<f64> = (0..cats.len())
            .flat_map(|k| (0..T).filter_map(move |t| recall[at(k, a, m, t)]))
            .collect();
        mean(&vals)
    };
    let all_t: Vec<usize> = (0..T).collect();
    let all_k: Vec<usize> = (0..cats.len()).collect();
    let stats = [
        ap(&all_t, 0, &all_k),
        ap(&[0], 0, &all_k),
        ap(&[5], 0, &all_k),
        ap(&all_t, 1, &all_k),
        ap(&all_t, 2, &all_k),
        ap(&all_t, 3, &all_k),
        ar(0, 0),
        ar(0, 1),
        ar(0, 2),
        ar(1, 2),
        ar(2, 2),
        ar(3, 2),
    ];
    let per_category_ap = cats
        .iter()
        .enumerate()
        .map(|(k, &c)| (c, ap(&all_t, 0, &[k])))
        .collect();
    CocoStats {
        stats,
        per_category_ap,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_numpys_linspace() {
        let iou = linspace(0.5, 0.95, 10);
        // The 6th threshold must compare equal to .75 (pycocotools selects AP75 by `==`).
        assert_eq!(iou[5], 0.75);
        assert_eq!(iou[0], 0.5);
        assert_eq!(iou[9], 0.95);
        let rec = linspace(0.0, 1.0, 101);
        assert_eq!(rec[1], 0.01);
        assert_eq!(rec[100], 1.0);
    }

    #[test]
    fn crowd_iou_divides_by_the_detection_area() {
        let d = [0.0, 0.0, 2.0, 2.0];
        let g = [1.0, 0.0, 10.0, 10.0];
        // Intersection 1x2 = 2; regular union 4 + 100 - 2, crowd union = detection area 4.
        assert_eq!(bb_iou(&d, &g, false), 2.0 / 102.0);
        assert_eq!(bb_iou(&d, &g, true), 0.5);
    }

    fn gt(image_id: u64, bbox: [f64; 4], iscrowd: bool) -> GtBox {
        GtBox {
            image_id,
            category_id: 1,
            bbox,
            area: bbox[2] * bbox[3],
            iscrowd,
        }
    }

    fn det(image_id: u64, bbox: [f64; 4], score: f64) -> DetBox {
        DetBox {
            image_id,
            category_id: 1,
            bbox,
            score,
        }
    }

    #[test]
    fn hand_computed_case() {
        // Two large objects; one perfect detection, one false positive ranked above
        // it, and one detection inside a crowd region (ignored, neither TP nor FP).
        let truth = CocoGroundTruth {
            image_ids: vec![1, 2],
            category_ids: vec![1, 2],
            annotations: vec![
                gt(1, [0.0, 0.0, 100.0, 100.0], false),
                gt(2, [0.0, 0.0, 100.0, 100.0], false),
                gt(2, [200.0, 200.0, 100.0, 100.0], true),
            ],
        };
        let dets = [
            det(1, [500.0, 500.0, 100.0, 100.0], 0.9),
            det(1, [0.0, 0.0, 100.0, 100.0], 0.8),
            det(2, [210.0, 210.0, 50.0, 50.0], 0.7),
        ];
        let s = coco_evaluate(&truth, &dets).stats;
        // Ranked: FP, TP (recall 1/2, precision 1/2), crowd-ignored. The envelope gives
        // precision 1/2 for recall points 0..=0.5 (51 points), 0 beyond: AP = 51/101 / 2
        // at every threshold.
        let ap = 51.0 / 101.0 / 2.0;
        for i in [0, 1, 2, 5] {
            assert!((s[i] - ap).abs() < 1e-12, "stat {i}: {}", s[i]);
        }
        // No small or medium objects; category 2 has no ground truth at all.
        assert_eq!(s[3], -1.0);
        assert_eq!(s[4], -1.0);
        // maxDets=1 keeps only the FP on image 1: recall 0; with 10 or 100: 1/2.
        assert_eq!(s[6], 0.0);
        assert_eq!(s[7], 0.5);
        assert_eq!(s[8], 0.5);
    }
}
