//! Building, saving and loading the detector of a run, and turning batches into its input.

use super::config::DetectConfig;
use crate::checkpoint::{read_archive, write_archive};
use afan_data::detection::DetectionBatch;
use afan_models::detection::step::{DetectionInput, DetectionTarget};
use afan_models::resnet::ResNet;
use afan_models::{FasterRcnn, InputNorm, PytorchImport, StateDict};
use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Where a detection run stands, saved with every checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DetState {
    /// Always `detect`: tells a detection checkpoint from a classification one.
    pub task: String,
    /// Training iterations completed.
    pub iterations_done: usize,
    /// Best evaluation mAP@0.5 (COCO: AP) so far.
    pub best_map: f64,
    /// The evaluation figure of this checkpoint's model.
    pub map: f64,
    /// Class names in label order.
    pub class_names: Vec<String>,
    /// The configuration the run trains with.
    pub config: DetectConfig,
}

/// A loaded detection checkpoint.
pub struct DetCheckpoint {
    /// Trainer state.
    pub state: DetState,
    /// Model record.
    pub model: Bytes,
    /// Optimizer record (absent in `best.ckpt`).
    pub optim: Option<Bytes>,
}

const STATE: &str = "detect_state.json";

/// Writes a checkpoint atomically (the classification checkpoint's tar layout).
pub fn save(path: &Path, state: &DetState, model: &[u8], optim: Option<&[u8]>) -> Result<()> {
    let state = serde_json::to_vec_pretty(state)?;
    let mut entries = vec![(STATE, state.as_slice()), ("model.bpk", model)];
    if let Some(o) = optim {
        entries.push(("optim.bpk", o));
    }
    write_archive(path, &entries)
}

/// Reads a detection checkpoint.
pub fn load(path: &Path) -> Result<DetCheckpoint> {
    let mut e = read_archive(path)?;
    let (Some(state), Some(model)) = (e.remove(STATE), e.remove("model.bpk")) else {
        bail!(
            "{} is not an afan detection checkpoint (expected {STATE} and model.bpk inside; \
             classification checkpoints are read without --task detect)",
            path.display()
        );
    };
    let state: DetState = serde_json::from_slice(&state)
        .with_context(|| format!("checkpoint {}: {STATE} is malformed", path.display()))?;
    Ok(DetCheckpoint {
        state,
        model: Bytes::from_bytes_vec(model),
        optim: e.remove("optim.bpk").map(Bytes::from_bytes_vec),
    })
}

/// A fresh detector for `config`, its backbone from ImageNet weights if the configuration
/// names a torchvision ResNet state dict.
pub fn build(config: &DetectConfig, device: &Device) -> Result<FasterRcnn> {
    let d = &config.detector;
    let Some(path) = &config.weights else {
        return Ok(d.init(device)?);
    };
    let depth = d.validate()?;
    let dict = StateDict::from_file(path)?;
    let (backbone, report) = ResNet::new(depth, 1000, device).load_pytorch_partial(&dict);
    let target = format!("a {}", d.backbone);
    if let Some(note) = crate::weights::partial_note(&report, &path.display().to_string(), &target)?
    {
        eprintln!("warning: {note}");
    }
    eprintln!("backbone weights from {}", path.display());
    Ok(d.init_with_backbone(backbone, device)?)
}

/// The model as bytes.
pub fn model_bytes(model: &FasterRcnn) -> Result<Bytes> {
    model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("cannot serialize the model: {e}"))
}

/// A batch's images as a normalized tensor (torchvision's ImageNet mean and std, which
/// `GeneralizedRCNNTransform` applies) and their valid sizes.
pub fn images(batch: &DetectionBatch, device: &Device) -> (Tensor<4>, Vec<[usize; 2]>) {
    let n = batch.image_sizes.len();
    let data = TensorData::new(batch.images.clone(), [n, 3, batch.height, batch.width]);
    let x = InputNorm::IMAGENET.apply(Tensor::from_data(data, device));
    let sizes = batch.image_sizes.iter().map(|&(h, w)| [h, w]).collect();
    (x, sizes)
}

/// A training batch as the detector's input (labels shifted past the background class).
pub fn input(
    batch: &DetectionBatch,
    num_classes: usize,
    device: &Device,
) -> Result<DetectionInput> {
    let (x, sizes) = images(batch, device);
    let targets = batch
        .boxes
        .iter()
        .zip(&batch.labels)
        .map(|(b, l)| DetectionTarget {
            boxes: b.clone(),
            labels: l.iter().map(|l| l + 1).collect(),
        })
        .collect();
    Ok(DetectionInput::new(x, sizes, targets, num_classes)?)
}
