//! Writing a file so that a crash at any instant leaves either the old file or the whole new
//! one: the bytes go to a temporary file beside the target, are flushed to disk, and the file is
//! renamed onto the target (without replacing an existing one unless asked: the no-clobber
//! rename also closes the race with another writer); then the folder entry is flushed.

use super::ExportError;
use std::fs::File;
use std::path::Path;

/// Writes `path` through `fill`, which gets the temporary file; returns the size written.
pub(super) fn write(
    path: &Path,
    overwrite: bool,
    fill: impl FnOnce(&mut File) -> Result<(), ExportError>,
) -> Result<u64, ExportError> {
    let io = |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "a folder; expected a file name",
        )));
    }
    // Fail before the work, not after it: the rename below re-checks.
    if !overwrite && path.exists() {
        return Err(ExportError::Exists {
            path: path.to_path_buf(),
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.as_deref().unwrap_or("export")))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io)?;
    fill(temp.as_file_mut())?;
    temp.as_file().sync_all().map_err(io)?;
    let size = temp.as_file().metadata().map_err(io)?.len();
    let persisted = if overwrite {
        temp.persist(path)
    } else {
        temp.persist_noclobber(path)
    };
    if let Err(e) = persisted {
        // The temporary file is removed when `e` drops.
        return Err(if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            ExportError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            io(e.error)
        });
    }
    // The rename is durable once the folder's entry is on disk (a no-op where folders cannot
    // be opened, e.g. on Windows).
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(size)
}
