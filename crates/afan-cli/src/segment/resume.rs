//! Segmentation checkpoints: `last.ckpt` in the run directory, in the same atomic tar layout as
//! classification (`crate::checkpoint`), with a trainer state of its own (iterations, not
//! epochs), so an interrupted `afan train --task segment --out DIR` continues with `--resume`.

use super::config::SegTrainConfig;
use crate::checkpoint;
use afan_data::seg::SegScores;
use afan_models::DeepLabV3Plus;
use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The checkpoint file in a segmentation run directory.
pub const CHECKPOINT_FILE: &str = "last.ckpt";

/// Format version of [`SegState`].
const VERSION: u32 = 1;

/// Where a segmentation run stands.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SegState {
    /// Format version.
    pub version: u32,
    /// Always `segment`: a classification checkpoint is refused by name, not by a parse error.
    pub task: String,
    /// Iterations completed.
    pub iteration: usize,
    /// The training loss of every completed iteration (the summary's first/last means need them).
    pub losses: Vec<f64>,
    /// Scores of the last evaluation.
    pub scores: Option<SegScores>,
    /// The configuration the run trains with.
    pub config: SegTrainConfig,
}

/// Writes `out/last.ckpt` (model, optimizer and state) atomically.
pub fn save(
    out: &Path,
    state: &SegState,
    model: &DeepLabV3Plus,
    optim: &ModuleOptimizer,
) -> Result<()> {
    let model = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("cannot serialize the model: {e}"))?;
    let optim = optim
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("cannot serialize the optimizer: {e}"))?;
    let state = serde_json::to_vec_pretty(&SegState {
        version: VERSION,
        task: "segment".into(),
        ..state.clone()
    })?;
    checkpoint::save_raw(&out.join(CHECKPOINT_FILE), &state, &model, Some(&optim))
}

/// Restores `model` and `optim` from `out/last.ckpt`, which must have been written for a model of
/// `config`'s shape; returns the saved state.
pub fn load(
    out: &Path,
    config: &SegTrainConfig,
    model: DeepLabV3Plus,
    optim: ModuleOptimizer,
) -> Result<(SegState, DeepLabV3Plus, ModuleOptimizer)> {
    let path = out.join(CHECKPOINT_FILE);
    let raw = checkpoint::load_raw(&path)
        .with_context(|| format!("cannot resume: no usable checkpoint in {}", out.display()))?;
    let state: SegState = serde_json::from_slice(&raw.state).with_context(|| {
        format!(
            "{}: state.json is not a segmentation trainer state",
            path.display()
        )
    })?;
    if state.version != VERSION || state.task != "segment" {
        bail!(
            "{} is a {} checkpoint of version {}, expected segment version {VERSION}",
            path.display(),
            state.task,
            state.version
        );
    }
    if state.config.model != config.model {
        bail!(
            "{} holds {:?}, but the configuration asks for {:?}",
            path.display(),
            state.config.model,
            config.model
        );
    }
    let model = crate::checkpoint::load_record(model, raw.model, &path)?;
    let Some(o) = raw.optim else {
        bail!("{} holds no optimizer state", path.display());
    };
    let optim = optim
        .from_bytes(o)
        .map_err(|e| anyhow::anyhow!("{}: optimizer state unreadable: {e}", path.display()))?;
    Ok((state, model, optim))
}

/// Keeps the lines of `metrics.jsonl` up to iteration `done`: an interruption between writing a
/// metrics line and the checkpoint must not leave a line the resumed run writes again.
pub fn truncate_metrics(path: &Path, done: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["iteration"].as_u64())
                .is_some_and(|i| i as usize <= done)
        })
        .map(|line| format!("{line}\n"))
        .collect();
    std::fs::write(path, kept).with_context(|| format!("cannot write {}", path.display()))
}
