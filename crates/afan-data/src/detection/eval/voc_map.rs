//! Pascal VOC mAP at IoU 0.5, as the devkit and py-faster-rcnn's `voc_eval` compute it.
//!
//! Per class, detections of all images are sorted by score; each is a true
//! positive when its best-overlapping ground truth of that class and image (the
//! first one on ties) has IoU > 0.5 (strictly), is not `difficult` and was not
//! matched before; a detection whose best match is difficult counts as neither;
//! everything else is a false positive. Recall divides by the non-difficult
//! ground truths. AP then follows one of two rules (see [`ApRule`]).
//!
//! Boxes are continuous corners (see [`crate::detection::boxes`]); with VOC's
//! 1-based pixel boxes converted by [`BoxXyxy::from_voc_pixels`] the plain IoU
//! here equals the devkit's `+ 1` IoU exactly. Two choices where `voc_eval`
//! leaves things undefined: ties in score keep input order (a stable sort, where
//! numpy's default quicksort is unspecified), and a class without any
//! non-difficult ground truth has no AP (`None`, left out of the mean) instead of
//! `voc_eval`'s NaN.

use std::collections::HashMap;

use super::super::boxes::BoxXyxy;
use super::super::record::DetectionRecord;
use crate::DataError;

/// How precision/recall becomes AP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApRule {
    /// VOC2007: mean of the best precision at recall >= 0, 0.1, ..., 1.0 (11 points).
    ElevenPoint,
    /// VOC2010 and later: area under the monotone precision envelope.
    Area,
}

/// One detection, in the dataset's contiguous labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    /// `image_id` of the [`DetectionRecord`] it was found in.
    pub image_id: u64,
    /// Predicted class (0-based, no background).
    pub label: usize,
    /// Box in continuous corners.
    pub bbox: BoxXyxy,
    /// Confidence; higher first.
    pub score: f64,
}

/// mAP and its parts.
#[derive(Clone, Debug, PartialEq)]
pub struct VocMap {
    /// AP per class; `None` for a class without non-difficult ground truth.
    pub per_class: Vec<Option<f64>>,
    /// Mean over the classes that have an AP (NaN if none has).
    pub map: f64,
}

/// AP from the cumulative recall and precision of the ranked detections.
pub fn average_precision(rec: &[f64], prec: &[f64], rule: ApRule) -> f64 {
    match rule {
        ApRule::ElevenPoint => (0..=10)
            .map(|i| {
                // np.arange(0., 1.1, 0.1): i * 0.1, so 0.30000000000000004 as the devkit.
                let t = i as f64 * 0.1;
                let p = rec
                    .iter()
                    .zip(prec)
                    .filter(|&(&r, _)| r >= t)
                    .map(|(_, &p)| p)
                    .fold(f64::NEG_INFINITY, f64::max);
                if p == f64::NEG_INFINITY {
                    0.0
                } else {
                    p / 11.0
                }
            })
            .sum(),
        ApRule::Area => {
            let mrec: Vec<f64> = [0.0]
                .into_iter()
                .chain(rec.iter().copied())
                .chain([1.0])
                .collect();
            let mut mpre: Vec<f64> = [0.0]
                .into_iter()
                .chain(prec.iter().copied())
                .chain([0.0])
                .collect();
            for i in (1..mpre.len()).rev() {
                mpre[i - 1] = mpre[i - 1].max(mpre[i]);
            }
            (0..mrec.len() - 1)
                .filter(|&i| mrec[i + 1] != mrec[i])
                .map(|i| (mrec[i + 1] - mrec[i]) * mpre[i + 1])
                .sum()
        }
    }
}

/// AP of one class; `None` when it has no non-difficult ground truth.
fn class_ap(
    records: &[DetectionRecord],
    index: &HashMap<u64, usize>,
    dets: &[&Detection],
    class: usize,
    rule: ApRule,
) -> Option<f64> {
    let npos: usize = records
        .iter()
        .map(|r| {
            r.labels
                .iter()
                .zip(&r.difficult)
                .filter(|&(&l, &d)| l == class && !d)
                .count()
        })
        .sum();
    if npos == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..dets.len()).collect();
    order.sort_by(|&a, &b| dets[b].score.total_cmp(&dets[a].score));
    let mut taken: HashMap<(usize, usize), bool> = HashMap::new();
    let (mut tp, mut fp) = (0.0, 0.0);
    let (mut rec, mut prec) = (Vec::new(), Vec::new());
    for &i in &order {
        let d = dets[i];
        let r = &records[index[&d.image_id]];
        let mut best: Option<(usize, f64)> = None;
        for (j, b) in r.boxes.iter().enumerate() {
            if r.labels[j] != class {
                continue;
            }
            let iou = d.bbox.iou(b);
            if best.is_none_or(|(_, o)| iou > o) {
                best = Some((j, iou));
            }
        }
        match best {
            Some((j, o)) if o > 0.5 => {
                if !r.difficult[j] {
                    let t = taken.entry((index[&d.image_id], j)).or_insert(false);
                    if *t {
                        fp += 1.0;
                    } else {
                        *t = true;
                        tp += 1.0;
                    }
                }
            }
            _ => fp += 1.0,
        }
        rec.push(tp / npos as f64);
        prec.push(tp / f64::max(tp + fp, f64::EPSILON));
    }
    Some(average_precision(&rec, &prec, rule))
}

/// VOC mAP@0.5 of `dets` against the ground truth in `records` (all images of the
/// split, with `difficult` flags), over `num_classes` classes. Fails for a
/// detection of an unknown image or class: that is a bug in the caller, and
/// `voc_eval` would fail too.
pub fn voc_map(
    records: &[DetectionRecord],
    dets: &[Detection],
    num_classes: usize,
    rule: ApRule,
) -> Result<VocMap, DataError> {
    let index: HashMap<u64, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.image_id, i))
        .collect();
    let mut by_class: Vec<Vec<&Detection>> = vec![Vec::new(); num_classes];
    for (i, d) in dets.iter().enumerate() {
        if !index.contains_key(&d.image_id) || d.label >= num_classes {
            return Err(DataError::Inconsistent(format!(
                "detection {i} is of image {} and class {}, but the ground truth has no such \
                 image or only {num_classes} classes",
                d.image_id, d.label
            )));
        }
        by_class[d.label].push(d);
    }
    let per_class: Vec<Option<f64>> = (0..num_classes)
        .map(|c| class_ap(records, &index, &by_class[c], c, rule))
        .collect();
    let defined: Vec<f64> = per_class.iter().flatten().copied().collect();
    let map = defined.iter().sum::<f64>() / defined.len() as f64;
    Ok(VocMap { per_class, map })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eleven_point_and_area_by_hand() {
        // Ranked TP, FP, TP of 2 positives: recall .5 .5 1, precision 1 .5 2/3.
        let rec = [0.5, 0.5, 1.0];
        let prec = [1.0, 0.5, 2.0 / 3.0];
        // 11-point: t = 0..0.5 (6 points) -> 1, t = 0.6..1.0 (5 points) -> 2/3.
        let ap07 = average_precision(&rec, &prec, ApRule::ElevenPoint);
        assert!((ap07 - (6.0 + 5.0 * 2.0 / 3.0) / 11.0).abs() < 1e-12);
        // Area: 0.5 * 1 + 0.5 * 2/3.
        let area = average_precision(&rec, &prec, ApRule::Area);
        assert!((area - (0.5 + 1.0 / 3.0)).abs() < 1e-12);
    }
}
