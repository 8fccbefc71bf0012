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

pub use super::coco_types::{
    AREA_RANGES, COCO_STAT_KEYS, COCO_STAT_NAMES, CocoGroundTruth, CocoStats, DetBox, GtBox,
    MAX_DETS,
};

const T: usize = 10;
const R: usize = 101;

/// `np.linspace(start, stop, num)` bit for bit: `i * step + start`, last = `stop`.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
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
/// inner loop), given (TP, FP) of the detections in score order.
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
#[path = "coco_eval_tests.rs"]
mod tests;
