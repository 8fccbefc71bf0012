//! A model's parameters and buffers as a PyTorch state dict.

use super::{ExportError, PytorchExport};
use crate::state_dict::StateDict;
use burn::module::{ModuleVisitor, Param};
use burn::tensor::Tensor;

/// Walks `model`, keeping every float tensor (parameters and running statistics) under its
/// PyTorch key, in PyTorch's layout, then adds the counters and buffers PyTorch has.
pub(super) fn state_dict<M: PytorchExport>(model: &M) -> Result<StateDict, ExportError> {
    // `valid` folds running statistics updated on other threads into the values the visit
    // reads (and leaves autodiff behind).
    let synced = model.valid();
    let mut collect = Collect {
        model: &synced,
        name: model.export_name(),
        path: Vec::new(),
        dict: StateDict::default(),
        error: None,
    };
    synced.visit(&mut collect);
    let Collect {
        name,
        mut dict,
        error,
        ..
    } = collect;
    if let Some(e) = error {
        return Err(e);
    }
    let batch_norms: Vec<String> = dict
        .keys()
        .filter_map(|k| k.strip_suffix(".running_mean"))
        .map(str::to_string)
        .collect();
    let mut add = |key: String, values: Vec<f32>, shape: Vec<usize>, dtype| {
        if dict.entry(&key).is_some() {
            return Err(ExportError::DuplicateKey {
                model: name.clone(),
                key,
            });
        }
        dict.insert(key, values, shape, dtype);
        Ok(())
    };
    for bn in batch_norms {
        add(
            format!("{bn}.num_batches_tracked"),
            vec![0.0],
            Vec::new(),
            "int64",
        )?;
    }
    for b in model.export_buffers() {
        add(b.key, b.values, b.shape, "float32")?;
    }
    Ok(dict)
}

struct Collect<'a, M> {
    model: &'a M,
    name: String,
    path: Vec<String>,
    dict: StateDict,
    error: Option<ExportError>,
}

impl<M: PytorchExport> ModuleVisitor for Collect<'_, M> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.error.is_some() {
            return;
        }
        let Some(key) = self.model.export_key(&self.path.join(".")) else {
            return;
        };
        let fail = |reason: String| ExportError::Tensor {
            model: self.name.clone(),
            key: key.clone(),
            reason,
        };
        // A linear weight is `[in, out]` here and `[out, in]` in PyTorch (as on import).
        let tensor = param.val();
        let tensor = if D == 2 && key.ends_with("weight") {
            tensor.transpose()
        } else {
            tensor
        };
        let shape = tensor.dims().to_vec();
        let values = match tensor.into_data().convert::<f32>().try_into_vec::<f32>() {
            Ok(v) => v,
            Err(e) => {
                self.error = Some(fail(format!("{e:?}")));
                return;
            }
        };
        if let Some(&value) = values.iter().find(|v| !v.is_finite()) {
            self.error = Some(ExportError::NonFinite {
                model: self.name.clone(),
                key,
                value,
            });
            return;
        }
        if self.dict.entry(&key).is_some() {
            self.error = Some(ExportError::DuplicateKey {
                model: self.name.clone(),
                key,
            });
            return;
        }
        self.dict.insert(key, values, shape, "float32");
    }
}
