//! One checkpoint format for every task (format 2): a tar archive of
//!
//! - `afan.json`: the format, the task, what the model needs beyond its configuration (class
//!   names), the engine's state (absent in a model-only file) and the SHA-256 of each tensor
//!   entry, checked on load;
//! - `config.toml`: the run's whole configuration;
//! - `model.bpk`, `optim.bpk`: Burn's burnpack records of the model and (in `last.ckpt`) the
//!   optimizer.
//!
//! Files of the first format (each task had its own layout; `tests/fixtures/v1`) are read by
//! `legacy` into the same [`Checkpoint`], so they evaluate, infer, export and serve as
//! `--weights`; they cannot be resumed.

mod archive;
mod legacy;

pub use archive::is_archive;

use crate::config::{RunConfig, TaskSection};
use crate::error::{Result, TrainError};
use crate::task_kind::TaskKind;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The format this afan writes.
pub const FORMAT: u32 = 2;
/// The latest checkpoint of a run (with the optimizer).
pub const LAST: &str = "last.ckpt";
/// The checkpoint of the best evaluation so far (model only).
pub const BEST: &str = "best.ckpt";

const HEADER: &str = "afan.json";
const CONFIG: &str = "config.toml";
const MODEL: &str = "model.bpk";
const OPTIM: &str = "optim.bpk";

#[derive(Serialize, Deserialize)]
struct Header {
    format: u32,
    task: TaskKind,
    written_by: String,
    model: serde_json::Value,
    #[serde(default)]
    state: Option<serde_json::Value>,
    sha256: BTreeMap<String, String>,
}

/// A checkpoint read from disk, of any format.
#[derive(Debug)]
pub struct Checkpoint {
    /// The file it was read from.
    pub path: PathBuf,
    /// Its format (1: written before the engine; 2: this one).
    pub format: u32,
    /// The task its model is for.
    pub task: TaskKind,
    /// The run's configuration (a first-format configuration converted to today's fields).
    pub config: toml::Table,
    /// What the model needs beyond the configuration (class names, class count).
    pub model_info: serde_json::Value,
    /// The engine's state (`None`: a model-only file, or the first format).
    pub state: Option<serde_json::Value>,
    /// The model record.
    pub model: Bytes,
    /// The optimizer record (`last.ckpt` only).
    pub optim: Option<Bytes>,
}

/// What to write into a checkpoint.
pub struct CheckpointParts<'a> {
    /// The task.
    pub task: TaskKind,
    /// The configuration as TOML text.
    pub config: &'a str,
    /// The task's model information.
    pub model_info: serde_json::Value,
    /// The engine's state, if a run can continue from this file.
    pub state: Option<serde_json::Value>,
    /// The model record.
    pub model: &'a [u8],
    /// The optimizer record.
    pub optim: Option<&'a [u8]>,
}

fn sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes a checkpoint atomically.
pub fn write(path: &Path, parts: CheckpointParts) -> Result<()> {
    let mut sha = BTreeMap::new();
    sha.insert(MODEL.to_string(), sha256(parts.model));
    if let Some(o) = parts.optim {
        sha.insert(OPTIM.to_string(), sha256(o));
    }
    let header = Header {
        format: FORMAT,
        task: parts.task,
        written_by: concat!("afan ", env!("CARGO_PKG_VERSION")).into(),
        model: parts.model_info,
        state: parts.state,
        sha256: sha,
    };
    let header = serde_json::to_vec_pretty(&header)
        .map_err(|e| TrainError::checkpoint(path, format!("cannot encode its header: {e}")))?;
    let mut entries = vec![
        (HEADER, header.as_slice()),
        (CONFIG, parts.config.as_bytes()),
        (MODEL, parts.model),
    ];
    if let Some(o) = parts.optim {
        entries.push((OPTIM, o));
    }
    archive::write(path, &entries)
}

impl Checkpoint {
    /// Reads a checkpoint file of any format, or a run directory (its `best.ckpt`, else its
    /// `last.ckpt`, else a first-format segmentation run's `model.bin`).
    pub fn read(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return Self::read_run(path);
        }
        if !path.exists() {
            return Err(TrainError::checkpoint(path, "no such file"));
        }
        if !is_archive(path) {
            return Err(TrainError::checkpoint(
                path,
                "not an afan checkpoint (not a tar archive)",
            ));
        }
        let mut entries = archive::read(path)?;
        let Some(header) = entries.remove(HEADER) else {
            return legacy::read(path, entries);
        };
        let header: Header = serde_json::from_slice(&header)
            .map_err(|e| TrainError::checkpoint(path, format!("{HEADER} is malformed: {e}")))?;
        if header.format != FORMAT {
            return Err(TrainError::checkpoint(
                path,
                format!(
                    "has format {}; this afan reads formats 1 and {FORMAT}",
                    header.format
                ),
            ));
        }
        let take = |entries: &mut std::collections::HashMap<String, Vec<u8>>, name: &str| {
            let data = entries.remove(name)?;
            Some(match header.sha256.get(name) {
                Some(want) if *want != sha256(&data) => Err(TrainError::checkpoint(
                    path,
                    format!(
                        "{name} is corrupt: its SHA-256 is not the one recorded when it was written"
                    ),
                )),
                None => Err(TrainError::checkpoint(
                    path,
                    format!("{name} has no recorded checksum"),
                )),
                Some(_) => Ok(Bytes::from_bytes_vec(data)),
            })
        };
        let model = take(&mut entries, MODEL)
            .ok_or_else(|| TrainError::checkpoint(path, format!("{MODEL} is missing")))??;
        let optim = take(&mut entries, OPTIM).transpose()?;
        if header.sha256.contains_key(OPTIM) && optim.is_none() {
            return Err(TrainError::checkpoint(path, format!("{OPTIM} is missing")));
        }
        let config = entries
            .remove(CONFIG)
            .ok_or_else(|| TrainError::checkpoint(path, format!("{CONFIG} is missing")))?;
        let config = String::from_utf8(config)
            .ok()
            .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
            .ok_or_else(|| TrainError::checkpoint(path, format!("{CONFIG} is malformed")))?;
        Ok(Self {
            path: path.to_path_buf(),
            format: FORMAT,
            task: header.task,
            config,
            model_info: header.model,
            state: header.state,
            model,
            optim,
        })
    }

    fn read_run(dir: &Path) -> Result<Self> {
        for name in [BEST, LAST] {
            if dir.join(name).is_file() {
                return Self::read(&dir.join(name));
            }
        }
        if dir.join(legacy::MODEL_BIN).is_file() {
            return legacy::read_segmentation_run(dir);
        }
        Err(TrainError::checkpoint(
            dir,
            format!(
                "this folder holds no checkpoint ({BEST}, {LAST}, or a first-format {})",
                legacy::MODEL_BIN
            ),
        ))
    }

    /// Refuses a checkpoint of another task, naming both.
    pub fn expect_task(&self, task: TaskKind) -> Result<()> {
        if self.task != task {
            return Err(TrainError::checkpoint(
                &self.path,
                format!("holds a {} model, not a {task} model", self.task),
            ));
        }
        Ok(())
    }

    /// The configuration, parsed for task section `T` over `base` (fields it lacks keep the
    /// base's values), with `key=value` overrides (`data=...` to evaluate elsewhere).
    pub fn config<T: TaskSection>(
        &self,
        base: &RunConfig<T>,
        overrides: &[String],
    ) -> Result<RunConfig<T>> {
        self.expect_task(T::KIND)?;
        let mut table = self.config.clone();
        for o in overrides {
            crate::config::tree::apply_override(&mut table, o)?;
        }
        RunConfig::from_table(base, table, &format!("checkpoint {}", self.path.display()))
    }

    /// The class names the checkpoint records (empty if it records none).
    pub fn class_names(&self) -> Vec<String> {
        self.model_info["class_names"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Loads the model record into `model`, naming the file when it does not fit.
    pub fn load_model<M: Module>(&self, model: M) -> Result<M> {
        load_record(model, self.model.clone(), &self.path)
    }

    /// The optimizer with the saved state, or an error naming the file when there is none.
    pub fn load_optimizer(&self, optim: ModuleOptimizer) -> Result<ModuleOptimizer> {
        let Some(bytes) = self.optim.clone() else {
            return Err(TrainError::checkpoint(
                &self.path,
                "holds no optimizer state (only last.ckpt does)",
            ));
        };
        optim.from_bytes(bytes).map_err(|e| {
            TrainError::checkpoint(&self.path, format!("optimizer state unreadable: {e}"))
        })
    }
}

/// Applies a saved model record to `model`, naming `path` when it is unreadable or does not fit.
pub fn load_record<M: Module>(model: M, bytes: Bytes, path: &Path) -> Result<M> {
    let record = burn::store::ModuleRecord::from_bytes(bytes).map_err(|e| {
        TrainError::checkpoint(path, format!("model record unreadable: {}", short(&e)))
    })?;
    model.try_load_record(record).map_err(|e| {
        TrainError::checkpoint(
            path,
            format!("does not fit the configured model: {}", short(&e)),
        )
    })
}

/// An error's message on one line, without control characters or raw bytes, and not longer
/// than a line of a terminal needs.
fn short(e: &dyn std::fmt::Display) -> String {
    let text: String = e
        .to_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = crate::config::tree::one_line(&text);
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
