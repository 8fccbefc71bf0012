//! Checkpoints of the first format (before the engine), each task with its own layout:
//!
//! - classification: `state.json` (version 1: model, num_classes, epochs_done, best_top1, top1,
//!   config), `model.bpk`, `optim.bpk`;
//! - detection: `detect_state.json` (task "detect", iterations_done, best_map, map,
//!   class_names, config), `model.bpk`, `optim.bpk`;
//! - segmentation: `state.json` (version 1, task "segment", iteration, losses, scores, config)
//!   in `last.ckpt`, and the run directory's bare `model.bin` beside its `config.toml`.
//!
//! Each is read into a [`Checkpoint`] whose configuration is converted to today's fields, so the
//! model can be rebuilt and evaluated. The engine's state is not carried over: such runs are
//! evaluated, inferred with, exported or used as `--weights`, not resumed.

use super::Checkpoint;
use crate::error::{Result, TrainError};
use crate::task_kind::TaskKind;
use burn::tensor::Bytes;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;

/// The model file of a first-format segmentation run directory.
pub(super) const MODEL_BIN: &str = "model.bin";

/// A first-format archive (its entries already read).
pub(super) fn read(path: &Path, mut entries: HashMap<String, Vec<u8>>) -> Result<Checkpoint> {
    let model = entries.remove("model.bpk");
    let optim = entries.remove("optim.bpk").map(Bytes::from_bytes_vec);
    let (task, state, config) = if let Some(s) = entries.remove("detect_state.json") {
        let state = parse(path, "detect_state.json", &s)?;
        let config = detection(&state["config"], &state["class_names"]);
        (TaskKind::Detection, state, config)
    } else if let Some(s) = entries.remove("state.json") {
        let state = parse(path, "state.json", &s)?;
        if state["task"] == "segment" {
            (
                TaskKind::Segmentation,
                state.clone(),
                segmentation(&state["config"]),
            )
        } else if state["model"].is_string() {
            (
                TaskKind::Classification,
                state.clone(),
                classification(&state["config"]),
            )
        } else {
            return Err(not_afan(path));
        }
    } else {
        return Err(not_afan(path));
    };
    let Some(model) = model else {
        return Err(not_afan(path));
    };
    let model_info = match task {
        TaskKind::Classification => json!({
            "model": state["model"],
            "num_classes": state["num_classes"],
        }),
        TaskKind::Detection => json!({ "class_names": state["class_names"] }),
        TaskKind::Segmentation => json!({}),
    };
    Ok(Checkpoint {
        path: path.to_path_buf(),
        format: 1,
        task,
        config: to_table(path, config)?,
        model_info,
        state: None,
        model: Bytes::from_bytes_vec(model),
        optim,
    })
}

/// A first-format segmentation run directory: `model.bin` and `config.toml`.
pub(super) fn read_segmentation_run(dir: &Path) -> Result<Checkpoint> {
    let config_path = dir.join("config.toml");
    let text =
        std::fs::read_to_string(&config_path).map_err(|e| TrainError::io(&config_path, e))?;
    let config: toml::Value = toml::from_str(&text).map_err(|_| {
        TrainError::checkpoint(&config_path, "is not a segmentation run's configuration")
    })?;
    let config = serde_json::to_value(config)
        .map_err(|_| TrainError::checkpoint(&config_path, "is not valid TOML"))?;
    let model_path = dir.join(MODEL_BIN);
    let model = std::fs::read(&model_path).map_err(|e| TrainError::io(&model_path, e))?;
    Ok(Checkpoint {
        path: model_path.clone(),
        format: 1,
        task: TaskKind::Segmentation,
        config: to_table(&model_path, segmentation(&config))?,
        model_info: json!({}),
        state: None,
        model: Bytes::from_bytes_vec(model),
        optim: None,
    })
}

fn not_afan(path: &Path) -> TrainError {
    TrainError::checkpoint(
        path,
        "not an afan checkpoint (expected afan.json, or a first-format state.json / \
         detect_state.json, with model.bpk inside)",
    )
}

fn parse(path: &Path, name: &str, bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice(bytes)
        .map_err(|e| TrainError::checkpoint(path, format!("{name} is malformed: {e}")))
}

/// JSON to a TOML table, dropping nulls (TOML has none; every optional field defaults to none).
fn to_table(path: &Path, v: Value) -> Result<toml::Table> {
    fn convert(v: Value) -> Option<toml::Value> {
        Some(match v {
            Value::Null => return None,
            Value::Bool(b) => toml::Value::Boolean(b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => toml::Value::Integer(i),
                None => toml::Value::Float(n.as_f64()?),
            },
            Value::String(s) => toml::Value::String(s),
            Value::Array(a) => toml::Value::Array(a.into_iter().filter_map(convert).collect()),
            Value::Object(o) => toml::Value::Table(
                o.into_iter()
                    .filter_map(|(k, v)| Some((k, convert(v)?)))
                    .collect(),
            ),
        })
    }
    match convert(v) {
        Some(toml::Value::Table(t)) => Ok(t),
        _ => Err(TrainError::checkpoint(
            path,
            "its configuration is not a table",
        )),
    }
}

/// A new configuration for `task` with the fields `keys` of `old` that are present; an
/// evaluation cadence also becomes the checkpoint cadence (the first format saved at each
/// evaluation).
fn start(task: &str, old: &Value, keys: &[&str]) -> serde_json::Map<String, Value> {
    let mut c = serde_json::Map::new();
    c.insert("task".into(), json!(task));
    copy(&mut c, old, keys);
    if let Some(e) = c.get("eval_every").cloned() {
        c.insert("checkpoint_every".into(), e);
    }
    c
}

/// Copies `keys` of `from` that are present into `to`.
fn copy(to: &mut serde_json::Map<String, Value>, from: &Value, keys: &[&str]) {
    for k in keys {
        if let Some(v) = from.get(*k).filter(|v| !v.is_null()) {
            to.insert((*k).to_string(), v.clone());
        }
    }
}

/// The first classification `TrainConfig`: the same section fields; the schedule counted
/// warm-up epochs from `lr / warmup_start_div`.
fn classification(old: &Value) -> Value {
    let mut c = start(
        "classification",
        old,
        &[
            "method",
            "seed",
            "batch_size",
            "epochs",
            "optim",
            "precision",
            "weights",
            "strict_weights",
            "model",
            "dataset",
            "data",
            "val_split",
            "augment",
            "synthetic",
            "folder",
            "afan",
            "pixel",
        ],
    );
    // The first format drew a validation split at random.
    c.insert("val_holdout".into(), json!("random"));
    let s = &old["schedule"];
    let div = s["warmup_start_div"].as_f64().unwrap_or(10.0).max(1.0);
    c.insert(
        "schedule".into(),
        json!({
            "kind": "multi_step",
            "unit": "epochs",
            "milestones": s["milestones"],
            "gamma": s["gamma"],
            "warmup": s["warmup_epochs"],
            "warmup_start": 1.0 / div,
            "warmup_rule": "linear",
        }),
    );
    Value::Object(c)
}

/// The first `DetectConfig`: the schedule's `steps` in iterations and a warm-up from
/// `warmup_factor`; the class names of the run become the `classes` field.
fn detection(old: &Value, class_names: &Value) -> Value {
    let mut c = start(
        "detection",
        old,
        &[
            "method",
            "seed",
            "batch_size",
            "iterations",
            "eval_every",
            "optim",
            "weights",
            "dataset",
            "data",
            "train_sets",
            "test_set",
            "detector",
            "afan",
            "resize",
            "hflip",
            "synthetic",
        ],
    );
    if old["dataset"] == "voc" && class_names.is_array() {
        c.insert("classes".into(), class_names.clone());
    }
    // The detector the first format built, where the release presets (issue 17) now differ:
    // every field an old `detector` table could not hold, at its value of that time.
    if let Some(Value::Object(d)) = c.get_mut("detector") {
        d.entry("head_init").or_insert(json!("normal"));
        let rpn = d.entry("rpn").or_insert(json!({}));
        if let Value::Object(rpn) = rpn {
            for (k, v) in [
                ("nms_rule", "torchvision"),
                ("objectness", "sigmoid"),
                ("anchor_layout", "legacy"),
                ("sampling", "per_image"),
                ("loss_norm", "per_batch"),
                ("bounds", "image"),
            ] {
                rpn.entry(k).or_insert(json!(v));
            }
        }
        let roi = d.entry("roi").or_insert(json!({}));
        if let Value::Object(roi) = roi {
            for (k, v) in [
                ("pooled_max_2x2", json!(false)),
                ("head_pool", json!("mean")),
                ("sampling", json!("per_image")),
                ("loss_norm", json!("per_batch")),
                ("add_gt_boxes", json!(true)),
                ("nms_rule", json!("torchvision")),
            ] {
                roi.entry(k).or_insert(v);
            }
        }
    }
    let s = &old["schedule"];
    c.insert(
        "schedule".into(),
        json!({
            "kind": "multi_step",
            "unit": "iterations",
            "milestones": s["steps"],
            "gamma": s["gamma"],
            "warmup": s["warmup_iters"],
            "warmup_start": s["warmup_factor"],
            "warmup_rule": "linear",
        }),
    );
    Value::Object(c)
}

/// The first `SegTrainConfig`: flat optimizer fields, a poly schedule, the data under `[data]`
/// with dataset names `shapes` / `voc2012`, and `pretrained_backbone` for the initial weights.
fn segmentation(old: &Value) -> Value {
    let mut c = start(
        "segmentation",
        old,
        &[
            "method",
            "seed",
            "batch_size",
            "iterations",
            "eval_every",
            "model",
            "backbone_lr_mult",
            "afan",
        ],
    );
    if let Some(w) = old.get("pretrained_backbone").filter(|v| !v.is_null()) {
        c.insert("weights".into(), w.clone());
    }
    c.insert(
        "optim".into(),
        json!({
            "lr": old["lr"],
            "momentum": old["momentum"],
            "dampening": 0.0,
            "weight_decay": old["weight_decay"],
            "nesterov": false,
        }),
    );
    c.insert(
        "schedule".into(),
        json!({"kind": "poly", "unit": "iterations", "power": old["poly_power"], "warmup": 0}),
    );
    let d = &old["data"];
    let dataset = match d["dataset"].as_str() {
        Some("shapes") => "synthetic",
        Some("cityscapes") => "cityscapes",
        _ => "voc",
    };
    c.insert("dataset".into(), json!(dataset));
    // What the first format trained with, where the release presets now differ.
    c.insert("normalize".into(), json!(true));
    c.insert("backbone_bn_momentum".into(), json!(0.1));
    if let Some(Value::Object(afan)) = c.get_mut("afan") {
        afan.insert("skip".into(), json!("packed"));
    }
    copy(&mut c, d, &["voc_aug", "augment"]);
    c.insert(
        "val_crop".into(),
        json!(d["val_crop"].as_u64().unwrap_or(0)),
    );
    if let Some(r) = d.get("root").filter(|v| !v.is_null()) {
        c.insert("data".into(), r.clone());
    }
    let set = |key: &str, default: &str| json!(d[key].as_str().unwrap_or(default));
    c.insert("train_set".into(), set("train_split", "train"));
    c.insert("test_set".into(), set("val_split", "val"));
    c.insert(
        "synthetic".into(),
        json!({"train": d["shapes_train"], "test": d["shapes_val"], "side": d["shapes_side"]}),
    );
    Value::Object(c)
}
