//! The container of a checkpoint: a plain tar archive (inspectable with standard tools), written
//! atomically — to a temporary file in the same folder, flushed to disk, renamed over the old
//! file — so an interrupted write never leaves a half-written checkpoint behind.

use crate::error::{Result, TrainError};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

/// Whether `path` starts like a tar archive (afan checkpoints of every format do).
pub fn is_archive(path: &Path) -> bool {
    let mut head = [0u8; 262];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head[257..262] == b"ustar"
}

/// Writes named entries as a tar archive at `path`, atomically.
pub fn write(path: &Path, entries: &[(&str, &[u8])]) -> Result<()> {
    let tmp = crate::fsutil::temporary_path(path);
    let write = || -> std::io::Result<()> {
        let file = std::fs::File::create(&tmp)?;
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, *data)?;
        }
        let mut writer = tar.into_inner()?;
        writer.flush()?;
        writer
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        std::fs::rename(&tmp, path)?;
        crate::fsutil::sync_parent(path);
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TrainError::checkpoint(path, format!("cannot write it: {e}"))
    })
}

/// Every entry of the archive at `path` by name.
///
/// tar's own messages on a damaged file quote header bytes; they are replaced by one sentence
/// naming the file and the entry.
pub fn read(path: &Path) -> Result<HashMap<String, Vec<u8>>> {
    let file = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    if !is_archive(path) {
        return Err(TrainError::checkpoint(
            path,
            "not an afan checkpoint (not a tar archive)",
        ));
    }
    let corrupt = |what: String| TrainError::checkpoint(path, what);
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let entries = archive
        .entries()
        .map_err(|_| corrupt("not an afan checkpoint (not a tar archive)".into()))?;
    let mut out = HashMap::new();
    for (i, entry) in entries.enumerate() {
        let mut entry =
            entry.map_err(|_| corrupt(format!("truncated or corrupt (at entry {})", i + 1)))?;
        let name = entry
            .path()
            .map_err(|_| corrupt(format!("entry {} has an unreadable name", i + 1)))?
            .to_string_lossy()
            .into_owned();
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut data)
            .map_err(|_| corrupt(format!("truncated (entry {name})")))?;
        out.insert(name, data);
    }
    Ok(out)
}
