//! The error of reading a state dict (`state_dict`) or applying it to a model (`import`): its
//! own module because both use it.

use std::path::PathBuf;

/// Why a state dict could not be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a state dict in a format afan reads.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The state dict does not fit the model.
    #[error(
        "the weights do not fit {model}: {}",
        describe(missing, unexpected, shapes, dtypes, &[])
    )]
    Mismatch {
        /// The model's name.
        model: String,
        /// Keys the model needs that the state dict lacks.
        missing: Vec<String>,
        /// Keys of the state dict the model has no place for.
        unexpected: Vec<String>,
        /// `(key, expected shape, found shape)`, shapes in PyTorch's layout.
        shapes: Vec<(String, Vec<usize>, Vec<usize>)>,
        /// `(key, dtype)` of tensors the model needs as floats but the file stores otherwise.
        dtypes: Vec<(String, &'static str)>,
    },
    /// The state dict fits the model, but constant buffers hold other values than the ones
    /// afan's model computes with (see [`PytorchBuffer::fixed`](crate::PytorchBuffer::fixed)): another preprocessing.
    /// (A variant of its own, reported once the keys and shapes fit, keeps
    /// [`ImportError::Mismatch`], and so every `Result` of an import, small.)
    #[error(
        "the weights do not fit {model}: {}",
        describe(&[], &[], &[], &[], values)
    )]
    Constants {
        /// The model's name.
        model: String,
        /// `(key, expected values)`.
        values: Vec<(String, String)>,
    },
}

/// The problems of a load in one line (shared by [`ImportError`] and the import report).
pub(crate) fn describe(
    missing: &[String],
    unexpected: &[String],
    shapes: &[(String, Vec<usize>, Vec<usize>)],
    dtypes: &[(String, &'static str)],
    values: &[(String, String)],
) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing keys {}", missing.join(", ")));
    }
    if !unexpected.is_empty() {
        parts.push(format!("unexpected keys {}", unexpected.join(", ")));
    }
    for (k, want, got) in shapes {
        parts.push(format!("`{k}` has shape {got:?}, expected {want:?}"));
    }
    for (k, dtype) in dtypes {
        parts.push(format!("`{k}` has dtype {dtype}, expected a float type"));
    }
    for (k, want) in values {
        parts.push(format!("`{k}` must hold {want}"));
    }
    parts.join("; ")
}
