//! `afan train/eval/infer --task segmentation` end to end on a tiny VOC-layout folder with its own
//! classes and a Cityscapes folder, written here in their official layouts. The mIoU `afan eval`
//! reports is checked against a confusion matrix the test builds itself from `afan infer`'s masks
//! and the ground truth the test generated (not read back through the loaders under test).

use afan_data::segmentation::{read_mask, write_palette_png};
use std::fs;
use std::path::{Path, PathBuf};

#[path = "support/cli.rs"]
mod cli;
use cli::{afan, fail, json, records, succeed};

const W: u32 = 40;
const H: u32 = 36;

/// `f(x, y)` over a `W x H` image in row-major order.
fn pixels(f: impl Fn(u32, u32) -> u8) -> Vec<u8> {
    (0..H)
        .flat_map(|y| (0..W).map(move |x| (x, y)))
        .map(|(x, y)| f(x, y))
        .collect()
}

/// VOC-layout image `i`: a bright square (label 1, `square`) on a dark background (0), top row
/// 255.
fn voc_label(i: u32, x: u32, y: u32) -> u8 {
    let x0 = 4 + 3 * i;
    if (x0..x0 + 16).contains(&x) && (8..24).contains(&y) {
        1
    } else if y == 0 {
        255
    } else {
        0
    }
}

/// Six 40x36 images of `voc_label` in `VOCdevkit/SQUARES`; four train, two val.
fn write_voc(root: &Path) {
    let voc = root.join("VOCdevkit/SQUARES");
    for dir in ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation"] {
        fs::create_dir_all(voc.join(dir)).unwrap();
    }
    let mut ids = Vec::new();
    for i in 0..6u32 {
        let id = format!("2007_00000{i}");
        image::RgbImage::from_fn(W, H, |x, y| {
            if voc_label(i, x, y) == 1 {
                image::Rgb([220, 200, 180])
            } else {
                image::Rgb([30, 40, 50])
            }
        })
        .save(voc.join(format!("JPEGImages/{id}.jpg")))
        .unwrap();
        let mask = pixels(|x, y| voc_label(i, x, y));
        write_palette_png(
            &voc.join(format!("SegmentationClass/{id}.png")),
            &mask,
            W as usize,
            H as usize,
        )
        .unwrap();
        ids.push(id);
    }
    let sets = voc.join("ImageSets/Segmentation");
    fs::write(sets.join("train.txt"), ids[..4].join("\n")).unwrap();
    fs::write(sets.join("val.txt"), ids[4..].join("\n")).unwrap();
}

/// Evaluation on full images (`val_crop = 0`; the VOC release preset crops to 513), so that
/// `eval` scores what `infer` predicts.
const SMALL: [&str; 16] = [
    "--set",
    "model.backbone={mobilenet_v2={width_mult=0.25}}",
    "--set",
    "voc_aug=false",
    "--set",
    "val_crop=0",
    "--set",
    "augment.crop=32",
    "--iterations",
    "3",
    "--set",
    "eval_every=\"end\"",
    "--batch-size",
    "2",
    "--split",
    "features.6",
];

/// The VOC-layout folder of `write_voc`, and its two labels.
const SQUARES: [&str; 6] = [
    "--classes",
    "background,square",
    "--set",
    "train_set=\"SQUARES:train\"",
    "--set",
    "test_set=\"SQUARES:val\"",
];

/// Cityscapes label id of pixel `(x, y)` of image `i`: sky (23) above, road (7) below, a car (26)
/// sliding across, the top row unlabeled (0, ignored).
fn city_label(i: u32, x: u32, y: u32) -> u8 {
    let x0 = 3 + 4 * i;
    if y == 0 {
        0
    } else if (x0..x0 + 14).contains(&x) && (10..26).contains(&y) {
        26
    } else if y >= 22 {
        7
    } else {
        23
    }
}

/// The train ids of the label ids `city_label` uses, from cityscapesScripts' `labels.py`.
fn city_train_id(id: u8) -> u8 {
    match id {
        7 => 0,
        23 => 10,
        26 => 13,
        _ => 255,
    }
}

/// Three train images (city `aachen`) and two val images (city `frankfurt`) in the official
/// layout; returns the val images with their ground truth in train ids.
fn write_cityscapes(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut val = Vec::new();
    for i in 0..5u32 {
        let (split, city) = if i < 3 {
            ("train", "aachen")
        } else {
            ("val", "frankfurt")
        };
        let stem = format!("{city}_000000_00000{i}");
        let img_dir = root.join("leftImg8bit").join(split).join(city);
        let gt_dir = root.join("gtFine").join(split).join(city);
        fs::create_dir_all(&img_dir).unwrap();
        fs::create_dir_all(&gt_dir).unwrap();
        let image = img_dir.join(format!("{stem}_leftImg8bit.png"));
        image::RgbImage::from_fn(W, H, |x, y| match city_label(i, x, y) {
            26 => image::Rgb([200, 30, 30]),
            23 => image::Rgb([120, 170, 240]),
            7 => image::Rgb([90, 90, 90]),
            _ => image::Rgb([0, 0, 0]),
        })
        .save(&image)
        .unwrap();
        image::GrayImage::from_raw(W, H, pixels(|x, y| city_label(i, x, y)))
            .unwrap()
            .save(gt_dir.join(format!("{stem}_gtFine_labelIds.png")))
            .unwrap();
        if split == "val" {
            val.push((image, pixels(|x, y| city_train_id(city_label(i, x, y)))));
        }
    }
    val
}

/// The mean IoU over the classes present in the predictions or the ground truth (255 ignored),
/// from a confusion matrix built here.
fn independent_miou(pairs: &[(Vec<u8>, Vec<u8>)], classes: usize) -> f64 {
    let mut m = vec![vec![0u64; classes]; classes];
    for (pred, gt) in pairs {
        assert_eq!(pred.len(), gt.len());
        for (&p, &g) in pred.iter().zip(gt) {
            if g != 255 {
                m[usize::from(g)][usize::from(p)] += 1;
            }
        }
    }
    let ious: Vec<f64> = (0..classes)
        .filter_map(|c| {
            let row: u64 = m[c].iter().sum();
            let col: u64 = m.iter().map(|r| r[c]).sum();
            let union = row + col - m[c][c];
            (union > 0).then(|| m[c][c] as f64 / union as f64)
        })
        .collect();
    ious.iter().sum::<f64>() / ious.len() as f64
}

/// Trains into `run` from `data` with `extra` flags, evaluates it, infers every `val` image and
/// checks the reported mIoU against `independent_miou`; returns the training summary.
fn train_eval_infer(
    data: &Path,
    run: &Path,
    extra: &[&str],
    val: &[(PathBuf, Vec<u8>)],
    classes: usize,
) -> serde_json::Value {
    let mut args = vec!["train", "--task", "segment", "--quiet", "--json"];
    args.extend([
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ]);
    args.extend(SMALL);
    args.extend(extra);
    let summary = json(&succeed(&args).0);
    assert_eq!(summary["iterations"], 3);
    assert_eq!(
        summary["evaluation"]["class_iou"].as_array().unwrap().len(),
        classes
    );
    let run = run.to_str().unwrap();
    let scores = json(&succeed(&["eval", "--checkpoint", run, "--json"]).0);
    // The same model on the same split scores what training reported last.
    assert_eq!(scores["mean_iou"], summary["evaluation"]["mean_iou"]);

    // Every evaluation image in one call; masks and overlays named after the images.
    let masks = Path::new(run).join("masks");
    let mut infer = vec![
        "infer",
        "--checkpoint",
        run,
        "--out",
        masks.to_str().unwrap(),
    ];
    infer.push("--overlay");
    infer.push("--image");
    infer.extend(val.iter().map(|(image, _)| image.to_str().unwrap()));
    succeed(&infer);
    let mut pairs = Vec::new();
    for (image, gt) in val {
        let stem = image.file_stem().unwrap().to_str().unwrap();
        let mask = masks.join(format!("{stem}.png"));
        let overlay = masks.join(format!("{stem}.overlay.png"));
        let (labels, w, h) = read_mask(&mask).unwrap();
        assert_eq!((w, h), (W as usize, H as usize));
        // The overlay keeps background pixels and tints the others towards their class colour.
        let (tinted, photo) = (
            image::open(&overlay).unwrap().to_rgb8(),
            image::open(image).unwrap().to_rgb8(),
        );
        assert_eq!(tinted.dimensions(), photo.dimensions());
        for (i, (&l, (a, b))) in labels
            .iter()
            .zip(tinted.pixels().zip(photo.pixels()))
            .enumerate()
        {
            assert_eq!(l == 0, a == b, "overlay pixel {i} (label {l})");
        }
        assert!(labels.iter().all(|&l| usize::from(l) < classes));
        pairs.push((labels, gt.clone()));
    }
    let expected = independent_miou(&pairs, classes);
    let reported = scores["mean_iou"].as_f64().unwrap();
    assert!(
        (reported - expected).abs() < 1e-9,
        "eval reports mIoU {reported}, the inferred masks score {expected}"
    );
    summary
}

/// A VOC-layout folder that is not VOC 2012, with two labels of its own.
#[test]
fn custom_voc_layout_train_eval_infer() {
    let dir = tempfile::tempdir().unwrap();
    write_voc(dir.path());
    let jpeg = |i: u32| {
        dir.path()
            .join(format!("VOCdevkit/SQUARES/JPEGImages/2007_00000{i}.jpg"))
    };
    let val: Vec<_> = (4..6)
        .map(|i| (jpeg(i), pixels(|x, y| voc_label(i, x, y))))
        .collect();
    train_eval_infer(dir.path(), &dir.path().join("run"), &SQUARES, &val, 2);
    // The class list and the class count the run recorded.
    let cfg = dir.path().join("run/config.toml");
    let cfg: toml::Table = toml::from_str(&std::fs::read_to_string(cfg).unwrap()).unwrap();
    assert_eq!(cfg["classes"].as_array().unwrap().len(), 2, "{cfg:?}");
    assert_eq!(cfg["model"]["num_classes"].as_integer(), Some(2), "{cfg:?}");
}

/// Cityscapes from the CLI, baseline and A-FAN: 19 train ids, label ids mapped, unlabeled
/// pixels ignored.
#[test]
fn cityscapes_baseline_and_afan_train_eval_infer() {
    let dir = tempfile::tempdir().unwrap();
    let val = write_cityscapes(dir.path());
    for method in ["baseline", "afan"] {
        let run = dir.path().join(method);
        let mut flags = vec!["--method", method];
        flags.extend(CITYSCAPES);
        train_eval_infer(dir.path(), &run, &flags, &val, 19);
        // The run's checkpoints, not a first-format model.bin.
        assert!(run.join("best.ckpt").is_file() && !run.join("model.bin").exists());
    }
}

/// `--dataset cityscapes` starts from the Cityscapes release preset.
const CITYSCAPES: [&str; 2] = ["--dataset", "cityscapes"];

/// An A-FAN run stopped after 2 of 4 iterations and resumed from its `last.ckpt` ends where the
/// uninterrupted run ends: the same loss at every evaluation (full precision), the same first and
/// last losses and scores, the same predicted mask. (Separate processes: the backend's random
/// generator is process-wide, so in-process tests running in parallel would disturb it.)
#[test]
fn resumed_run_equals_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let val = write_cityscapes(dir.path());
    let train = |out: &Path, extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["train", "--task", "segment", "--quiet", "--json"];
        args.extend(["--data", dir.path().to_str().unwrap()]);
        args.extend(["--out", out.to_str().unwrap()]);
        args.extend(SMALL);
        args.extend(CITYSCAPES);
        args.extend(["--set", "iterations=4", "--set", "eval_every=2"]);
        args.extend(extra);
        json(&succeed(&args).0)
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let full = train(&a, &[]);
    let half = train(&b, &["--stop-after", "2"]);
    assert_eq!(half["iterations"], 2);
    assert!(b.join("last.ckpt").is_file());
    let b_str = b.to_str().unwrap();
    let resume = [
        "train", "--task", "segment", "--quiet", "--json", "--resume",
    ];
    let resumed = json(&succeed(&[&resume[..], &["--out", b_str]].concat()).0);
    for key in [
        "iterations",
        "first_loss",
        "last_loss",
        "last",
        "best",
        "evaluation",
    ] {
        assert_eq!(full[key], resumed[key], "{key}");
    }
    assert_eq!(cli::without_times(&a), cli::without_times(&b));
    assert_eq!(records(&a).len(), 2);
    let masks: Vec<Vec<u8>> = [&a, &b]
        .iter()
        .map(|run| {
            let out = run.join("masks");
            succeed(&[
                "infer",
                "--checkpoint",
                run.to_str().unwrap(),
                "--image",
                val[0].0.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ]);
            let stem = val[0].0.file_stem().unwrap().to_str().unwrap();
            read_mask(&out.join(format!("{stem}.png"))).unwrap().0
        })
        .collect();
    assert_eq!(masks[0], masks[1]);
    // A finished run has nothing to resume: one clear error.
    let err = fail(&[&resume[..], &["--out", b_str]].concat());
    assert!(err.contains("already trained 4 of its 4"), "{err}");
}

/// Two replicas of the CPU device and bf16 passes train a DeepLab through the same engine, and
/// both lower the loss on the generated shapes.
#[test]
fn data_parallel_and_bf16_deeplabs_learn() {
    let dir = tempfile::tempdir().unwrap();
    for (name, flags) in [
        ("dp", ["--device", "cpu,cpu"]),
        ("bf16", ["--precision", "bf16"]),
    ] {
        let run = dir.path().join(name);
        let mut args = vec![
            "train",
            "--task",
            "segmentation",
            "--method",
            "baseline",
            "--quiet",
            "--out",
            run.to_str().unwrap(),
            "--iterations",
            "16",
            "--batch-size",
            "4",
            "--set",
            "synthetic.train=16",
            "--set",
            "synthetic.test=8",
            "--set",
            "eval_every=8",
            "--set",
            "model.aspp_channels=32",
        ];
        args.extend(flags);
        succeed(&args);
        let r = records(&run);
        let (l0, l1) = (
            r[0]["train_loss"].as_f64().unwrap(),
            r[1]["train_loss"].as_f64().unwrap(),
        );
        assert!(
            l1.is_finite() && l1 < 0.9 * l0,
            "{name}: loss did not fall: {l0} -> {l1}"
        );
    }
}

#[test]
fn a_missing_listed_file_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    write_voc(dir.path());
    fs::remove_file(
        dir.path()
            .join("VOCdevkit/SQUARES/SegmentationClass/2007_000002.png"),
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
    args.extend(SQUARES);
    let out = afan(&args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2007_000002.png") && err.contains("train.txt"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// `afan export` of a DeepLab run: both formats hold the same state dict, with the release's
/// (VainF's, for MobileNetV2) names, which loads strictly into a fresh model and gives back the
/// checkpoint's weights exactly.
#[test]
fn export_writes_the_checkpoints_deeplab_in_both_formats() {
    use afan_models::{PytorchExport, StateDict};
    use afan_train::{Checkpoint, Purpose, Task, segmentation::SegmentationTask};
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut args = vec!["train", "--task", "segment", "--quiet", "--json"];
    args.extend(["--set", "dataset=\"synthetic\"", "--out", cli::s(&run)]);
    args.extend(SMALL);
    succeed(&args);
    let dicts: Vec<StateDict> = ["seg.safetensors", "seg.pth"]
        .iter()
        .map(|name| {
            let out = dir.path().join(name);
            let ckpt = run.join("best.ckpt");
            let (stdout, _) = succeed(&[
                "export",
                "--checkpoint",
                cli::s(&ckpt),
                "--out",
                cli::s(&out),
            ]);
            assert!(stdout.contains("deeplabv3plus_mobilenet_v2"), "{stdout}");
            StateDict::from_file(&out).unwrap()
        })
        .collect();

    let ckpt = Checkpoint::read(&run.join("best.ckpt")).unwrap();
    let config = ckpt
        .config(&afan_train::segmentation::config::release(), &[])
        .unwrap();
    let task = SegmentationTask::open(config, Purpose::Infer).unwrap();
    let device = burn::tensor::Device::default();
    let want = ckpt
        .load_model(task.build_model(&device, false).unwrap())
        .unwrap()
        .to_state_dict()
        .unwrap();
    let fresh = task.build_model(&device, false).unwrap();
    let back = fresh
        .load_release(&dicts[1])
        .unwrap()
        .to_state_dict()
        .unwrap();
    assert!(
        want.keys()
            .any(|k| k.starts_with("backbone.low_level_features."))
    );
    for dict in [&dicts[0], &dicts[1], &back] {
        cli::same_state_dict(dict, &want);
    }
}
