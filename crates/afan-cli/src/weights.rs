//! `--weights`: one flag for every file a user may bring — an afan checkpoint, a PyTorch
//! `.pth`/`.pt` state dict or checkpoint, or a safetensors file — told apart by content.
//!
//! Strict loads (the default for eval, infer and convert) refuse anything partial; lenient ones
//! (the default for train, where a pretrained backbone meets a new classifier) keep what does not
//! fit as initialised and say so, key by key.

use crate::checkpoint;
use afan_models::{Classifier, ClassifierKind, ImportReport, StateDict};
use anyhow::{Context, Result, bail};
use std::path::Path;

/// What a weights file says about the model it holds, before a model is built.
#[allow(clippy::large_enum_variant)] // one per command, read once
pub enum WeightsFile {
    /// An afan checkpoint (it names its model and class count).
    Checkpoint(checkpoint::Checkpoint),
    /// A PyTorch or safetensors state dict.
    StateDict(StateDict),
}

impl WeightsFile {
    /// Reads `path`, recognising an afan checkpoint by its tar header.
    pub fn read(path: &Path) -> Result<Self> {
        let mut head = [0u8; 262];
        let n = {
            use std::io::Read;
            let mut f = std::fs::File::open(path)
                .with_context(|| format!("cannot open weights file {}", path.display()))?;
            f.read(&mut head)?
        };
        if n == head.len() && &head[257..262] == b"ustar" {
            return Ok(Self::Checkpoint(checkpoint::load(path)?));
        }
        Ok(Self::StateDict(StateDict::from_file(path)?))
    }

    /// The class count the weights were trained for: the checkpoint's, or the rows of the
    /// classifier's weight in a state dict (`fc.weight`, EfficientNet's `classifier.1.weight`).
    pub fn num_classes(&self, path: &Path) -> Result<usize> {
        match self {
            Self::Checkpoint(c) => Ok(c.state.num_classes),
            Self::StateDict(d) => {
                match d.get("fc.weight").or_else(|| d.get("classifier.1.weight")) {
                    Some((_, shape)) if shape.len() == 2 => Ok(shape[0]),
                    _ => bail!(
                        "{} has no 2-D `fc.weight` or `classifier.1.weight`, so its class count \
                         is unknown; pass --num-classes",
                        path.display()
                    ),
                }
            }
        }
    }

    /// Loads the weights into `model` (built for `kind`). Returns the model and a one-line account
    /// of a partial load, if it was partial.
    pub fn apply(
        self,
        model: Classifier,
        kind: ClassifierKind,
        path: &Path,
        strict: bool,
    ) -> Result<(Classifier, Option<String>)> {
        match self {
            Self::Checkpoint(c) => {
                if c.state.model != kind.to_string() {
                    bail!(
                        "{} holds a {} but the model is {kind}",
                        path.display(),
                        c.state.model
                    );
                }
                Ok((checkpoint::load_record(model, c.model, path)?, None))
            }
            Self::StateDict(dict) => {
                let wrapper = dict
                    .stripped_prefix()
                    .map(|p| format!(" (inside `{p}`)"))
                    .unwrap_or_default();
                if strict {
                    let model = model.load_pytorch(&dict).with_context(|| {
                        format!(
                            "{}{wrapper} does not load strictly (pass --strict false to keep \
                             what does not fit as initialised)",
                            path.display()
                        )
                    })?;
                    return Ok((model, None));
                }
                let (model, report) = model.load_pytorch_partial(&dict);
                let source = format!("{}{wrapper}", path.display());
                let note = partial_note(&report, &source, &kind.to_string())?;
                Ok((model, note))
            }
        }
    }
}

/// The account of a lenient load: an error when nothing fitted (almost surely the wrong file or
/// architecture), a one-line note naming what stayed initialised when the load was partial.
pub fn partial_note(report: &ImportReport, source: &str, target: &str) -> Result<Option<String>> {
    if report.loaded.is_empty() {
        bail!("no tensor of {source} fits {target}: {}", report.problems());
    }
    Ok((!report.is_complete()).then(|| {
        format!(
            "loaded {} tensors of {source}; kept initialised or ignored: {}",
            report.loaded.len(),
            report.problems()
        )
    }))
}
