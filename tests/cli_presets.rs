//! The presets in `configs/`: every file parses (the dry run `--print-config` does: defaults,
//! file and flags merged and validated), each `*-release.toml` equals the engine's release preset
//! of its task and dataset field by field (so the file, `--print-config` and a run without
//! `--config` agree), and the fields that make them the release have the values of the release
//! scripts, transcribed here by hand from the files they cite.

use std::path::{Path, PathBuf};

#[path = "support/cli.rs"]
mod cli;
use cli::succeed;

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

/// The resolved configuration of `afan train ARGS --data /data --print-config`.
fn resolved(args: &[&str]) -> toml::Value {
    let mut a = vec!["train"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--data", "/data", "--print-config"]);
    toml::from_str(&succeed(&a).0).unwrap()
}

fn file(name: &str) -> toml::Value {
    let path = configs().join(name);
    resolved(&["--config", path.to_str().unwrap()])
}

#[test]
fn every_preset_file_parses() {
    let mut names: Vec<_> = std::fs::read_dir(configs())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 15, "{names:?}");
    for name in names {
        let v = file(&name);
        let task = v["task"].as_str().unwrap();
        assert!(name == "quickstart.toml" || !task.is_empty(), "{name}");
    }
}

#[test]
fn release_files_equal_the_engine_presets() {
    for (name, preset) in [
        (
            "cifar10-resnet56-release.toml",
            vec!["--task", "classification"],
        ),
        (
            "cifar10-resnet56-learnable-release.toml",
            vec!["--task", "classification", "--method", "afan_learnable"],
        ),
        (
            "voc07-faster-rcnn-r50-release.toml",
            vec!["--task", "detection"],
        ),
        (
            "coco-faster-rcnn-r50-release.toml",
            vec!["--task", "detection", "--dataset", "coco"],
        ),
        (
            "voc2012-deeplabv3plus-r50-release.toml",
            vec!["--task", "segmentation"],
        ),
        (
            "cityscapes-deeplabv3plus-r50-release.toml",
            vec!["--task", "segmentation", "--dataset", "cityscapes"],
        ),
    ] {
        assert_eq!(file(name), resolved(&preset), "{name}");
    }
}

fn float(v: &toml::Value) -> f64 {
    v.as_float()
        .or_else(|| v.as_integer().map(|i| i as f64))
        .unwrap()
}

fn int(v: &toml::Value) -> i64 {
    v.as_integer().unwrap()
}

#[test]
fn release_presets_hold_the_release_scripts_values() {
    // Classification/cmd/run_perturb.sh + main_perturb.py + dataset.py.
    let c = file("cifar10-resnet56-release.toml");
    assert_eq!(int(&c["seed"]), 3);
    assert_eq!(int(&c["epochs"]), 200);
    assert_eq!(int(&c["batch_size"]), 128);
    assert_eq!(float(&c["optim"]["lr"]), 0.1);
    assert_eq!(float(&c["optim"]["weight_decay"]), 5e-4);
    assert_eq!(
        c["schedule"]["milestones"],
        toml::Value::try_from([50, 150]).unwrap()
    );
    assert_eq!(c["schedule"]["warmup_rule"].as_str(), Some("release"));
    assert_eq!(float(&c["schedule"]["warmup_start"]), 0.0);
    assert_eq!(int(&c["val_split"]), 5000);
    assert_eq!(c["val_holdout"].as_str(), Some("last"));
    assert_eq!(c["afan"]["mask"].as_str(), Some("0"));
    assert_eq!(float(&c["afan"]["pgd"]["step_size"]), 0.5);
    assert_eq!(int(&c["afan"]["pgd"]["steps"]), 5);

    // Classification/main_learnable.py (its defaults: no script runs it) + dataset.py.
    let l = file("cifar10-resnet56-learnable-release.toml");
    assert_eq!(l["method"].as_str(), Some("afan_learnable"));
    assert_eq!(int(&l["epochs"]), 200);
    assert_eq!(int(&l["batch_size"]), 128);
    assert_eq!(float(&l["optim"]["lr"]), 0.1);
    assert_eq!(float(&l["optim"]["momentum"]), 0.9);
    assert_eq!(float(&l["optim"]["weight_decay"]), 5e-4);
    assert_eq!(l["schedule"], c["schedule"]);
    assert_eq!(int(&l["val_split"]), 5000);
    let w = &l["learnable"];
    let splits = [
        "stem", "layer1.3", "layer1.6", "layer2.0", "layer2.4", "layer2.7", "layer3.1", "layer3.5",
        "layer3.8",
    ];
    assert_eq!(w["splits"], toml::Value::try_from(splits).unwrap());
    assert!(w.get("init_weight").is_none(), "1/P = 1/9");
    assert_eq!(float(&w["lr"]), 0.01);
    assert_eq!(float(&w["momentum"]), 0.9);
    assert_eq!(float(&w["l1_coef"]), 1.0);
    assert_eq!(w["projection"].as_str(), Some("plane"));
    assert_eq!(int(&w["pgd"]["steps"]), 3);
    assert_eq!(float(&w["pgd"]["step_size"]), 1.0);
    assert_eq!(w["pgd"]["random_start"].as_bool(), Some(false));
    assert_eq!(w["pgd"]["projection"].as_str(), Some("none"));

    // Detection/sh/voc2007/clean50/090_final_setting1.sh + config/train_config.py.
    let d = file("voc07-faster-rcnn-r50-release.toml");
    assert_eq!(int(&d["iterations"]), 11250);
    assert_eq!(int(&d["batch_size"]), 8);
    assert_eq!(float(&d["optim"]["lr"]), 0.008);
    assert_eq!(float(&d["optim"]["weight_decay"]), 5e-4);
    let steps = toml::Value::try_from([6250, 8750]).unwrap();
    assert_eq!(d["schedule"]["milestones"], steps);
    assert_eq!(float(&d["schedule"]["warmup_start"]), 0.3333);
    assert_eq!(int(&d["schedule"]["warmup"]), 500);
    assert_eq!(int(&d["checkpoint_every"]), 1250);
    assert_eq!(d["afan"]["backbone"]["mask"].as_str(), Some("0011"));
    assert_eq!(float(&d["afan"]["head"]["pgd"]["step_size"]), 0.1);

    // Detection/sh/coco/clean50/090_final_setting1_gpu01.sh.
    let d = file("coco-faster-rcnn-r50-release.toml");
    assert_eq!(int(&d["iterations"]), 180_000);
    assert_eq!(float(&d["optim"]["lr"]), 0.01);
    assert_eq!(float(&d["optim"]["weight_decay"]), 1e-4);
    assert_eq!(int(&d["checkpoint_every"]), 40_000);
    assert_eq!(float(&d["afan"]["backbone"]["pgd"]["step_size"]), 0.1);

    // Segmentation/sh/voc/2012/clean50/01_final50.sh + args.py + main_aug_final.py.
    let s = file("voc2012-deeplabv3plus-r50-release.toml");
    assert_eq!(int(&s["seed"]), 1);
    assert_eq!(int(&s["iterations"]), 30_000);
    assert_eq!(int(&s["batch_size"]), 4);
    assert_eq!(int(&s["eval_every"]), 100);
    assert_eq!(s["voc_aug"].as_bool(), Some(false));
    assert_eq!(int(&s["val_crop"]), 513);
    assert_eq!(s["normalize"].as_bool(), Some(false));
    assert_eq!(float(&s["backbone_bn_momentum"]), 0.01);
    assert_eq!(float(&s["backbone_lr_mult"]), 0.1);
    assert_eq!(s["afan"]["backbone"]["split"].as_str(), Some("layer3"));
    assert_eq!(s["afan"]["backbone"]["mask"].as_str(), Some("11"));
    assert_eq!(float(&s["afan"]["backbone"]["pgd"]["step_size"]), 0.01);
    assert_eq!(s["afan"]["decoder_split"].as_str(), Some("aspp"));
    assert_eq!(float(&s["afan"]["decoder_pgd"]["step_size"]), 0.4);

    // Segmentation/sh/city/clean50/091_city_final01.sh.
    let s = file("cityscapes-deeplabv3plus-r50-release.toml");
    assert_eq!(float(&s["optim"]["lr"]), 0.1);
    assert_eq!(int(&s["augment"]["crop"]), 768);
    assert_eq!(float(&s["augment"]["color_jitter"]), 0.5);
    assert_eq!(int(&s["val_crop"]), 0);
    assert_eq!(s["afan"]["backbone"]["split"].as_str(), Some("layer2"));
    assert_eq!(s["afan"]["decoder_split"].as_str(), Some("decoder"));
    assert_eq!(s["afan"]["decoder_mix"].as_bool(), Some(true));
}
