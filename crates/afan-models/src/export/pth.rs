//! The `.pth` writer: the zip container `torch.save` writes since PyTorch 1.6 —
//! `archive/data.pkl`, a pickle of an `OrderedDict` whose values are
//! `torch._utils._rebuild_tensor_v2(storage, offset, shape, stride, requires_grad, hooks)` calls
//! with each storage a persistent id; `archive/data/N`, storage N's raw little-endian bytes
//! (stored, 64-byte aligned as torch writes them, so `torch.load(mmap=True)` works);
//! `archive/byteorder` and `archive/version` (3). The zip itself is the `zip` crate's; the
//! pickle is hand-written ([`super::pickle`] says why).

use super::ExportError;
use super::pickle::Pickler;
use crate::state_dict::StateDict;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

/// The folder every record sits in (torch uses the file's stem; any name loads).
const ARCHIVE: &str = "archive";

/// Writes `dict` into `file`; `target` names the file in messages.
pub(super) fn write(dict: &StateDict, file: &mut File, target: &Path) -> Result<(), ExportError> {
    let encode = |reason: String| ExportError::Encode {
        path: target.to_path_buf(),
        reason,
    };
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        // A fixed date: the same model gives the same bytes.
        .last_modified_time(DateTime::default())
        .with_alignment(64);
    let mut zip = ZipWriter::new(BufWriter::new(file));
    let mut record = |name: &str, bytes: &[u8]| -> Result<(), ExportError> {
        let large = bytes.len() as u64 >= u64::from(u32::MAX);
        zip.start_file(format!("{ARCHIVE}/{name}"), options.large_file(large))
            .map_err(|e| encode(format!("record {name}: {e}")))?;
        zip.write_all(bytes).map_err(|source| ExportError::Io {
            path: target.to_path_buf(),
            source,
        })
    };
    record("data.pkl", &pickle(dict))?;
    record("byteorder", b"little")?;
    for (i, entry) in dict.tensors.values().enumerate() {
        record(&format!("data/{i}"), &super::le_bytes(entry))?;
    }
    record("version", b"3\n")?;
    let out = zip
        .finish()
        .map_err(|e| encode(format!("zip directory: {e}")))?;
    out.into_inner()
        .map_err(|e| ExportError::Io {
            path: target.to_path_buf(),
            source: e.into_error(),
        })?
        .flush()
        .map_err(|source| ExportError::Io {
            path: target.to_path_buf(),
            source,
        })
}

/// The pickle of the state dict, storage `i` being the `i`-th entry in key order (what
/// `torch.save` writes for a dict of contiguous tensors, memo opcodes aside).
fn pickle(dict: &StateDict) -> Vec<u8> {
    let mut p = Pickler::new();
    ordered_dict(&mut p);
    p.mark();
    for (i, (key, entry)) in dict.tensors.iter().enumerate() {
        p.str(key);
        p.global("torch._utils", "_rebuild_tensor_v2");
        p.begin_tuple(6);
        // The storage: ('storage', torch.FloatStorage, '<i>', 'cpu', numel) as a persistent id.
        p.begin_tuple(5);
        p.str("storage");
        let storage = if entry.dtype == "int64" {
            "LongStorage"
        } else {
            "FloatStorage"
        };
        p.global("torch", storage);
        p.str(&i.to_string());
        p.str("cpu");
        p.int(entry.values.len() as i64);
        p.end_tuple(5);
        p.persistent_id();
        p.int(0);
        p.int_tuple(&entry.shape);
        p.int_tuple(&contiguous_strides(&entry.shape));
        p.false_();
        ordered_dict(&mut p);
        p.end_tuple(6);
        p.reduce();
    }
    p.set_items();
    p.finish()
}

/// `collections.OrderedDict()`.
fn ordered_dict(p: &mut Pickler) {
    p.global("collections", "OrderedDict");
    p.end_tuple(0);
    p.reduce();
}

/// Row-major strides of `shape`, in elements.
fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}
