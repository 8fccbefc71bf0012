//! Detection evaluation: VOC mAP (07 11-point and area) and COCO's 12 numbers, and the COCO
//! result file; the `afan eval --task detect` command.

use super::data::{TestSet, test_set};
use super::model::{build, images, load};
use crate::train::progress_bar;
use afan_data::detection::batch::{aspect_grouped_batches, load_batch};
use afan_data::detection::coco::{CocoResult, write_results};
use afan_data::detection::eval::{
    ApRule, COCO_STAT_KEYS, DetBox, Detection, coco_evaluate, voc_map,
};
use afan_data::detection::{BoxXyxy, DetectionLoaderConfig, DetectionSource};
use afan_models::FasterRcnn;
use anyhow::Result;
use burn::tensor::Device;
use serde::Serialize;
use std::path::PathBuf;

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
}

/// Detections of `model` on every image of `test`, in original-image coordinates.
pub fn detect_all(
    model: &FasterRcnn,
    test: &TestSet,
    loader: &DetectionLoaderConfig,
    device: &Device,
    quiet: bool,
) -> Result<Vec<Detection>> {
    let sizes: Vec<(usize, usize)> = (0..test.source.len())
        .map(|i| test.source.size(i))
        .collect();
    let batches = aspect_grouped_batches(&sizes, loader, 0);
    let bar = progress_bar(batches.len(), "eval".into(), quiet);
    let mut out = Vec::new();
    for idx in batches {
        let batch = load_batch(&test.source, &idx, loader, 0)?;
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
        .collect::<Result<_, _>>()?)
}

/// `afan eval --task detect` arguments.
#[derive(clap::Args, Debug)]
pub struct DetEvalArgs {
    /// A detection checkpoint (`RUN/best.ckpt`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Dataset folder; default: the run's.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where to write the COCO-format result file (default: next to the checkpoint,
    /// `<name>.detections.json`, with the ground truth as `<name>.gt.json`).
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Backend device.
    #[arg(long, env = "BURN_DEVICE", default_value = "cpu")]
    pub device: String,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Evaluates a checkpoint and writes its detections.
pub fn run(args: DetEvalArgs) -> Result<()> {
    let device = crate::device::parse_device(&args.device)?;
    let ckpt = load(&args.checkpoint)?;
    let mut config = ckpt.state.config.clone();
    if let Some(d) = args.data {
        config.data = Some(d);
    }
    let test = test_set(&config)?;
    let model = crate::checkpoint::load_record(
        build_plain(&config, &device)?,
        ckpt.model,
        &args.checkpoint,
    )?;
    let loader = eval_loader(&config);
    let dets = detect_all(&model, &test, &loader, &device, args.quiet)?;
    let eval = score(&test, &dets)?;
    let results = args
        .results
        .unwrap_or_else(|| args.checkpoint.with_extension("detections.json"));
    let gt_path = results.with_extension("").with_extension("gt.json");
    let out = coco_results(&test, &dets)?;
    write_results(&results, &out)?;
    std::fs::write(&gt_path, serde_json::to_string(&test.instances)?)?;
    if args.json {
        let mut v = serde_json::to_value(&eval)?;
        v["results"] = serde_json::json!(results);
        v["ground_truth"] = serde_json::json!(gt_path);
        println!("{v}");
    } else {
        print!("{}", report(&eval, test.coco));
        println!(
            "detections: {} (COCO result file; ground truth {})",
            results.display(),
            gt_path.display()
        );
    }
    Ok(())
}

/// The detector without its initial weights (a checkpoint replaces them all).
fn build_plain(config: &super::config::DetectConfig, device: &Device) -> Result<FasterRcnn> {
    let mut c = config.clone();
    c.weights = None;
    build(&c, device)
}

/// Evaluation batches: dataset order, no flip.
pub fn eval_loader(config: &super::config::DetectConfig) -> DetectionLoaderConfig {
    DetectionLoaderConfig {
        batch_size: config.batch_size,
        resize: config.resize,
        hflip: false,
        shuffle: false,
        size_divisibility: 16,
        seed: config.seed,
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
