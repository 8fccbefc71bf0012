//! `afan train|eval|infer --task detect` end to end on generated `shapes-det` images written as a
//! VOCdevkit: training lowers the loss, checkpoints resume, evaluation prints VOC mAP and writes a
//! result file that `afan eval-detections` scores, inference draws, and bad input gets one
//! `error:` line.

use afan_data::detection::voc::VOC_CLASSES;
use serde_json::Value;
use std::path::Path;

#[path = "support/cli.rs"]
mod cli;
#[path = "support/detect_data.rs"]
mod detect_data;
use detect_data::{TINY, write_coco, write_devkit};

fn ok(args: &[&str]) -> String {
    cli::succeed(args).0
}

/// Runs a command that must fail with exactly one `error:` line (no panic); returns it.
fn fails(args: &[&str]) -> String {
    let out = cli::afan(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("training "))
        .collect();
    assert!(
        out.status.code() == Some(1) && errors.len() == 1 && errors[0].starts_with("error: "),
        "{args:?} should fail with one error line:\n{stderr}"
    );
    errors[0].to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn metrics(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn train_resume_eval_infer_on_a_voc_layout() {
    let dir = tempfile::tempdir().unwrap();
    let devkit = dir.path().join("VOCdevkit");
    // Two training images: every step sees the same batch, so six steps must lower the loss.
    write_devkit(&devkit, 2, 3);
    let config = dir.path().join("tiny.toml");
    std::fs::write(&config, TINY).unwrap();
    let run = dir.path().join("run");
    let common = [
        "train",
        "--task",
        "detect",
        "--config",
        s(&config),
        "--data",
        s(&devkit),
    ];

    // Three iterations, then resumed to six.
    let mut first: Vec<&str> = common.to_vec();
    first.extend(["--iterations", "3", "--out", s(&run), "--quiet"]);
    ok(&first);
    assert!(run.join("last.ckpt").is_file() && run.join("best.ckpt").is_file());
    let again = fails(&first);
    assert!(again.contains("already holds a run"), "{again}");
    let summary: Value = serde_json::from_str(&ok(&[
        "train",
        "--task",
        "detect",
        "--resume",
        "--out",
        s(&run),
        "--iterations",
        "6",
        "--quiet",
        "--json",
    ]))
    .unwrap();
    assert_eq!(summary["iterations"], 6);
    let rows = metrics(&run);
    assert_eq!(
        rows.iter()
            .map(|r| r["iteration"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [3, 6]
    );
    let (l0, l1) = (
        rows[0]["train_loss"].as_f64().unwrap(),
        rows[1]["train_loss"].as_f64().unwrap(),
    );
    assert!(
        l1.is_finite() && l1 < 0.9 * l0,
        "loss did not fall: {l0} -> {l1}"
    );
    // The resumed run is the uninterrupted one: same batches, samples, optimizer state.
    let whole = dir.path().join("whole");
    let mut straight: Vec<&str> = common.to_vec();
    straight.extend(["--out", s(&whole), "--quiet"]);
    ok(&straight);
    let w = metrics(&whole);
    assert_eq!(w.len(), 2);
    for (a, b) in rows.iter().zip(&w) {
        assert_eq!(a["train_loss"], b["train_loss"], "resumed vs uninterrupted");
        assert_eq!(a["map07"], b["map07"], "resumed vs uninterrupted");
    }

    // Evaluation: VOC mAP in [0, 100] and a result file that eval-detections scores the same.
    let ckpt = run.join("last.ckpt");
    let results = dir.path().join("dets.json");
    let eval: Value = serde_json::from_str(&ok(&[
        "eval",
        "--task",
        "detect",
        "--checkpoint",
        s(&ckpt),
        "--results",
        s(&results),
        "--quiet",
        "--json",
    ]))
    .unwrap();
    let map = eval["map07"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&map), "{eval}");
    assert_eq!(eval["images"], 3);
    let text = ok(&[
        "eval",
        "--task",
        "detect",
        "--checkpoint",
        s(&ckpt),
        "--quiet",
    ]);
    assert!(text.contains("VOC mAP@0.5:"), "{text}");
    let gt = eval["ground_truth"].as_str().unwrap();
    assert!(eval["detections"].as_u64().unwrap() > 0, "{eval}");
    {
        let coco: Value = serde_json::from_str(&ok(&[
            "eval-detections",
            "--gt",
            gt,
            "--dt",
            s(&results),
            "--json",
        ]))
        .unwrap();
        for i in 0..12 {
            let (a, b) = (
                coco["stats"][i].as_f64().unwrap(),
                eval["coco"][i].as_f64().unwrap(),
            );
            assert!((a - b).abs() < 1e-9, "stat {i}: {a} vs {b}");
        }
    }

    // Inference on a test image, drawn.
    let image = devkit.join("VOC2007/JPEGImages/000002.jpg");
    let drawn = dir.path().join("drawn.png");
    let out: Value = serde_json::from_str(&ok(&[
        "infer",
        "--task",
        "detect",
        "--checkpoint",
        s(&ckpt),
        "--image",
        s(&image),
        "--draw",
        s(&drawn),
        "--json",
    ]))
    .unwrap();
    for b in out["boxes"].as_array().unwrap() {
        let x2 = b["x2"].as_f64().unwrap();
        assert!(b["x1"].as_f64().unwrap() < x2 && x2 <= 64.0 + 1e-3, "{b}");
        assert!(VOC_CLASSES.contains(&b["label"].as_str().unwrap()), "{b}");
    }
    let png = image::open(&drawn).unwrap();
    assert_eq!((png.width(), png.height()), (64, 64));
}

#[test]
fn bad_detection_input_gets_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tiny.toml");
    std::fs::write(&config, TINY).unwrap();
    let missing = dir.path().join("nowhere");
    let e = fails(&[
        "train",
        "--task",
        "detect",
        "--config",
        s(&config),
        "--data",
        s(&missing),
        "--out",
        s(&dir.path().join("r1")),
    ]);
    assert!(e.contains("nowhere") && e.contains("VOCdevkit"), "{e}");
    assert!(
        !dir.path().join("r1").exists(),
        "bad input left a run directory"
    );

    let devkit = dir.path().join("VOCdevkit");
    write_devkit(&devkit, 2, 1);
    let xml = devkit.join("VOC2007/Annotations/000001.xml");
    std::fs::write(&xml, "<annotation><size><width>64</width>").unwrap();
    let e = fails(&[
        "train",
        "--task",
        "detect",
        "--config",
        s(&config),
        "--data",
        s(&devkit),
        "--out",
        s(&dir.path().join("r2")),
    ]);
    assert!(
        e.contains("000001.xml") && e.contains("not a VOC annotation"),
        "{e}"
    );

    let e = fails(&[
        "train",
        "--task",
        "detect",
        "--config",
        s(&config),
        "--data",
        s(&devkit),
        "--set",
        "detector.backbone=resnet19",
    ]);
    assert!(e.contains("resnet19"), "{e}");
    let e = fails(&["eval", "--task", "detect", "--checkpoint", s(&config)]);
    assert!(e.contains("tiny.toml"), "{e}");
    let e = fails(&["bench", "--task", "detect", "--det-image", "600by800"]);
    assert!(e.contains("--det-image") && e.contains("600by800"), "{e}");
}

#[test]
fn coco_layout_trains_and_reports_the_twelve_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let coco = dir.path().join("coco");
    write_coco(&coco, 2, 3);
    let config = dir.path().join("tiny.toml");
    std::fs::write(&config, TINY).unwrap();
    let run = dir.path().join("run");
    ok(&[
        "train",
        "--task",
        "detect",
        "--config",
        s(&config),
        "--dataset",
        "coco",
        "--data",
        s(&coco),
        "--set",
        "train_sets=[\"train2017\"]",
        "--set",
        "test_set=val2017",
        "--set",
        "detector.num_classes=4",
        "--iterations",
        "2",
        "--set",
        "eval_every=2",
        "--out",
        s(&run),
        "--quiet",
    ]);
    let results = dir.path().join("dets.json");
    let eval: Value = serde_json::from_str(&ok(&[
        "eval",
        "--task",
        "detect",
        "--checkpoint",
        s(&run.join("best.ckpt")),
        "--results",
        s(&results),
        "--quiet",
        "--json",
    ]))
    .unwrap();
    assert!(
        eval["map07"].is_null(),
        "COCO data reports no VOC mAP: {eval}"
    );
    let stats = eval["coco"].as_array().unwrap();
    assert_eq!(stats.len(), 12);
    assert!(
        stats
            .iter()
            .all(|v| (-1.0..=1.0).contains(&v.as_f64().unwrap())),
        "{eval}"
    );
    // The result file speaks the instances file's category ids.
    let dets: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&results).unwrap()).unwrap();
    assert!(
        dets.iter()
            .all(|d| [1, 2, 3, 5].contains(&d["category_id"].as_u64().unwrap())),
        "{dets:?}"
    );
    // Image 3 has no objects: it is evaluated (an untrained detector fires everywhere), its
    // detections are false positives, and the figures are those of the whole result file, as
    // COCOeval scores every image id of the ground truth.
    assert_eq!(eval["images"], 3, "{eval}");
    let on_empty = dets.iter().filter(|d| d["image_id"] == 3).count();
    assert!(on_empty > 0, "no detections on the image without objects");
    let gt = coco.join("annotations/instances_val2017.json");
    let coco_stats = |dt: &Path| -> Value {
        let out: Value = serde_json::from_str(&ok(&[
            "eval-detections",
            "--gt",
            s(&gt),
            "--dt",
            s(dt),
            "--json",
        ]))
        .unwrap();
        out["stats"].clone()
    };
    assert_eq!(coco_stats(&results), eval["coco"]);
    // Without them, precision can only rise: the recall-averaged AP is at least as high.
    let kept: Vec<&Value> = dets.iter().filter(|d| d["image_id"] != 3).collect();
    let fewer = dir.path().join("fewer.json");
    std::fs::write(&fewer, serde_json::to_string(&kept).unwrap()).unwrap();
    let (all, without) = (
        eval["coco"][1].as_f64().unwrap(),
        coco_stats(&fewer)[1].as_f64().unwrap(),
    );
    assert!(without >= all, "AP50 {all} with vs {without} without");
}
