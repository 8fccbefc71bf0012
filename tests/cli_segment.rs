//! `afan train/eval/infer --task segment` end to end on a tiny VOC 2012 folder written here in
//! the devkit layout (JPEG images, palette PNG masks, split lists).

use afan_data::seg::{read_mask, write_palette_png};
use std::fs;
use std::path::Path;

#[path = "support/cli.rs"]
mod cli;
use cli::afan;

/// Six 40x36 images: a bright square (class 15, person) on a dark background, border 255.
fn write_voc(root: &Path) {
    let voc = root.join("VOCdevkit/VOC2012");
    for dir in ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation"] {
        fs::create_dir_all(voc.join(dir)).unwrap();
    }
    let (w, h) = (40u32, 36u32);
    let mut ids = Vec::new();
    for i in 0..6u32 {
        let id = format!("2007_00000{i}");
        let x0 = 4 + 3 * i;
        let inside = |x: u32, y: u32| (x0..x0 + 16).contains(&x) && (8..24).contains(&y);
        image::RgbImage::from_fn(w, h, |x, y| {
            if inside(x, y) {
                image::Rgb([220, 200, 180])
            } else {
                image::Rgb([30, 40, 50])
            }
        })
        .save(voc.join(format!("JPEGImages/{id}.jpg")))
        .unwrap();
        let mask: Vec<u8> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| {
                if inside(x, y) {
                    15
                } else if y == 0 {
                    255
                } else {
                    0
                }
            })
            .collect();
        write_palette_png(
            &voc.join(format!("SegmentationClass/{id}.png")),
            &mask,
            40,
            36,
        )
        .unwrap();
        ids.push(id);
    }
    let sets = voc.join("ImageSets/Segmentation");
    fs::write(sets.join("train.txt"), ids[..4].join("\n")).unwrap();
    fs::write(sets.join("val.txt"), ids[4..].join("\n")).unwrap();
}

const SMALL: [&str; 14] = [
    "--set",
    "model.backbone={mobilenet_v2={width_mult=0.25}}",
    "--set",
    "data.voc_aug=false",
    "--set",
    "data.augment.crop=32",
    "--set",
    "iterations=3",
    "--set",
    "eval_every=0",
    "--set",
    "batch_size=2",
    "--set",
    "afan.backbone.split=\"features.6\"",
];

#[test]
fn voc_train_eval_infer() {
    let dir = tempfile::tempdir().unwrap();
    write_voc(dir.path());
    let data = dir.path().to_str().unwrap();
    let run = dir.path().join("run");
    let mut args = vec![
        "train", "--task", "segment", "--data", data, "--quiet", "--json",
    ];
    args.extend(["--out", run.to_str().unwrap()]);
    args.extend(SMALL);
    let out = afan(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["iterations"], 3);
    assert_eq!(summary["scores"]["class_iou"].as_array().unwrap().len(), 21);

    let out = afan(&[
        "eval",
        "--task",
        "segment",
        "--checkpoint",
        run.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scores: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The same model on the same split scores what training reported last.
    assert_eq!(scores["mean_iou"], summary["scores"]["mean_iou"]);

    let image = dir
        .path()
        .join("VOCdevkit/VOC2012/JPEGImages/2007_000005.jpg");
    let mask = dir.path().join("mask.png");
    let out = afan(&[
        "infer",
        "--task",
        "segment",
        "--checkpoint",
        run.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--out",
        mask.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (labels, w, h) = read_mask(&mask).unwrap();
    assert_eq!((w, h), (40, 36));
    assert!(labels.iter().all(|&l| l < 21));
}

#[test]
fn a_missing_listed_file_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    write_voc(dir.path());
    fs::remove_file(
        dir.path()
            .join("VOCdevkit/VOC2012/SegmentationClass/2007_000002.png"),
    )
    .unwrap();
    let mut args = vec![
        "train",
        "--task",
        "segment",
        "--data",
        dir.path().to_str().unwrap(),
    ];
    let out_dir = dir.path().join("run");
    args.extend(["--quiet", "--out", out_dir.to_str().unwrap()]);
    args.extend(SMALL);
    let out = afan(&args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2007_000002.png") && err.contains("train.txt"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
