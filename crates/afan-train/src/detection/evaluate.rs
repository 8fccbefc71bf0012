//! Detection evaluation: VOC mAP (07 11-point and area) and COCO's 12 numbers, and the COCO
//! result file that `afan eval-detections` (or pycocotools) scores.

use super::data::TestSet;
use super::model::images;
use crate::error::{Result, TrainError};
use crate::task::{Evaluation, Value};
use afan_data::Corruption;
use afan_data::detection::batch::{DetectionBatch, aspect_grouped_batches, load_batch};
use afan_data::detection::coco::{CocoResult, write_results as write_coco_results};
use afan_data::detection::eval::{
    ApRule, COCO_STAT_KEYS, DetBox, Detection, coco_evaluate, voc_map,
};
use afan_data::detection::{BoxXyxy, DetectionLoaderConfig, DetectionSource};
use afan_models::FasterRcnn;
use burn::tensor::Device;
use serde::Serialize;

/// Evaluation figures of one detector on one set.
#[derive(Clone, Debug, Serialize)]
pub struct DetEval {
    /// VOC mAP@0.5, VOC2007 11-point AP, percent (NaN for COCO data).
    pub map07: f64,
    /// VOC mAP@0.5, area under the precision envelope, percent.
    pub map_area: f64,
    /// COCO's 12 numbers (AP, AP50, ..., ARl), fractions.
    pub coco: Vec<f64>,
    /// Images evaluated.
    pub images: usize,
    /// Detections reported.
    pub detections: usize,
}

impl DetEval {
    /// The figure that picks the best checkpoint: VOC07 mAP, or COCO AP (percent).
    pub fn headline(&self, coco: bool) -> f64 {
        if coco {
            100.0 * self.coco[0]
        } else {
            self.map07
        }
    }

    /// As the engine records it: VOC07 mAP (`map07`) or COCO AP (`coco_ap`, percent) is the
    /// headline; the other figures beside it.
    pub fn evaluation(&self, coco: bool) -> Evaluation {
        let mut figures = Vec::new();
        if !coco {
            figures.push(("map07".into(), Value::Scalar(self.map07)));
            figures.push(("map_area".into(), Value::Scalar(self.map_area)));
        }
        figures.push(("coco_ap".into(), Value::Scalar(100.0 * self.coco[0])));
        let text = if coco {
            format!(
                "COCO AP {:.2} (AP50 {:.2})",
                100.0 * self.coco[0],
                100.0 * self.coco[1]
            )
        } else {
            format!(
                "mAP07 {:.2}  mAP {:.2}  AP {:.3}",
                self.map07, self.map_area, self.coco[0]
            )
        };
        Evaluation {
            headline: self.headline(coco),
            headline_name: if coco { "coco_ap" } else { "map07" }.into(),
            loss: None,
            figures,
            report: serde_json::to_value(self).unwrap_or_default(),
            text,
        }
    }
}

/// Detections of `model` on every image of `test`, in original-image coordinates; with
/// `corruption`, on the corrupted copy of each image.
pub fn detect_all(
    model: &FasterRcnn,
    test: &TestSet,
    loader: &DetectionLoaderConfig,
    device: &Device,
    quiet: bool,
    corruption: Option<&Corruption>,
) -> Result<Vec<Detection>> {
    let sizes: Vec<(usize, usize)> = (0..test.source.len())
        .map(|i| test.source.size(i))
        .collect();
    let batches = aspect_grouped_batches(&sizes, loader, 0);
    let bar = crate::progress::bar(batches.len(), "eval", quiet);
    let mut out = Vec::new();
    for idx in batches {
        let mut batch = load_batch(&test.source, &idx, loader, 0)?;
        if let Some(c) = corruption {
            corrupt(&mut batch, &idx, c);
        }
        let (x, sizes) = images(&batch, device);
        for (i, d) in model.detect(x, &sizes).into_iter().enumerate() {
            let s = batch.scales[i];
            for ((b, &score), &label) in d.boxes.iter().zip(&d.scores).zip(&d.labels) {
                let [x1, y1, x2, y2] = b.map(|v| v as f64 / s);
                out.push(Detection {
                    image_id: batch.image_ids[i],
                    label: label - 1,
                    bbox: BoxXyxy::new(x1, y1, x2, y2),
                    score: score as f64,
                });
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Corrupts each image of a padded batch inside its own size (at the size the detector sees it,
/// in [0, 1] before the detector's normalisation); the zero padding stays zero, and a
/// contrast's channel mean is the image's, not the padding's.
fn corrupt(batch: &mut DetectionBatch, indices: &[usize], c: &Corruption) {
    let (ph, pw) = (batch.height, batch.width);
    for (b, (&(h, w), &index)) in batch.image_sizes.iter().zip(indices).enumerate() {
        let at = |ch: usize, y: usize| ((b * 3 + ch) * ph + y) * pw;
        let mut image = Vec::with_capacity(3 * h * w);
        for ch in 0..3 {
            for y in 0..h {
                image.extend_from_slice(&batch.images[at(ch, y)..at(ch, y) + w]);
            }
        }
        c.apply_to_image(&mut image, (3, h, w), index);
        for (row, line) in image.chunks_exact(w).enumerate() {
            let (ch, y) = (row / h, row % h);
            batch.images[at(ch, y)..at(ch, y) + w].copy_from_slice(line);
        }
    }
}

/// VOC and COCO figures of `dets` against `test`'s ground truth.
pub fn score(test: &TestSet, dets: &[Detection]) -> Result<DetEval> {
    let k = test.instances.categories.len();
    let (map07, map_area) = if test.coco {
        (f64::NAN, f64::NAN)
    } else {
        (
            100.0 * voc_map(&test.records, dets, k, ApRule::ElevenPoint)?.map,
            100.0 * voc_map(&test.records, dets, k, ApRule::Area)?.map,
        )
    };
    let gt = test.instances.ground_truth();
    let results = coco_results(test, dets)?;
    let boxes: Vec<DetBox> = results
        .iter()
        .map(|r| DetBox {
            image_id: r.image_id,
            category_id: r.category_id,
            bbox: r.bbox,
            score: r.score,
        })
        .collect();
    Ok(DetEval {
        map07,
        map_area,
        coco: coco_evaluate(&gt, &boxes).stats.to_vec(),
        images: test.source.len(),
        detections: dets.len(),
    })
}

/// The detections as COCO results (category ids of the ground truth).
pub fn coco_results(test: &TestSet, dets: &[Detection]) -> Result<Vec<CocoResult>> {
    let map = test.label_map();
    Ok(dets
        .iter()
        .map(|d| CocoResult::from_detection(d, &map))
        .collect::<std::result::Result<_, _>>()?)
}

/// Writes the detections as a COCO result file at `results` and the ground truth as a COCO
/// instances file beside it (`<name>.gt.json`); returns the ground truth's path.
pub fn write_results(
    test: &TestSet,
    dets: &[Detection],
    results: &std::path::Path,
) -> Result<std::path::PathBuf> {
    let gt_path = results.with_extension("").with_extension("gt.json");
    write_coco_results(results, &coco_results(test, dets)?)?;
    let gt = serde_json::to_string(&test.instances)
        .map_err(|e| TrainError::Config(format!("cannot encode the ground truth: {e}")))?;
    crate::fsutil::write_atomic(&gt_path, gt.as_bytes())?;
    Ok(gt_path)
}

/// Evaluation batches: dataset order, no flip.
pub fn eval_loader(
    config: &super::config::DetectionConfig,
    batch_size: usize,
) -> DetectionLoaderConfig {
    DetectionLoaderConfig {
        batch_size,
        resize: config.resize,
        hflip: false,
        shuffle: false,
        size_divisibility: 16,
        seed: 0,
    }
}

/// Human-readable figures.
pub fn report(e: &DetEval, coco: bool) -> String {
    let mut s = String::new();
    if !coco {
        s += &format!(
            "VOC mAP@0.5: {:.2} (07 11-point), {:.2} (area) on {} images, {} detections\n",
            e.map07, e.map_area, e.images, e.detections
        );
    }
    let coco_line: Vec<String> = COCO_STAT_KEYS
        .iter()
        .zip(&e.coco)
        .map(|(k, v)| format!("{k} {:.3}", v))
        .collect();
    s += &format!("COCO: {}\n", coco_line.join("  "));
    s
}
