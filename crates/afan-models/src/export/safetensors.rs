//! The safetensors writer: the `safetensors` crate's, over the state dict's little-endian bytes.
//! The file is encoded in memory and written to the export's own temporary file:
//! `safetensors::serialize_to_file` writes a temporary file of its own and renames it, which
//! would leave [`super::atomic`]'s handle (flushed, measured) on a replaced, empty file.

use super::ExportError;
use crate::state_dict::StateDict;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;

/// Writes `dict` into `temp` (at `temp_path`); `target` names the file in messages.
pub(super) fn write(dict: &StateDict, temp: &mut File, target: &Path) -> Result<(), ExportError> {
    // (key, dtype, shape, little-endian bytes)
    type Record<'a> = (&'a str, Dtype, &'a [usize], Cow<'a, [u8]>);
    let bytes: Vec<Record> = dict
        .tensors
        .iter()
        .map(|(key, e)| {
            let dtype = if e.dtype == "int64" {
                Dtype::I64
            } else {
                Dtype::F32
            };
            (key.as_str(), dtype, e.shape.as_slice(), super::le_bytes(e))
        })
        .collect();
    let encode = |reason: String| ExportError::Encode {
        path: target.to_path_buf(),
        reason,
    };
    let views = bytes
        .iter()
        .map(|(key, dtype, shape, data)| {
            TensorView::new(*dtype, shape.to_vec(), data)
                .map(|v| (*key, v))
                .map_err(|e| encode(format!("tensor `{key}`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // What `safetensors.torch.save_file` records, and what tools loading PyTorch weights check.
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| encode(e.to_string()))?;
    temp.write_all(&bytes).map_err(|source| ExportError::Io {
        path: target.to_path_buf(),
        source,
    })
}
