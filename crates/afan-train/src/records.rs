//! `metrics.jsonl`: one JSON object per evaluation, appended and flushed to disk *before* the
//! checkpoint of the same iteration is renamed into place.
//!
//! So a crash between the two leaves a record newer than `last.ckpt`, never a checkpoint
//! without its record. A resumed run cuts the file after the last record its checkpoint covers
//! (by byte offset: the records before it are kept exactly as written, digits included) and
//! writes the later ones again, as the uninterrupted run would have.

use crate::error::{Result, TrainError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The records file of a run directory.
pub const METRICS: &str = "metrics.jsonl";

/// One record: a JSON object with at least `iteration`.
pub type Record = serde_json::Map<String, serde_json::Value>;

/// The records of one run.
pub struct Records {
    path: PathBuf,
}

impl Records {
    /// The records in `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join(METRICS),
        }
    }

    /// Where they are.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as a line and flushes it to disk.
    pub fn append(&self, record: &Record) -> Result<()> {
        let line = serde_json::to_string(record)
            .map_err(|e| TrainError::Config(format!("cannot encode a metrics record: {e}")))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| TrainError::io(&self.path, e))?;
        writeln!(f, "{line}")
            .and_then(|_| f.sync_all())
            .map_err(|e| TrainError::io(&self.path, e))
    }

    /// Every record, parsed (an absent file has none).
    pub fn read(&self) -> Result<Vec<Record>> {
        Ok(self.lines()?.into_iter().map(|(_, _, r)| r).collect())
    }

    /// Drops the records of iterations after `done` by cutting the file after the last record
    /// at or before it; the records kept are not rewritten.
    pub fn truncate_after(&self, done: usize) -> Result<Vec<Record>> {
        let lines = self.lines()?;
        let mut keep = 0u64;
        let mut kept = Vec::new();
        for (end, iteration, record) in lines {
            if iteration > done {
                break;
            }
            keep = end;
            kept.push(record);
        }
        if self.path.exists() {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&self.path)
                .map_err(|e| TrainError::io(&self.path, e))?;
            f.set_len(keep)
                .and_then(|_| f.sync_all())
                .map_err(|e| TrainError::io(&self.path, e))?;
        }
        Ok(kept)
    }

    /// Each complete record with the byte offset of its line's end and its iteration. A last
    /// line without its newline (a crash mid-append) is not a record.
    fn lines(&self) -> Result<Vec<(u64, usize, Record)>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(TrainError::io(&self.path, e)),
        };
        let mut out = Vec::new();
        let mut offset = 0u64;
        for (n, line) in text.split_inclusive('\n').enumerate() {
            offset += line.len() as u64;
            if !line.ends_with('\n') {
                break;
            }
            if line.trim().is_empty() {
                continue;
            }
            let bad = || {
                TrainError::Config(format!(
                    "{} line {} is not a metrics record",
                    self.path.display(),
                    n + 1
                ))
            };
            let record: Record = serde_json::from_str(line).map_err(|_| bad())?;
            let iteration = record
                .get("iteration")
                .and_then(|v| v.as_u64())
                .ok_or_else(bad)? as usize;
            out.push((offset, iteration, record));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(it: usize, loss: f64) -> Record {
        json!({"iteration": it, "train_loss": loss})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn truncation_keeps_earlier_lines_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let r = Records::new(dir.path());
        // Digits a formatter could re-spell if the line were parsed and written again.
        for (it, loss) in [(10, 0.1 + 0.2), (20, 1e-7 / 3.0), (30, 2.5)] {
            r.append(&record(it, loss)).unwrap();
        }
        let before = std::fs::read_to_string(r.path()).unwrap();
        let kept = r.truncate_after(25).unwrap();
        assert_eq!(kept.len(), 2);
        let after = std::fs::read_to_string(r.path()).unwrap();
        let two: String = before.split_inclusive('\n').take(2).collect();
        assert_eq!(after, two);
        assert_eq!(kept[0]["train_loss"].as_f64(), Some(0.1 + 0.2));
        assert_eq!(kept[1]["train_loss"].as_f64(), Some(1e-7 / 3.0));
        // A torn last line (a crash mid-append) is dropped, not an error.
        std::fs::write(r.path(), format!("{after}{{\"iteration\": 4")).unwrap();
        assert_eq!(r.truncate_after(100).unwrap().len(), 2);
        assert_eq!(std::fs::read_to_string(r.path()).unwrap(), two);
        std::fs::write(r.path(), "{\"loss\": 1}\n").unwrap();
        let e = r.read().unwrap_err().to_string();
        assert!(e.contains("metrics.jsonl line 1"), "{e}");
    }
}
