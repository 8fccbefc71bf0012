//! PyTorch state dicts into afan models.
//!
//! A state dict is a flat map from dotted module paths (`layer1.0.bn1.running_var`) to tensors.
//! Burn's modules have the same tree, so loading is a walk over the model that looks each
//! parameter up by its path, after a model-specific renaming (`layer2.1.` is `blocks.4.` in the
//! CIFAR ResNet, `downsample.0.` is `downsample.conv.` in the torchvision one). Two conventions
//! differ and are converted here: PyTorch stores a linear layer's weight as `[out, in]`, Burn as
//! `[in, out]`; and PyTorch's `num_batches_tracked` has no counterpart (ignored). Anything else
//! that does not match — a missing key, a key left over, a shape — is collected and reported by
//! name, never skipped.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Tensors by name, as `f32` on the host.
#[derive(Clone, Debug, Default)]
pub struct StateDict {
    tensors: BTreeMap<String, (Vec<f32>, Vec<usize>)>,
}

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
    /// The file is not a valid safetensors file, or holds a non-float tensor.
    #[error("{path} is not a usable safetensors file: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The state dict does not fit the model.
    #[error(
        "the weights do not fit {model}: {}",
        describe(missing, unexpected, shapes)
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
    },
}

fn describe(
    missing: &[String],
    unexpected: &[String],
    shapes: &[(String, Vec<usize>, Vec<usize>)],
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
    parts.join("; ")
}

impl StateDict {
    /// Reads every floating-point tensor of a safetensors file (f32, f64, f16, bf16).
    pub fn from_safetensors(path: &Path) -> Result<Self, ImportError> {
        let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let format = |reason: String| ImportError::Format {
            path: path.to_path_buf(),
            reason,
        };
        let st =
            safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format(e.to_string()))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => bytemuck::pod_collect_to_vec(data),
                safetensors::Dtype::F64 => bytemuck::pod_collect_to_vec::<u8, f64>(data)
                    .into_iter()
                    .map(|v| v as f32)
                    .collect(),
                safetensors::Dtype::F16 => bytemuck::pod_collect_to_vec::<u8, half::f16>(data)
                    .into_iter()
                    .map(f32::from)
                    .collect(),
                safetensors::Dtype::BF16 => bytemuck::pod_collect_to_vec::<u8, half::bf16>(data)
                    .into_iter()
                    .map(f32::from)
                    .collect(),
                other => {
                    return Err(format(format!(
                        "tensor `{name}` has dtype {other:?}, expected a float type"
                    )));
                }
            };
            tensors.insert(name, (values, view.shape().to_vec()));
        }
        Ok(Self { tensors })
    }

    /// The tensor `key`: values and shape.
    pub fn get(&self, key: &str) -> Option<(&[f32], &[usize])> {
        self.tensors
            .get(key)
            .map(|(v, s)| (v.as_slice(), s.as_slice()))
    }

    /// The entries under `prefix` (e.g. `model.`), with the prefix removed.
    pub fn strip_prefix(&self, prefix: &str) -> StateDict {
        let tensors = self
            .tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.clone())))
            .collect();
        StateDict { tensors }
    }

    /// All keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }
}

/// Copies `dict` into `model`. `to_pytorch` maps a Burn parameter path to its state-dict key.
pub fn load_state_dict<M: Module>(
    model: M,
    model_name: &str,
    dict: &StateDict,
    to_pytorch: impl Fn(&str) -> String,
) -> Result<M, ImportError> {
    let mut loader = Loader {
        path: Vec::new(),
        dict,
        to_pytorch: &to_pytorch,
        used: BTreeSet::new(),
        missing: Vec::new(),
        shapes: Vec::new(),
    };
    let model = model.map(&mut loader);
    let unexpected: Vec<String> = dict
        .keys()
        .filter(|k| !loader.used.contains(*k) && !k.ends_with("num_batches_tracked"))
        .map(str::to_string)
        .collect();
    if loader.missing.is_empty() && unexpected.is_empty() && loader.shapes.is_empty() {
        Ok(model)
    } else {
        Err(ImportError::Mismatch {
            model: model_name.to_string(),
            missing: loader.missing,
            unexpected,
            shapes: loader.shapes,
        })
    }
}

struct Loader<'a, F> {
    path: Vec<String>,
    dict: &'a StateDict,
    to_pytorch: &'a F,
    used: BTreeSet<String>,
    missing: Vec<String>,
    shapes: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl<F: Fn(&str) -> String> ModuleMapper for Loader<'_, F> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let key = (self.to_pytorch)(&self.path.join("."));
        let shape = param.lazy_shape().to_vec();
        // A linear weight is `[in, out]` here and `[out, in]` in PyTorch.
        let linear = D == 2 && key.ends_with("weight");
        let torch_shape: Vec<usize> = if linear {
            vec![shape[1], shape[0]]
        } else {
            shape.clone()
        };
        let Some((values, found)) = self.dict.get(&key) else {
            self.missing.push(key);
            return param;
        };
        self.used.insert(key.clone());
        if found != torch_shape.as_slice() {
            self.shapes.push((key, torch_shape, found.to_vec()));
            return param;
        }
        let data = TensorData::new(values.to_vec(), torch_shape);
        param.map(|t| {
            let loaded = Tensor::<D>::from_data(data, &t.device());
            let loaded = if linear { loaded.transpose() } else { loaded };
            // A fresh tensor is untracked: keep the parameter trainable if it was.
            loaded.set_require_grad(t.is_require_grad())
        })
    }
}
