//! A run directory with one writer: an OS file lock on `RUN/.lock` (the standard library's
//! `File::try_lock`, released by the OS when the process exits or crashes) held for the whole
//! run, with the holder's process id written into the file so a refused second writer can say
//! who holds it. An existing run is never replaced unless asked (`overwrite`), and then only
//! the run's own files are removed.

use crate::checkpoint::{BEST, LAST};
use crate::error::{Result, TrainError};
use crate::plot::PLOT;
use crate::records::METRICS;
use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The resolved configuration of a run.
pub const CONFIG: &str = "config.toml";
/// The lock file.
pub const LOCK: &str = ".lock";

/// The files that make a folder a run (and that `overwrite` removes). `model.bin` is the
/// first-format segmentation model.
const RUN_FILES: [&str; 6] = [CONFIG, LAST, BEST, METRICS, PLOT, "model.bin"];

/// How a run directory is to be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// A new run: refused if the folder holds one.
    Fresh,
    /// A new run replacing the one the folder may hold.
    Overwrite,
    /// Continue the run the folder holds.
    Resume,
}

/// An open, locked run directory.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    // Held for the run: the OS releases the lock when it is dropped or the process dies.
    _lock: File,
}

impl RunDir {
    /// Whether `dir` holds a run (any of the run's files).
    pub fn holds_run(dir: &Path) -> bool {
        RUN_FILES.iter().any(|f| dir.join(f).exists())
    }

    /// Creates (if needed) and locks `dir`, applying `mode`'s rule for an existing run.
    pub fn open(dir: &Path, mode: OpenMode) -> Result<Self> {
        if mode == OpenMode::Fresh && Self::holds_run(dir) {
            return Err(existing(dir));
        }
        if mode == OpenMode::Resume && !dir.join(LAST).is_file() {
            return Err(TrainError::RunDir(format!(
                "cannot resume: {} holds no {LAST} (a run that stopped before its first \
                 checkpoint starts again with --overwrite)",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            TrainError::RunDir(format!(
                "cannot create run directory {}: {e}",
                dir.display()
            ))
        })?;
        let lock = lock(dir)?;
        // Checked again under the lock: another process may have started a run in between.
        match mode {
            OpenMode::Fresh if Self::holds_run(dir) => return Err(existing(dir)),
            OpenMode::Overwrite => {
                for f in RUN_FILES {
                    let p = dir.join(f);
                    if p.exists() {
                        std::fs::remove_file(&p).map_err(|e| TrainError::io(&p, e))?;
                    }
                }
            }
            _ => {}
        }
        Ok(Self {
            path: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file of the run.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

fn existing(dir: &Path) -> TrainError {
    TrainError::RunDir(format!(
        "{} already holds a run; pass --resume to continue it, --overwrite to replace it, or \
         choose another --out",
        dir.display()
    ))
}

/// Takes the lock of `dir` and writes this process's id into it.
fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| TrainError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_string()
            } else {
                format!("process {holder}")
            };
            return Err(TrainError::RunDir(format!(
                "{} is in use by {who} (it holds {}); wait for it to end or choose another --out",
                dir.display(),
                path.display()
            )));
        }
        Err(TryLockError::Error(e)) => return Err(TrainError::io(&path, e)),
    }
    let write = |f: &mut File| -> std::io::Result<()> {
        f.set_len(0)?;
        f.rewind()?;
        writeln!(f, "{}", std::process::id())?;
        f.sync_all()
    };
    write(&mut file).map_err(|e| TrainError::io(&path, e))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_and_no_accidental_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let run = RunDir::open(&dir, OpenMode::Fresh).unwrap();
        let pid = std::process::id().to_string();
        assert_eq!(std::fs::read_to_string(dir.join(LOCK)).unwrap().trim(), pid);
        // A second writer (file locks are per open file, so this process stands in for another).
        let e = RunDir::open(&dir, OpenMode::Overwrite)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("process {pid}")) && e.contains("in use"),
            "{e}"
        );
        std::fs::write(dir.join(CONFIG), "").unwrap();
        drop(run);
        let e = RunDir::open(&dir, OpenMode::Fresh).unwrap_err().to_string();
        assert!(
            e.contains("already holds a run") && e.contains("--overwrite"),
            "{e}"
        );
        let e = RunDir::open(&dir, OpenMode::Resume)
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds no last.ckpt"), "{e}");
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let _run = RunDir::open(&dir, OpenMode::Overwrite).unwrap();
        assert!(!dir.join(CONFIG).exists(), "the run's files are removed");
        assert!(dir.join("notes.txt").exists(), "other files are not");
    }
}
