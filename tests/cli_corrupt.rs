//! `afan eval --corrupt`: for every task, a trained checkpoint scores differently on the corrupted
//! copy of its evaluation images than on the clean ones, the same on every call, and names the
//! condition; a wrong name is refused naming the flag and the valid names.

#[path = "support/cli.rs"]
mod cli;

use cli::{fail, s, succeed};
use std::path::Path;

/// Trains a tiny run of `task` on its generated data; returns its checkpoint.
fn train(dir: &Path, task: &str, flags: &[&str]) -> std::path::PathBuf {
    let run = dir.join(task);
    let mut args = vec![
        "train",
        "--task",
        task,
        "--out",
        s(&run),
        "--quiet",
        "--json",
        "--method",
        "baseline",
    ];
    args.extend_from_slice(flags);
    succeed(&args);
    run.join("last.ckpt")
}

/// The JSON objects of one `eval --json` call, one per condition.
fn eval(ckpt: &Path, corrupt: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["eval", "--checkpoint", s(ckpt), "--quiet", "--json"];
    for c in corrupt {
        args.extend_from_slice(&["--corrupt", c]);
    }
    let mut rows: Vec<serde_json::Value> = succeed(&args)
        .0
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // A detector's detections, read now (the next call rewrites the file): a barely trained
    // detector scores mAP 0 on every condition, but not with the same boxes and scores.
    for row in &mut rows {
        if let Some(path) = row["results"].as_str() {
            let dets: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            row["detections_file"] = dets;
        }
    }
    rows
}

/// A result's figures: all but the condition's name and the files' paths.
fn figures(e: &serde_json::Value) -> serde_json::Value {
    let mut e = e.clone();
    for key in ["corruption", "results", "ground_truth"] {
        e.as_object_mut().unwrap().remove(key);
    }
    e
}

/// The clean evaluation, then `noise` and `contrast:0.1` in one call (a comma list and a
/// repeated flag); each corrupted result differs from the clean one (in `headline` at least:
/// top-1, mAP or mIoU may tie on a tiny set, so every figure counts) and repeats exactly.
fn check(ckpt: &Path, headline: &str) {
    let clean = eval(ckpt, &[]);
    assert_eq!(clean.len(), 1);
    assert_eq!(clean[0]["corruption"], "none");
    assert!(clean[0][headline].is_number(), "{}", clean[0]);
    let all = eval(ckpt, &["none,noise", "contrast:0.1"]);
    let names: Vec<&str> = all
        .iter()
        .map(|e| e["corruption"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["none", "noise:0.08", "contrast:0.1"]);
    assert_eq!(
        figures(&all[0]),
        figures(&clean[0]),
        "`none` is the clean images"
    );
    for e in &all[1..] {
        assert_ne!(figures(e), figures(&clean[0]), "{}", e["corruption"]);
    }
    let again = eval(ckpt, &["noise", "contrast:0.1"]);
    assert_eq!(
        figures(&again[0]),
        figures(&all[1]),
        "noise is seeded per image"
    );
    assert_eq!(figures(&again[1]), figures(&all[2]));
}

#[test]
fn classification_scores_the_corrupted_copy_reproducibly() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = train(
        tmp.path(),
        "classification",
        &[
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--set",
            "synthetic.train=256",
            "--set",
            "synthetic.test=128",
        ],
    );
    check(&ckpt, "top1");
}

#[test]
fn detection_scores_the_corrupted_copy_reproducibly() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = train(
        tmp.path(),
        "detection",
        &[
            "--iterations",
            "4",
            "--batch-size",
            "2",
            "--set",
            "synthetic.train=8",
            "--set",
            "synthetic.test=8",
            "--set",
            "eval_every=\"end\"",
        ],
    );
    check(&ckpt, "map07");
    // Each condition keeps its own result file.
    let dir = ckpt.parent().unwrap();
    assert!(dir.join("last.detections.json").is_file());
    assert!(dir.join("last.noise.detections.json").is_file());
    assert!(dir.join("last.contrast-0.1.detections.json").is_file());
}

#[test]
fn segmentation_scores_the_corrupted_copy_reproducibly() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = train(
        tmp.path(),
        "segmentation",
        &[
            "--iterations",
            "4",
            "--batch-size",
            "2",
            "--set",
            "synthetic.train=8",
            "--set",
            "synthetic.test=4",
            "--set",
            "eval_every=\"end\"",
        ],
    );
    check(&ckpt, "mean_iou");
}

#[test]
fn an_unknown_corruption_is_refused_naming_the_flag_and_the_names() {
    let err = fail(&["eval", "--checkpoint", "no-such.ckpt", "--corrupt", "fog"]);
    for part in ["--corrupt fog", "none", "noise", "blur", "contrast"] {
        assert!(err.contains(part), "{err}");
    }
}
