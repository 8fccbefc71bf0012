//! Checkpoints written by the `afan` of before the engine (`tests/fixtures/v1`, with the commands
//! that made them) still load: each evaluates to the figure the old binary recorded when it
//! wrote the file, predicts, and serves as initial weights; none can be resumed.

use std::io::Read;
use std::path::{Path, PathBuf};

#[path = "support/cli.rs"]
mod cli;
use cli::{fail, json, s, succeed};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/v1")
        .join(rel)
}

/// A gzipped fixture, unpacked into `dir`.
fn gunzip(rel: &str, dir: &Path) -> PathBuf {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(fixture(rel)).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    let name = Path::new(rel).file_stem().unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn first_format_classifiers_evaluate_predict_and_initialise() {
    // The run: ResNet-20 on 128 + 64 generated images; the old binary reported top-1 12.5%.
    for name in ["best.ckpt", "last.ckpt"] {
        let ckpt = fixture(&format!("classification/{name}"));
        let eval = json(&succeed(&["eval", "--checkpoint", s(&ckpt), "--json"]).0);
        assert_eq!(
            (eval["top1"].as_f64(), eval["samples"].as_u64()),
            (Some(12.5), Some(64))
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("x.png");
    image::RgbImage::from_pixel(32, 32, image::Rgb([200, 30, 30]))
        .save(&png)
        .unwrap();
    let best = fixture("classification/best.ckpt");
    let top = json(&succeed(&["infer", "--weights", s(&best), "--image", s(&png), "--json"]).0);
    assert_eq!(top[0]["top"].as_array().unwrap().len(), 5);
    // Initial weights of a new run (same architecture), and never a run to resume.
    let out = dir.path().join("run");
    let (_, stderr) = succeed(&[
        "train",
        "--weights",
        s(&best),
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--set",
        "synthetic.train=32",
        "--set",
        "synthetic.test=32",
        "--method",
        "baseline",
        "--out",
        s(&out),
        "--quiet",
    ]);
    assert!(stderr.contains("initial weights from"), "{stderr}");
    let old = dir.path().join("old");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::copy(fixture("classification/last.ckpt"), old.join("last.ckpt")).unwrap();
    std::fs::copy(out.join("config.toml"), old.join("config.toml")).unwrap();
    let e = fail(&["train", "--out", s(&old), "--resume", "--quiet"]);
    assert!(
        e.contains("format 1") && e.contains("cannot be resumed"),
        "{e}"
    );
}

#[test]
fn first_format_detectors_evaluate_to_their_recorded_map() {
    let dir = tempfile::tempdir().unwrap();
    // ResNet-18 quick-start detector after one step; the old binary recorded VOC07 mAP
    // 1.4367644290917947 on the 8 generated test images.
    for name in ["best.ckpt.gz", "last.ckpt.gz"] {
        let ckpt = gunzip(&format!("detection/{name}"), dir.path());
        let eval = json(&succeed(&["eval", "--checkpoint", s(&ckpt), "--quiet", "--json"]).0);
        let map = eval["map07"].as_f64().unwrap();
        assert!((map - 1.4367644290917947).abs() < 1e-6, "{eval}");
        assert_eq!(eval["images"], 8);
    }
    let ckpt = dir.path().join("best.ckpt");
    let png = dir.path().join("x.png");
    image::RgbImage::from_pixel(64, 64, image::Rgb([10, 200, 30]))
        .save(&png)
        .unwrap();
    let out = json(
        &succeed(&[
            "infer",
            "--checkpoint",
            s(&ckpt),
            "--image",
            s(&png),
            "--json",
        ])
        .0,
    );
    assert!(out[0]["boxes"].is_array(), "{out}");
}

#[test]
fn first_format_segmentation_runs_evaluate_to_their_recorded_miou() {
    // DeepLabV3+ MobileNetV2 x0.25 (8 ASPP channels) after two steps; mIoU 0.09338757762604954 on
    // 4 generated images. The run directory (model.bin + config.toml) and its last.ckpt.
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    for f in ["model.bin", "config.toml"] {
        std::fs::copy(fixture(&format!("segmentation/{f}")), run.join(f)).unwrap();
    }
    for path in [run.clone(), fixture("segmentation/last.ckpt")] {
        let eval = json(&succeed(&["eval", "--checkpoint", s(&path), "--quiet", "--json"]).0);
        let miou = eval["mean_iou"].as_f64().unwrap();
        assert!(
            (miou - 0.09338757762604954).abs() < 1e-9,
            "{}: {eval}",
            path.display()
        );
    }
    let png = dir.path().join("x.png");
    image::RgbImage::from_pixel(32, 32, image::Rgb([10, 20, 200]))
        .save(&png)
        .unwrap();
    let masks = dir.path().join("masks");
    succeed(&[
        "infer",
        "--checkpoint",
        s(&run),
        "--image",
        s(&png),
        "--out",
        s(&masks),
    ]);
    assert!(masks.join("x.png").is_file());
}
