//! Checkpoints: one file holding the trainer state, the model and the optimizer, written
//! atomically.
//!
//! The file is a plain tar archive (`state.json`, `model.bpk`, `optim.bpk`), so it can be
//! inspected with standard tools; the two tensor payloads are Burn's own burnpack records. A write
//! goes to a temporary file in the same folder, is flushed to disk, and is renamed over the old
//! checkpoint: an interrupted write never leaves a half-written checkpoint behind.

use crate::config::TrainConfig;
use anyhow::{Context, Result, bail};
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

/// Where training stands, saved with every checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainerState {
    /// Format version of this file.
    pub version: u32,
    /// Model name (`resnet20`).
    pub model: String,
    /// Number of output classes.
    pub num_classes: usize,
    /// Epochs completed.
    pub epochs_done: usize,
    /// Best evaluation top-1 so far.
    pub best_top1: f64,
    /// Top-1 of this checkpoint's model.
    pub top1: f64,
    /// The configuration the run trains with.
    pub config: TrainConfig,
}

/// A loaded checkpoint.
pub struct Checkpoint {
    /// Trainer state.
    pub state: TrainerState,
    /// Model record (burnpack).
    pub model: Bytes,
    /// Optimizer record (burnpack), absent for model-only exports.
    pub optim: Option<Bytes>,
}

const VERSION: u32 = 1;

/// Writes a checkpoint atomically to `path`.
pub fn save(path: &Path, state: &TrainerState, model: &[u8], optim: Option<&[u8]>) -> Result<()> {
    let state = serde_json::to_vec_pretty(&TrainerState {
        version: VERSION,
        ..state.clone()
    })?;
    save_raw(path, &state, model, optim)
}

/// Writes a checkpoint with any trainer state (`state.json`, already serialized) atomically to
/// `path`: other tasks (segmentation) share the file layout and the crash safety.
pub fn save_raw(path: &Path, state: &[u8], model: &[u8], optim: Option<&[u8]>) -> Result<()> {
    let mut entries = vec![("state.json", state), ("model.bpk", model)];
    if let Some(o) = optim {
        entries.push(("optim.bpk", o));
    }
    write_archive(path, &entries)
}

/// Writes named entries as a tar archive, atomically: to a temporary file in the same folder,
/// flushed to disk, then renamed over `path`. Shared by every kind of checkpoint.
pub fn write_archive(path: &Path, entries: &[(&str, &[u8])]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("checkpoint")
    ));
    let write = || -> Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        for (name, data) in entries {
            append(&mut tar, name, data)?;
        }
        let mut writer = tar.into_inner()?;
        writer.flush()?;
        writer
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        Ok(())
    };
    write()
        .and_then(|_| Ok(std::fs::rename(&tmp, path)?))
        .with_context(|| format!("cannot write checkpoint {}", path.display()))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8]) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, name, data)?;
    Ok(())
}

/// Reads a checkpoint, checking that it is one.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let raw = load_raw(path)?;
    let state: TrainerState = serde_json::from_slice(&raw.state)
        .with_context(|| format!("checkpoint {}: state.json is malformed", path.display()))?;
    if state.version != VERSION {
        bail!(
            "checkpoint {} has format version {}, this afan reads version {VERSION}",
            path.display(),
            state.version
        );
    }
    Ok(Checkpoint {
        state,
        model: raw.model,
        optim: raw.optim,
    })
}

/// A checkpoint whose `state.json` the caller parses.
pub struct RawCheckpoint {
    /// The bytes of `state.json`.
    pub state: Vec<u8>,
    /// Model record (burnpack).
    pub model: Bytes,
    /// Optimizer record (burnpack), if saved.
    pub optim: Option<Bytes>,
}

/// Reads the parts of a checkpoint, checking that it is one.
pub fn load_raw(path: &Path) -> Result<RawCheckpoint> {
    let mut entries = read_archive(path)?;
    let (state, model, optim) = (
        entries.remove("state.json"),
        entries.remove("model.bpk"),
        entries.remove("optim.bpk"),
    );
    let (Some(state), Some(model)) = (state, model) else {
        bail!(
            "{} is not an afan checkpoint (expected state.json and model.bpk inside)",
            path.display()
        );
    };
    Ok(RawCheckpoint {
        state,
        model: Bytes::from_bytes_vec(model),
        optim: optim.map(Bytes::from_bytes_vec),
    })
}

/// All entries of a checkpoint archive by name.
pub fn read_archive(path: &Path) -> Result<HashMap<String, Vec<u8>>> {
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("cannot open checkpoint {}", path.display()))?;
    // tar's own errors on other files span lines and quote the content; check the magic first.
    let mut head = [0u8; 262];
    if file.read_exact(&mut head).is_err() || &head[257..262] != b"ustar" {
        bail!(
            "{} is not an afan checkpoint (not a tar archive)",
            path.display()
        );
    }
    std::io::Seek::rewind(&mut file)?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let entries = archive.entries().with_context(|| {
        format!(
            "{} is not an afan checkpoint (not a tar archive)",
            path.display()
        )
    })?;
    let mut out = HashMap::new();
    for entry in entries {
        let mut entry = entry
            .with_context(|| format!("checkpoint {} is truncated or corrupt", path.display()))?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut data).with_context(|| {
            format!("checkpoint {} is truncated (entry {name})", path.display())
        })?;
        out.insert(name, data);
    }
    Ok(out)
}

/// Applies a saved model record to `model` (any task's), naming the file when it is unreadable or
/// does not fit the model built from the configuration.
pub fn load_record<M: burn::module::Module>(model: M, bytes: Bytes, path: &Path) -> Result<M> {
    let record = burn::store::ModuleRecord::from_bytes(bytes).map_err(|e| {
        anyhow::anyhow!(
            "checkpoint {}: model record unreadable: {e}",
            path.display()
        )
    })?;
    model.try_load_record(record).map_err(|e| {
        anyhow::anyhow!(
            "checkpoint {} does not fit the configured model: {e}",
            path.display()
        )
    })
}
