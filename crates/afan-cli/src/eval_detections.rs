//! `afan eval-detections`: COCO's 12 box numbers for any COCO-format result file.
//!
//! The numbers are pycocotools' (see `afan_data::detection::eval::coco_eval`), so
//! results from afan and from other detectors can be compared on equal terms
//! without a Python install.

use afan_data::detection::coco::{CocoInstances, read_results};
use afan_data::detection::eval::{COCO_STAT_KEYS, CocoStats, coco_evaluate};
use anyhow::Result;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct EvalDetectionsArgs {
    /// Ground truth: a COCO instances file (e.g. annotations/instances_val2017.json).
    #[arg(long)]
    gt: PathBuf,
    /// Detections: a COCO result file, a JSON list of {image_id, category_id, bbox, score}.
    #[arg(long)]
    dt: PathBuf,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: EvalDetectionsArgs) -> Result<()> {
    let instances = CocoInstances::read(&args.gt)?;
    let gt = instances.ground_truth();
    let dets = read_results(&args.dt, &gt)?;
    let stats = coco_evaluate(&gt, &dets);
    if args.json {
        let names: HashMap<u64, &str> = instances
            .categories
            .iter()
            .map(|c| (c.id, c.name.as_str()))
            .collect();
        println!("{}", to_json(&stats, &names));
    } else {
        print!("{}", table(&stats));
    }
    Ok(())
}

fn to_json(stats: &CocoStats, names: &HashMap<u64, &str>) -> Value {
    let mut obj: Map<String, Value> = COCO_STAT_KEYS
        .iter()
        .zip(stats.stats)
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    obj.insert("stats".into(), json!(stats.stats));
    let per_category: Vec<Value> = stats
        .per_category_ap
        .iter()
        .map(|(id, ap)| json!({"id": id, "name": names.get(id), "AP": ap}))
        .collect();
    obj.insert("per_category".into(), Value::Array(per_category));
    Value::Object(obj)
}

/// pycocotools' `summarize()` printout, line for line.
fn table(stats: &CocoStats) -> String {
    let rows = [
        (true, "0.50:0.95", "all", 100),
        (true, "0.50", "all", 100),
        (true, "0.75", "all", 100),
        (true, "0.50:0.95", "small", 100),
        (true, "0.50:0.95", "medium", 100),
        (true, "0.50:0.95", "large", 100),
        (false, "0.50:0.95", "all", 1),
        (false, "0.50:0.95", "all", 10),
        (false, "0.50:0.95", "all", 100),
        (false, "0.50:0.95", "small", 100),
        (false, "0.50:0.95", "medium", 100),
        (false, "0.50:0.95", "large", 100),
    ];
    rows.iter()
        .zip(stats.stats)
        .map(|(&(ap, iou, area, max_dets), v)| {
            let (title, kind) = if ap {
                ("Average Precision", "(AP)")
            } else {
                ("Average Recall", "(AR)")
            };
            format!(" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6} | maxDets={max_dets:>3} ] = {v:.3}\n")
        })
        .collect()
}
