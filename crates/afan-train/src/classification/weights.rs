//! `--weights` for classifiers: one flag for every file a user may bring — an afan checkpoint
//! (of any format), a PyTorch `.pth`/`.pt` state dict or checkpoint, or a safetensors file —
//! told apart by content.
//!
//! Strict loads (the default for eval, infer and convert) refuse anything partial; lenient ones
//! (the default for train, where a pretrained backbone meets a new classifier) keep what does not
//! fit as initialised and say so, key by key.

use crate::checkpoint::{Checkpoint, is_archive};
use crate::error::{Result, TrainError};
use crate::task_kind::TaskKind;
use afan_models::{Classifier, ClassifierKind, StateDict};
use std::path::Path;

/// What a weights file says about the model it holds, before a model is built.
#[allow(clippy::large_enum_variant)] // one per command, read once
pub enum WeightsFile {
    /// An afan checkpoint (it names its model and class count).
    Checkpoint(Checkpoint),
    /// A PyTorch or safetensors state dict.
    StateDict(StateDict),
}

impl WeightsFile {
    /// Reads `path`, recognising an afan checkpoint by its tar header.
    pub fn read(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(TrainError::Model(format!(
                "cannot open weights file {}: no such file",
                path.display()
            )));
        }
        if path.is_dir() || is_archive(path) {
            let c = Checkpoint::read(path)?;
            c.expect_task(TaskKind::Classification)?;
            return Ok(Self::Checkpoint(c));
        }
        Ok(Self::StateDict(
            StateDict::from_file(path).map_err(TrainError::model)?,
        ))
    }

    /// The architecture the checkpoint names (a state dict names none).
    pub fn model_name(&self) -> Option<String> {
        match self {
            Self::Checkpoint(c) => c.model_info["model"].as_str().map(str::to_string),
            Self::StateDict(_) => None,
        }
    }

    /// The class count the weights were trained for: the checkpoint's, or the rows of the
    /// classifier's weight in a state dict (`fc.weight`, EfficientNet's `classifier.1.weight`).
    pub fn num_classes(&self, path: &Path) -> Result<usize> {
        match self {
            Self::Checkpoint(c) => c.model_info["num_classes"]
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| TrainError::checkpoint(path, "records no class count")),
            Self::StateDict(d) => {
                match d.get("fc.weight").or_else(|| d.get("classifier.1.weight")) {
                    Some((_, shape)) if shape.len() == 2 => Ok(shape[0]),
                    _ => Err(TrainError::Model(format!(
                        "{} has no 2-D `fc.weight` or `classifier.1.weight`, so its class count \
                         is unknown; pass --num-classes",
                        path.display()
                    ))),
                }
            }
        }
    }

    /// Loads the weights into `model` (built for `kind`). Returns the model and a one-line account
    /// of a partial load, if it was partial.
    pub fn apply(
        &self,
        model: Classifier,
        kind: ClassifierKind,
        path: &Path,
        strict: bool,
    ) -> Result<(Classifier, Option<String>)> {
        match self {
            Self::Checkpoint(c) => {
                let name = self.model_name().unwrap_or_default();
                if name != kind.to_string() {
                    return Err(TrainError::Model(format!(
                        "{} holds a {name} but the model is {kind}",
                        path.display()
                    )));
                }
                Ok((c.load_model(model)?, None))
            }
            Self::StateDict(dict) => {
                let wrapper = dict
                    .stripped_prefix()
                    .map(|p| format!(" (inside `{p}`)"))
                    .unwrap_or_default();
                if strict {
                    let model = model.load_pytorch(dict).map_err(|e| {
                        TrainError::Model(format!(
                            "{}{wrapper} does not load strictly (pass --strict false to keep \
                             what does not fit as initialised): {e}",
                            path.display()
                        ))
                    })?;
                    return Ok((model, None));
                }
                let (model, report) = model.load_pytorch_partial(dict);
                let source = format!("{}{wrapper}", path.display());
                let note = crate::weights::partial_note(&report, &source, &kind.to_string())?;
                Ok((model, note))
            }
        }
    }
}
