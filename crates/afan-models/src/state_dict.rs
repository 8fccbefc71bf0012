//! PyTorch state dicts on the host, read from the files users have: `.pth`/`.pt` written by
//! `torch.save` (every container PyTorch has used, through the `pytorch-reader` crate) and
//! safetensors.
//!
//! Training scripts rarely save a bare `model.state_dict()`: they wrap it (`{"state_dict": ...,
//! "epoch": 90}`, `{"model": ...}`) or save a `DataParallel` model whose keys start with
//! `module.`. Those wrappers are recognised and removed here, and reported through
//! [`StateDict::stripped_prefix`] so a caller can say what it did.

use crate::import_error::ImportError;
use std::collections::BTreeMap;
use std::path::Path;

/// One tensor of a state dict: values converted to `f32`, its shape, and the dtype it had in the
/// file (a float tensor where the model needs one is the only thing that loads).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Values in row-major order.
    pub values: Vec<f32>,
    /// Extents, outermost first, in PyTorch's layout.
    pub shape: Vec<usize>,
    /// The dtype in the file, lower case as PyTorch prints it (`float32`, `int64`).
    pub dtype: &'static str,
}

impl Entry {
    /// Whether the file stored a floating-point tensor.
    pub fn is_float(&self) -> bool {
        matches!(self.dtype, "float32" | "float64" | "float16" | "bfloat16")
    }
}

/// Tensors by name, as `f32` on the host.
#[derive(Clone, Debug, Default)]
pub struct StateDict {
    pub(crate) tensors: BTreeMap<String, Entry>,
    stripped: Option<String>,
}

/// Wrappers a training script puts around its state dict, outermost first.
const WRAPPERS: [&str; 5] = [
    "state_dict.",
    "model_state_dict.",
    "model.",
    "net.",
    "module.",
];

impl StateDict {
    /// Reads a state dict from a `.safetensors` file or any file `torch.save` wrote, telling them
    /// apart by content, not by name.
    pub fn from_file(path: &Path) -> Result<Self, ImportError> {
        let mut head = [0u8; 8];
        let io = |source| ImportError::Io {
            path: path.to_path_buf(),
            source,
        };
        let n = {
            use std::io::Read;
            let mut f = std::fs::File::open(path).map_err(io)?;
            f.read(&mut head).map_err(io)?
        };
        // A safetensors file starts with a little-endian u64 header length followed by `{`;
        // a torch.save file with `PK` (zip), the pickle protocol byte 0x80, or a tar header.
        let looks_safetensors = n == 8 && !head.starts_with(b"PK") && head[0] != 0x80 && {
            let len = u64::from_le_bytes(head);
            len > 1 && len < (1 << 30)
        };
        let dict = if looks_safetensors {
            Self::from_safetensors(path)?
        } else {
            Self::from_pytorch(path)?
        };
        Ok(dict.unwrap_wrappers())
    }

    /// Reads every tensor of a safetensors file.
    pub fn from_safetensors(path: &Path) -> Result<Self, ImportError> {
        let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let st =
            safetensors::SafeTensors::deserialize(&bytes).map_err(|e| ImportError::Format {
                path: path.to_path_buf(),
                reason: format!("not a safetensors file ({e})"),
            })?;
        let mut dict = StateDict::default();
        for (name, view) in st.tensors() {
            use safetensors::Dtype as D;
            let (values, dtype) = match view.dtype() {
                D::F32 => (convert::<f32>(view.data(), |v| v), "float32"),
                D::F64 => (convert::<f64>(view.data(), |v| v as f32), "float64"),
                D::F16 => (convert::<half::f16>(view.data(), f32::from), "float16"),
                D::BF16 => (convert::<half::bf16>(view.data(), f32::from), "bfloat16"),
                D::I64 => (convert::<i64>(view.data(), |v| v as f32), "int64"),
                D::I32 => (convert::<i32>(view.data(), |v| v as f32), "int32"),
                _ => (Vec::new(), "unsupported"),
            };
            dict.insert(name, values, view.shape().to_vec(), dtype);
        }
        Ok(dict)
    }

    /// Reads a file written by `torch.save`: a state dict, a checkpoint dict holding one, or a
    /// whole pickled module.
    pub fn from_pytorch(path: &Path) -> Result<Self, ImportError> {
        let format = |reason: String| ImportError::Format {
            path: path.to_path_buf(),
            reason,
        };
        if let Err(source) = std::fs::metadata(path) {
            return Err(ImportError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
        let reader = pytorch_reader::PytorchReader::new(path)
            .map_err(|e| format(format!("not a PyTorch checkpoint ({e})")))?;
        if reader.is_empty() {
            return Err(format(
                "holds no tensors; expected a state dict (torch.save(model.state_dict()))".into(),
            ));
        }
        let mut dict = StateDict::default();
        for (name, tensor) in reader.into_tensors() {
            use pytorch_reader::DType as D;
            let bytes = tensor
                .read()
                .map_err(|e| format(format!("tensor `{name}` unreadable ({e})")))?;
            let (values, dtype) = match tensor.dtype() {
                D::F32 => (convert::<f32>(&bytes, |v| v), "float32"),
                D::F64 => (convert::<f64>(&bytes, |v| v as f32), "float64"),
                D::F16 => (convert::<half::f16>(&bytes, f32::from), "float16"),
                D::BF16 => (convert::<half::bf16>(&bytes, f32::from), "bfloat16"),
                D::I64 => (convert::<i64>(&bytes, |v| v as f32), "int64"),
                D::I32 => (convert::<i32>(&bytes, |v| v as f32), "int32"),
                D::U8 => (bytes.iter().map(|&v| v as f32).collect(), "uint8"),
                _ => (Vec::new(), "unsupported"),
            };
            dict.insert(name, values, tensor.shape().to_vec(), dtype);
        }
        Ok(dict)
    }

    /// Adds (or replaces) a tensor; `dtype` as PyTorch names it (`float32`).
    pub fn insert(
        &mut self,
        key: String,
        values: Vec<f32>,
        shape: Vec<usize>,
        dtype: &'static str,
    ) {
        self.tensors.insert(
            key,
            Entry {
                values,
                shape,
                dtype,
            },
        );
    }

    /// The tensor `key`: values and shape.
    pub fn get(&self, key: &str) -> Option<(&[f32], &[usize])> {
        self.tensors
            .get(key)
            .map(|e| (e.values.as_slice(), e.shape.as_slice()))
    }

    /// The whole entry `key`, dtype included.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.tensors.get(key)
    }

    /// The entries under `prefix` (e.g. `model.`), with the prefix removed.
    pub fn strip_prefix(&self, prefix: &str) -> StateDict {
        let tensors = self
            .tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.clone())))
            .collect();
        StateDict {
            tensors,
            stripped: Some(prefix.to_string()),
        }
    }

    /// The wrapper prefix removed when the file was read (`module.`), if any.
    pub fn stripped_prefix(&self) -> Option<&str> {
        self.stripped.as_deref()
    }

    /// All keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the dict holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Removes, repeatedly, a wrapper prefix that every key carries (`state_dict.module.` too).
    /// A checkpoint that keeps other tensors beside its weights (an optimizer state) has keys
    /// outside the wrapper and is left alone: its keys then show up as unexpected, by name.
    fn unwrap_wrappers(mut self) -> Self {
        let mut removed = String::new();
        while let Some(prefix) = WRAPPERS
            .iter()
            .find(|p| !self.is_empty() && self.keys().all(|k| k.starts_with(*p)))
        {
            removed.push_str(prefix);
            self = self.strip_prefix(prefix);
        }
        self.stripped = (!removed.is_empty()).then_some(removed);
        self
    }
}

/// Little-endian bytes of `T` to `f32`, copying because the file's bytes need not be aligned.
fn convert<T: bytemuck::Pod>(bytes: &[u8], f: impl Fn(T) -> f32) -> Vec<f32> {
    bytemuck::pod_collect_to_vec::<u8, T>(bytes)
        .into_iter()
        .map(f)
        .collect()
}
