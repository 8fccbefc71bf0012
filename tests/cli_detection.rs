//! `afan train|eval|infer --task detection` end to end on generated `shapes-det` images written as
//! a VOC-layout folder with its own class names: training lowers the loss, a run stopped and
//! resumed equals the uninterrupted one, data-parallel and bf16 runs learn, evaluation prints VOC
//! mAP and writes a result file that `afan eval-detections` scores, inference on several images
//! draws, `afan export` writes the checkpoint's weights, and bad input gets one `error:` line.

use serde_json::Value;
use std::path::Path;

#[path = "support/cli.rs"]
mod cli;
#[path = "support/detection_data.rs"]
mod detection_data;
use cli::{json, records, s};
use detection_data::{TINY, tiny_devkit, write_coco, write_devkit, write_devkit_named};

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

/// Mean training loss of the first and the last record.
fn losses(run: &Path) -> (f64, f64) {
    let r = records(run);
    let l = |v: &Value| v["train_loss"].as_f64().unwrap();
    (l(&r[0]), l(r.last().unwrap()))
}

const CLASSES: [&str; 4] = ["zero", "one", "two", "three"];

#[test]
fn a_custom_voc_layout_trains_resumes_evaluates_and_infers() {
    let dir = tempfile::tempdir().unwrap();
    let devkit = dir.path().join("VOCdevkit");
    // Two training images: every step sees the same batch, so six steps must lower the loss.
    write_devkit_named(&devkit, "SHAPES", 2, 3, &CLASSES);
    let config = dir.path().join("tiny.toml");
    std::fs::write(&config, TINY).unwrap();
    let classes = dir.path().join("classes.txt");
    std::fs::write(&classes, CLASSES.join("\n")).unwrap();
    let run = dir.path().join("run");
    let common = [
        "train",
        "--task",
        "detection",
        "--config",
        s(&config),
        "--data",
        s(&devkit),
        "--classes",
        s(&classes),
        "--set",
        "train_sets=[\"SHAPES:trainval\"]",
        "--set",
        "test_set=\"SHAPES:test\"",
    ];

    // Without the class list the VOC names are expected, and the first unknown one is named.
    let e = fails(
        &common[..7]
            .iter()
            .chain(&common[9..])
            .copied()
            .collect::<Vec<_>>(),
    );
    assert!(
        e.contains("unknown class") && e.contains("aeroplane"),
        "{e}"
    );

    // Stopped after three iterations, then resumed to six.
    let mut first: Vec<&str> = common.to_vec();
    first.extend(["--stop-after", "3", "--out", s(&run), "--quiet"]);
    ok(&first);
    assert!(run.join("last.ckpt").is_file() && run.join("best.ckpt").is_file());
    let again = fails(&first);
    assert!(again.contains("already holds a run"), "{again}");
    let summary = json(&ok(&[
        "train",
        "--resume",
        "--out",
        s(&run),
        "--quiet",
        "--json",
    ]));
    assert_eq!(summary["iterations"], 6);
    assert_eq!(summary["task"], "detection");
    let rows = records(&run);
    let at: Vec<u64> = rows
        .iter()
        .map(|r| r["iteration"].as_u64().unwrap())
        .collect();
    assert_eq!(at, [3, 6]);
    let (l0, l1) = losses(&run);
    assert!(
        l1.is_finite() && l1 < 0.9 * l0,
        "loss did not fall: {l0} -> {l1}"
    );
    // The resumed run is the uninterrupted one: same batches, samples, optimizer state.
    let whole = dir.path().join("whole");
    let mut straight: Vec<&str> = common.to_vec();
    straight.extend(["--out", s(&whole), "--quiet"]);
    ok(&straight);
    assert_eq!(cli::without_times(&run), cli::without_times(&whole));

    // Evaluation: VOC mAP in [0, 100] and a result file that eval-detections scores the same.
    let ckpt = run.join("last.ckpt");
    let results = dir.path().join("dets.json");
    let eval = json(&ok(&[
        "eval",
        "--checkpoint",
        s(&ckpt),
        "--results",
        s(&results),
        "--quiet",
        "--json",
    ]));
    let map = eval["map07"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&map), "{eval}");
    assert_eq!(eval["images"], 3);
    assert!(eval["detections"].as_u64().unwrap() > 0, "{eval}");
    let text = ok(&["eval", "--checkpoint", s(&ckpt), "--quiet"]);
    assert!(text.contains("VOC mAP@0.5:"), "{text}");
    let coco = json(&ok(&[
        "eval-detections",
        "--gt",
        eval["ground_truth"].as_str().unwrap(),
        "--dt",
        s(&results),
        "--json",
    ]));
    for i in 0..12 {
        let (a, b) = (
            coco["stats"][i].as_f64().unwrap(),
            eval["coco"][i].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-9, "stat {i}: {a} vs {b}");
    }

    exports_like_the_checkpoint(dir.path(), &ckpt);

    // Inference on two test images, drawn into a folder, with the run's own class names.
    let image = |i: usize| devkit.join(format!("SHAPES/JPEGImages/00000{i}.jpg"));
    let (a, b) = (image(2), image(3));
    let drawn = dir.path().join("drawn");
    let out = json(&ok(&[
        "infer",
        "--checkpoint",
        s(&ckpt),
        "--image",
        s(&a),
        s(&b),
        "--out",
        s(&drawn),
        "--json",
    ]));
    assert_eq!(out.as_array().unwrap().len(), 2);
    for img in out.as_array().unwrap() {
        for b in img["boxes"].as_array().unwrap() {
            let x2 = b["x2"].as_f64().unwrap();
            assert!(b["x1"].as_f64().unwrap() < x2 && x2 <= 64.0 + 1e-3, "{b}");
            assert!(CLASSES.contains(&b["label"].as_str().unwrap()), "{b}");
        }
    }
    let png = image::open(drawn.join("000003.png")).unwrap();
    assert_eq!((png.width(), png.height()), (64, 64));
    let e = fails(&[
        "infer",
        "--checkpoint",
        s(&ckpt),
        "--image",
        s(&a),
        "--top-k",
        "3",
    ]);
    assert!(e.contains("--top-k") && e.contains("detection"), "{e}");
}

/// Two replicas of the CPU device (one image each) and bf16 passes train the detector through
/// the same engine, and both lower the loss on the two images they see.
#[test]
fn data_parallel_and_bf16_detectors_learn() {
    let dir = tempfile::tempdir().unwrap();
    let (devkit, config) = tiny_devkit(dir.path(), 2, 1);
    for (name, flags) in [
        ("dp", ["--device", "cpu,cpu"]),
        ("bf16", ["--precision", "bf16"]),
    ] {
        let run = dir.path().join(name);
        let mut args = vec![
            "train",
            "--config",
            s(&config),
            "--data",
            s(&devkit),
            "--out",
            s(&run),
        ];
        args.extend(flags);
        let (_, stderr) = cli::succeed(&args);
        if name == "dp" {
            assert!(stderr.contains("data-parallel over 2 devices"), "{stderr}");
        }
        let (l0, l1) = losses(&run);
        assert!(
            l1.is_finite() && l1 < 0.9 * l0,
            "{name}: loss did not fall: {l0} -> {l1}"
        );
        assert_eq!(
            records(&run)[1]["train_loss_parts"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
    }
}

#[test]
fn bad_detection_input_gets_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tiny.toml");
    std::fs::write(&config, TINY).unwrap();
    let missing = dir.path().join("nowhere");
    let e = fails(&[
        "train",
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
        "--config",
        s(&config),
        "--data",
        s(&devkit),
        "--model",
        "resnet19",
    ]);
    assert!(e.contains("resnet19"), "{e}");
    let e = fails(&["train", "--config", s(&config), "--task", "segment"]);
    assert!(
        e.contains("--task segmentation") && e.contains("detection"),
        "{e}"
    );
    let e = fails(&["eval", "--task", "detection", "--checkpoint", s(&config)]);
    assert!(e.contains("tiny.toml"), "{e}");
    let e = fails(&["bench", "--task", "detect", "--size", "600by800"]);
    assert!(e.contains("--size") && e.contains("600by800"), "{e}");
    let e = fails(&["bench", "--task", "detect", "--model", "resnet50"]);
    assert!(e.contains("--model") && e.contains("detection"), "{e}");
    // The rows `cargo xtask bench --rounds` times one at a time, interleaved with PyTorch's.
    assert_eq!(
        ok(&["bench", "--task", "detect", "--list-children"]),
        "baseline\nafan\n"
    );
    assert_eq!(
        ok(&["bench", "--task", "segment", "--list-children"]),
        "mobilenet_v2,features.13,baseline\nmobilenet_v2,features.13,afan\n\
         resnet50,layer3,baseline\nresnet50,layer3,afan\n"
    );
    let e = fails(&["bench", "--list-children"]);
    assert!(
        e.contains("--list-children") && e.contains("detection"),
        "{e}"
    );
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
        "--iterations",
        "2",
        "--set",
        "eval_every=2",
        "--out",
        s(&run),
        "--quiet",
    ]);
    let results = dir.path().join("dets.json");
    let eval = json(&ok(&[
        "eval",
        "--checkpoint",
        s(&run.join("best.ckpt")),
        "--results",
        s(&results),
        "--quiet",
        "--json",
    ]));
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
    // The run records COCO AP as its headline.
    assert!(records(&run)[0]["eval_coco_ap"].is_number());
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
        json(&ok(&[
            "eval-detections",
            "--gt",
            s(&gt),
            "--dt",
            s(dt),
            "--json",
        ]))["stats"]
            .clone()
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

/// `afan export` of a detection checkpoint: the file holds the release's `Detection/model.py`
/// names, loads strictly into a fresh detector and gives back the checkpoint's weights exactly.
fn exports_like_the_checkpoint(dir: &Path, ckpt: &Path) {
    use afan_models::{PytorchExport, StateDict};
    use afan_train::{Checkpoint, Task, detection::DetectionTask};
    let out = dir.join("detector.pth");
    let summary = json(&ok(&[
        "export",
        "--checkpoint",
        s(ckpt),
        "--out",
        s(&out),
        "--json",
    ]));
    assert_eq!(summary["format"], "pth", "{summary}");
    let dict = StateDict::from_file(&out).unwrap();
    assert!(dict.keys().any(|k| k.starts_with("rpn.")), "rpn keys");

    let c = Checkpoint::read(ckpt).unwrap();
    let config = c
        .config(&afan_train::detection::config::release(), &[])
        .unwrap();
    let task = DetectionTask::without_data(config, c.class_names());
    let device = burn::tensor::Device::default();
    let want = c
        .load_model(task.build_model(&device, false).unwrap())
        .unwrap()
        .to_state_dict()
        .unwrap();
    let back = task
        .build_model(&device, false)
        .unwrap()
        .load_release(&dict)
        .unwrap()
        .to_state_dict()
        .unwrap();
    cli::same_state_dict(&dict, &want);
    cli::same_state_dict(&back, &want);
}
