//! afan models out to PyTorch: a state dict with the key names and layouts of the PyTorch module
//! each model re-implements, written as safetensors or as a `torch.save` `.pth` file, so that
//! `module.load_state_dict(torch.load(path))` or `safetensors.torch.load_file(path)` loads it
//! with `strict=True`. It is the inverse of [`crate::import`]: importing an exported file
//! gives back the model bit for bit.
//!
//! | model | PyTorch module | keys |
//! | --- | --- | --- |
//! | [`crate::ResNet`] 18..152, [`crate::EfficientNet`] B0..B7, [`crate::MobileNetV2`] | torchvision's `resnetNN`, `efficientnet_bN`, `mobilenet_v2` | torchvision's |
//! | [`crate::CifarResNet`] | the release's `Classification/resnet_s.py` `ResNet` | `sequential_model.N.*`, its normalisation buffers and `w` |
//! | [`crate::DeepLabV3Plus`], ResNet backbone | the release's `Segmentation/network` `DeepLabV3` with `DeepLabHeadV3Plus` | `backbone.*` (with `backbone.normal`), `classifier.*` |
//! | [`crate::DeepLabV3Plus`], MobileNetV2 backbone | VainF/DeepLabV3Plus-Pytorch's (the release has it commented out) | `backbone.low_level_features.*`, `backbone.high_level_features.*`, `classifier.*` |
//! | [`crate::Classifier`] | its variant's | its variant's |
//! | [`crate::FasterRcnn`] (C4) | the release's `Detection/model.py` `Model`, as far as [`crate::FasterRcnn::load_release`] reads it | `features.*`, `rpn._*`, `detection.hidden.*`, `detection._proposal_*` (no copies: not a strict load) |
//!
//! What changes on the way out: a linear layer's weight is transposed to PyTorch's `[out, in]`;
//! every BatchNorm gets the `num_batches_tracked` counter PyTorch's has (afan does not count
//! batches: it is written as 0, which PyTorch uses only for `momentum=None`, and no afan model
//! sets that); tensors the PyTorch module has beyond afan's parameters ([`PytorchBuffer`]s:
//! the release's in-model normalisation constants, the CIFAR release's learnable-variant weights
//! `w`) are added; parameters the PyTorch module lacks (the one-output `fc` a DeepLab ResNet
//! backbone keeps to stay a whole `ResNet`) are left out. A model with a non-finite value is
//! refused: a diverged model is not worth a file.
//!
//! Files are written atomically (a temporary file in the target's folder, flushed to disk, then
//! renamed over the target), so a crash leaves either the old file or the new one; an existing
//! file is replaced only when [`ExportOptions::overwrite`] asks for it.

mod atomic;
mod collect;
mod models;
#[cfg(test)]
mod perturb;
mod pickle;
mod pth;
mod safetensors;
#[cfg(test)]
mod tests;

use crate::import::PytorchBuffer;
use crate::state_dict::StateDict;
use burn::module::Module;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A model that can be written as the state dict of a PyTorch module: the one place that knows
/// the key names on the way out (the implementations reuse the import's key tables).
pub trait PytorchExport: Module + Sized {
    /// The name used in messages (`resnet50`).
    fn export_name(&self) -> String;

    /// The state-dict key of the parameter at Burn path `path`, or `None` for a parameter the
    /// PyTorch module does not have.
    fn export_key(&self, path: &str) -> Option<String>;

    /// Tensors of the PyTorch module that are no parameters of this model.
    fn export_buffers(&self) -> Vec<PytorchBuffer> {
        Vec::new()
    }

    /// The model as a PyTorch state dict, in PyTorch's layouts (`float32` tensors and `int64`
    /// `num_batches_tracked` counters).
    fn to_state_dict(&self) -> Result<StateDict, ExportError> {
        collect::state_dict(self)
    }

    /// Writes the model's state dict to `path` (see the module documentation).
    fn export(&self, path: &Path, options: ExportOptions) -> Result<ExportSummary, ExportError> {
        let dict = self.to_state_dict()?;
        let bytes = write_state_dict(&dict, path, options)?;
        Ok(ExportSummary {
            model: self.export_name(),
            path: path.to_path_buf(),
            format: options.format,
            tensors: dict.len(),
            bytes,
        })
    }
}

/// A file format PyTorch reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// safetensors (`safetensors.torch.load_file`), metadata `format = pt`.
    Safetensors,
    /// The zip container of `torch.save` since PyTorch 1.6 (`torch.load`, also with
    /// `weights_only=True`).
    Pth,
}

impl ExportFormat {
    /// Both formats.
    pub const ALL: [ExportFormat; 2] = [ExportFormat::Safetensors, ExportFormat::Pth];

    /// The usual file extension (`safetensors`, `pth`).
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Safetensors => "safetensors",
            ExportFormat::Pth => "pth",
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

/// A format name that is neither `safetensors` nor `pth`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown export format `{0}`; expected safetensors or pth")]
pub struct UnknownExportFormat(pub String);

impl FromStr for ExportFormat {
    type Err = UnknownExportFormat;

    /// `safetensors`, or `pth` (also `pt`, the other extension `torch.save` files carry).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "safetensors" => Ok(ExportFormat::Safetensors),
            "pth" | "pt" => Ok(ExportFormat::Pth),
            _ => Err(UnknownExportFormat(s.to_string())),
        }
    }
}

/// How to write an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportOptions {
    /// The file format.
    pub format: ExportFormat,
    /// Whether an existing file at the path may be replaced (otherwise it is an error).
    pub overwrite: bool,
}

impl ExportOptions {
    /// `format`, refusing to replace an existing file.
    pub fn new(format: ExportFormat) -> Self {
        Self {
            format,
            overwrite: false,
        }
    }

    /// Allows (or not) replacing an existing file.
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }
}

/// What an export wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportSummary {
    /// The model's name.
    pub model: String,
    /// The file written.
    pub path: PathBuf,
    /// Its format.
    pub format: ExportFormat,
    /// Number of state-dict entries.
    pub tensors: usize,
    /// File size.
    pub bytes: u64,
}

impl fmt::Display for ExportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} tensors, {:.1} MB of {} in {}",
            self.model,
            self.tensors,
            self.bytes as f64 / 1e6,
            self.format,
            self.path.display()
        )
    }
}

/// Why a model could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The target exists and replacing it was not asked for.
    #[error("{} already exists; it is replaced only when overwriting is asked for", path.display())]
    Exists {
        /// The target.
        path: PathBuf,
    },
    /// Writing failed (the target is unchanged).
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The target.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The container could not be encoded (the target is unchanged).
    #[error("cannot write {}: {reason}", path.display())]
    Encode {
        /// The target.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A tensor holds NaN or an infinity.
    #[error(
        "{model}: `{key}` holds a non-finite value ({value}); a diverged model is not exported"
    )]
    NonFinite {
        /// The model's name.
        model: String,
        /// The state-dict key.
        key: String,
        /// The first non-finite value.
        value: f32,
    },
    /// Two tensors would share one key (a defect of the model's key table).
    #[error("{model}: two tensors map to the state-dict key `{key}`")]
    DuplicateKey {
        /// The model's name.
        model: String,
        /// The key.
        key: String,
    },
    /// A tensor's values could not be read from the device.
    #[error("{model}: cannot read `{key}`: {reason}")]
    Tensor {
        /// The model's name.
        model: String,
        /// The state-dict key.
        key: String,
        /// What went wrong.
        reason: String,
    },
    /// A state dict given to [`write_state_dict`] holds a dtype the writers do not write.
    #[error("`{key}` has dtype {dtype}; the export writes float32 and int64 tensors")]
    Dtype {
        /// The state-dict key.
        key: String,
        /// Its dtype.
        dtype: &'static str,
    },
}

/// Writes `dict` (`float32` and `int64` entries) to `path` in `options.format`, atomically;
/// returns the file size. [`PytorchExport::export`] is this after
/// [`PytorchExport::to_state_dict`].
pub fn write_state_dict(
    dict: &StateDict,
    path: &Path,
    options: ExportOptions,
) -> Result<u64, ExportError> {
    if let Some((key, entry)) = dict
        .tensors
        .iter()
        .find(|(_, e)| !matches!(e.dtype, "float32" | "int64"))
    {
        return Err(ExportError::Dtype {
            key: key.clone(),
            dtype: entry.dtype,
        });
    }
    atomic::write(path, options.overwrite, |file| match options.format {
        ExportFormat::Safetensors => safetensors::write(dict, file, path),
        ExportFormat::Pth => pth::write(dict, file, path),
    })
}

/// An entry's values as the little-endian bytes of its dtype (`float32` or `int64`).
fn le_bytes(entry: &crate::state_dict::Entry) -> std::borrow::Cow<'_, [u8]> {
    if entry.dtype == "int64" {
        // Counters, exact in f32 up to 2^24.
        return entry
            .values
            .iter()
            .flat_map(|&v| (v as i64).to_le_bytes())
            .collect();
    }
    if cfg!(target_endian = "little") {
        bytemuck::cast_slice(&entry.values).into()
    } else {
        entry.values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }
}
