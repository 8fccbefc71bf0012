//! PyTorch state dicts into afan models.
//!
//! A state dict is a flat map from dotted module paths (`layer1.0.bn1.running_var`) to tensors.
//! Burn's modules have the same tree, so loading is a walk over the model that looks each
//! parameter up by its path, after a model-specific renaming (`layer2.1.` is `blocks.4.` in the
//! CIFAR ResNet, `downsample.0.` is `downsample.conv.` in the torchvision one). Two conventions
//! differ and are converted here: PyTorch stores a linear layer's weight as `[out, in]`, Burn as
//! `[in, out]`; and PyTorch's `num_batches_tracked` has no counterpart (ignored). Anything else
//! that does not match — a missing key, a key left over, a shape — is collected and reported by
//! name, never skipped. Tensors a PyTorch module holds beyond afan's parameters (constant
//! buffers) are declared per model as [`PytorchBuffer`]s; the `export` module is the way back.

use crate::state_dict::StateDict;
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};
use std::collections::BTreeSet;

pub use crate::import_error::ImportError;
use crate::import_error::describe;

/// A model whose parameters have PyTorch counterparts: the one place that knows its key names.
///
/// Implementations give the renaming only; loading, checking and error reporting are shared.
pub trait PytorchImport: Module + Sized {
    /// The name used in messages (`resnet50`).
    fn import_name(&self) -> String;

    /// The state-dict key of the parameter at Burn path `path` (`layer1.0.downsample.conv.weight`
    /// is `layer1.0.downsample.0.weight` in torchvision).
    fn pytorch_key(&self, path: &str) -> String;

    /// Loads a PyTorch state dict of the same architecture; every key must match (see
    /// [`load_state_dict`]).
    fn load_pytorch(self, dict: &StateDict) -> Result<Self, ImportError> {
        let (model, report) = self.load_pytorch_partial(dict);
        report.into_result().map(|()| model)
    }

    /// Loads what fits and keeps the rest as initialised (a pretrained backbone under a new
    /// classifier), reporting every key that did not load.
    fn load_pytorch_partial(self, dict: &StateDict) -> (Self, ImportReport) {
        let name = self.import_name();
        // The key map borrows the model while the load consumes it: compute it first.
        let keys: std::collections::HashMap<String, String> = param_paths(&self)
            .into_iter()
            .map(|p| {
                let k = self.pytorch_key(&p);
                (p, k)
            })
            .collect();
        load_state_dict_partial(self, &name, dict, |path| {
            keys.get(path).cloned().unwrap_or_else(|| path.to_string())
        })
    }
}

/// What a load did: the keys loaded, and every key that did not fit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportReport {
    /// The model's name.
    pub model: String,
    /// State-dict keys copied into the model.
    pub loaded: Vec<String>,
    /// Keys the model needs that the state dict lacks (left as initialised).
    pub missing: Vec<String>,
    /// Keys of the state dict the model has no place for.
    pub unexpected: Vec<String>,
    /// `(key, expected shape, found shape)`, in PyTorch's layout (left as initialised).
    pub shapes: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// `(key, dtype)` of tensors stored as other than floats (left as initialised).
    pub dtypes: Vec<(String, &'static str)>,
    /// `(key, expected values)` of constant buffers holding other values than afan's model
    /// computes with (see [`PytorchBuffer::fixed`]).
    pub values: Vec<(String, String)>,
}

impl ImportReport {
    /// Whether every parameter loaded and every key was used.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.shapes.is_empty()
            && self.dtypes.is_empty()
            && self.values.is_empty()
    }

    /// `Ok` for a complete load, else the mismatch as an error.
    pub fn into_result(self) -> Result<(), ImportError> {
        if self.is_complete() {
            return Ok(());
        }
        let fits = self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.shapes.is_empty()
            && self.dtypes.is_empty();
        if fits {
            return Err(ImportError::Constants {
                model: self.model,
                values: self.values,
            });
        }
        Err(ImportError::Mismatch {
            model: self.model,
            missing: self.missing,
            unexpected: self.unexpected,
            shapes: self.shapes,
            dtypes: self.dtypes,
        })
    }

    /// The problems in one line (empty for a complete load).
    pub fn problems(&self) -> String {
        describe(
            &self.missing,
            &self.unexpected,
            &self.shapes,
            &self.dtypes,
            &self.values,
        )
    }
}

/// A tensor of the PyTorch module that is no parameter of afan's model: a constant buffer (the
/// release's in-model input normalisation) or state afan keeps elsewhere (the release's
/// learnable-variant weights `w` on the CIFAR ResNet). Export writes it, so that PyTorch loads the
/// file strictly; import accepts it, and checks it where afan's model depends on its value.
#[derive(Clone, Debug, PartialEq)]
pub struct PytorchBuffer {
    /// The state-dict key.
    pub key: String,
    /// Values in row-major order.
    pub values: Vec<f32>,
    /// Extents in PyTorch's layout.
    pub shape: Vec<usize>,
    /// Whether afan's model computes with exactly these values (a normalisation's mean and std,
    /// which afan applies as constants): a file holding others is refused on import. `false`
    /// for state that does not change afan's model (written on export, ignored on import).
    pub fixed: bool,
}

impl ImportReport {
    /// Accepts `buffers` in `dict`: their keys are no longer unexpected, and a fixed buffer whose
    /// shape or values differ is reported in [`ImportReport::values`]. Their absence is no error
    /// (a state dict of the same network without them is as complete for afan).
    pub fn accept_buffers(&mut self, dict: &StateDict, buffers: &[PytorchBuffer]) {
        for buffer in buffers {
            self.unexpected.retain(|k| *k != buffer.key);
            let Some(entry) = dict.entry(&buffer.key) else {
                continue;
            };
            let same = entry.shape == buffer.shape
                && entry.values.len() == buffer.values.len()
                && entry
                    .values
                    .iter()
                    .zip(&buffer.values)
                    .all(|(a, b)| (a - b).abs() <= 1e-6 * b.abs().max(1.0));
            if buffer.fixed && !same {
                self.values.push((
                    buffer.key.clone(),
                    format!("{:?} of shape {:?}", buffer.values, buffer.shape),
                ));
            }
        }
    }
}

/// The Burn paths of every float parameter of `model`, in visiting order.
pub fn param_paths<M: Module>(model: &M) -> Vec<String> {
    struct Paths {
        path: Vec<String>,
        out: Vec<String>,
    }
    impl burn::module::ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<D>>) {
            self.out.push(self.path.join("."));
        }
    }
    let mut v = Paths {
        path: Vec::new(),
        out: Vec::new(),
    };
    model.visit(&mut v);
    v.out
}

/// Copies `dict` into `model`, refusing a partial load. `to_pytorch` maps a Burn parameter path
/// to its state-dict key.
pub fn load_state_dict<M: Module>(
    model: M,
    model_name: &str,
    dict: &StateDict,
    to_pytorch: impl Fn(&str) -> String,
) -> Result<M, ImportError> {
    let (model, report) = load_state_dict_partial(model, model_name, dict, to_pytorch);
    report.into_result().map(|()| model)
}

/// Copies what fits of `dict` into `model` and reports the rest.
pub fn load_state_dict_partial<M: Module>(
    model: M,
    model_name: &str,
    dict: &StateDict,
    to_pytorch: impl Fn(&str) -> String,
) -> (M, ImportReport) {
    let mut loader = Loader {
        path: Vec::new(),
        dict,
        to_pytorch: &to_pytorch,
        used: BTreeSet::new(),
        report: ImportReport {
            model: model_name.to_string(),
            ..Default::default()
        },
    };
    let model = model.map(&mut loader);
    let mut report = loader.report;
    report.unexpected = dict
        .keys()
        .filter(|k| !loader.used.contains(*k) && !k.ends_with("num_batches_tracked"))
        .map(str::to_string)
        .collect();
    (model, report)
}

struct Loader<'a, F> {
    path: Vec<String>,
    dict: &'a StateDict,
    to_pytorch: &'a F,
    used: BTreeSet<String>,
    report: ImportReport,
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
        let Some(entry) = self.dict.entry(&key) else {
            self.report.missing.push(key);
            return param;
        };
        self.used.insert(key.clone());
        if entry.shape != torch_shape {
            self.report
                .shapes
                .push((key, torch_shape, entry.shape.clone()));
            return param;
        }
        if !entry.is_float() {
            self.report.dtypes.push((key, entry.dtype));
            return param;
        }
        self.report.loaded.push(key);
        let data = TensorData::new(entry.values.clone(), torch_shape);
        param.map(|t| {
            let loaded = Tensor::<D>::from_data(data, &t.device());
            let loaded = if linear { loaded.transpose() } else { loaded };
            // A fresh tensor is untracked: keep the parameter trainable if it was.
            loaded.set_require_grad(t.is_require_grad())
        })
    }
}
