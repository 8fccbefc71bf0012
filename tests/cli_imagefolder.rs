//! ImageNet-layout training from the CLI: `ROOT/{train,val}/CLASS/*.png` written from the
//! generated shapes, a torchvision ResNet (A-FAN) and an EfficientNet (baseline) trained on it
//! with small crops, evaluated, and a broken layout refused with one clear error.

use afan_data::{ImageDataset, shapes10};
use serde_json::Value;
use std::path::Path;

#[path = "support/cli.rs"]
mod cli;

/// Writes the first `classes` classes of `data` as PNG files under `dir/CLASS/`.
fn write_folder(dir: &Path, data: &ImageDataset, classes: usize) {
    let (h, w) = (data.height, data.width);
    for (i, &label) in data.labels.iter().enumerate() {
        if label as usize >= classes {
            continue;
        }
        let px = &data.images[i * 3 * h * w..(i + 1) * 3 * h * w];
        let img = image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
            let p = y as usize * w + x as usize;
            image::Rgb([px[p], px[h * w + p], px[2 * h * w + p]])
        });
        let class = dir.join(&data.class_names[label as usize]);
        std::fs::create_dir_all(&class).unwrap();
        img.save(class.join(format!("{i:05}.png"))).unwrap();
    }
}

#[test]
fn imagefolder_trains_torchvision_models_and_refuses_broken_layouts() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("imagenet");
    let (train, val) = shapes10(160, 48, 4);
    write_folder(&root.join("train"), &train, 4);
    write_folder(&root.join("val"), &val, 4);
    let r = root.to_str().unwrap();
    let common = [
        "--dataset",
        "imagefolder",
        "--data",
        r,
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--quiet",
        "--json",
        "--set",
        "folder.crop=32",
        "--set",
        "folder.resize=32",
        "--set",
        "schedule.warmup=0",
        "--lr",
        "0.02",
    ];
    for (model, method, extra) in [
        (
            "resnet18",
            "afan",
            vec!["--split", "layer2", "--pgd-steps", "1"],
        ),
        ("efficientnet_b0", "baseline", vec![]),
    ] {
        let out = tmp.path().join(model);
        let mut args = vec![
            "train",
            "--model",
            model,
            "--method",
            method,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(common);
        args.extend(extra);
        let (stdout, _) = cli::succeed(&args);
        let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(summary["epochs"], 1.0, "{summary}");
        let line: Value = serde_json::from_str(
            std::fs::read_to_string(out.join("metrics.jsonl"))
                .unwrap()
                .trim(),
        )
        .unwrap();
        assert!(line["train_loss"].as_f64().unwrap().is_finite(), "{line}");
        // `afan eval` on the checkpoint evaluates the val/ folder again, to the same top-1.
        let ckpt = out.join("last.ckpt");
        let (stdout, _) = cli::succeed(&["eval", "--checkpoint", ckpt.to_str().unwrap(), "--json"]);
        let eval: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(
            eval["samples"].as_u64().unwrap() as usize,
            val.labels.iter().filter(|&&l| l < 4).count()
        );
        assert_eq!(eval["top1"], summary["last"], "{eval} vs {summary}");
    }
    // A val/ folder with other classes than train/.
    std::fs::create_dir_all(root.join("val").join("zebra")).unwrap();
    image::RgbImage::new(8, 8)
        .save(root.join("val/zebra/z.png"))
        .unwrap();
    let last = cli::fail(&[
        "train",
        "--model",
        "resnet18",
        "--dataset",
        "imagefolder",
        "--data",
        r,
        "--epochs",
        "1",
        "--quiet",
    ]);
    assert!(last.contains("class folders"), "{last}");
}
