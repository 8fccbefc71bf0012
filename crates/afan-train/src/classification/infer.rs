//! Top-k classes of image files, with the preprocessing the model family was trained with
//! (overridable).

use crate::error::{Result, TrainError};
use afan_core::SplitModel;
use afan_data::{ImageTransform, top_k};
use afan_models::{Classifier, InputNorm};
use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// torchvision's ImageNet class names, in index order.
const IMAGENET_CLASSES: &str = include_str!("../../../../assets/imagenet_classes.txt");

/// One predicted class.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    /// Class index.
    pub class: usize,
    /// Class name.
    pub label: String,
    /// Softmax probability.
    pub probability: f32,
}

/// The predictions for one image.
#[derive(Clone, Debug, Serialize)]
pub struct ImagePredictions {
    /// The file.
    pub image: PathBuf,
    /// Most probable first.
    pub top: Vec<Prediction>,
}

/// The `k` most probable classes of each image, `labels` naming the classes; images are
/// decoded and transformed by `transform`, 16 at a time.
pub fn predict(
    model: &Classifier,
    images: &[PathBuf],
    transform: ImageTransform,
    labels: &[String],
    k: usize,
    device: &Device,
) -> Result<Vec<ImagePredictions>> {
    // On a worker of rayon's pool, as the training step (afan_models::on_pool).
    afan_models::on_pool(|| {
        let c = transform.crop as usize;
        let num_classes = labels.len();
        let mut results = Vec::new();
        for chunk in images.chunks(16) {
            let mut pixels = Vec::with_capacity(chunk.len() * 3 * c * c);
            for path in chunk {
                pixels.extend(transform.load(path)?);
            }
            let x = Tensor::<4>::from_data(TensorData::new(pixels, [chunk.len(), 3, c, c]), device);
            let logits = crate::tensors::to_host(model.forward(x));
            for (path, row) in chunk.iter().zip(logits.chunks_exact(num_classes)) {
                if row.iter().any(|v| !v.is_finite()) {
                    return Err(TrainError::NonFinite(format!(
                        "the model gave non-finite logits for {}",
                        path.display()
                    )));
                }
                let top = top_k(row, k.min(num_classes))
                    .into_iter()
                    .map(|(class, probability)| Prediction {
                        class,
                        label: labels[class].clone(),
                        probability,
                    })
                    .collect();
                results.push(ImagePredictions {
                    image: path.clone(),
                    top,
                });
            }
        }
        Ok(results)
    })
}

/// Replaces the input normalization of a model that normalizes outside its network (the
/// torchvision families) with `mean`/`std` where given.
pub fn with_normalization(
    mut model: Classifier,
    mean: Option<[f32; 3]>,
    std: Option<[f32; 3]>,
) -> Result<Classifier> {
    if mean.is_none() && std.is_none() {
        return Ok(model);
    }
    let Some(norm) = model.input_norm_mut() else {
        return Err(TrainError::Config(
            "--mean/--std apply to torchvision models; CIFAR ResNets normalize inside the model"
                .into(),
        ));
    };
    *norm = InputNorm {
        mean: mean.unwrap_or(norm.mean),
        std: std.unwrap_or(norm.std),
    };
    Ok(model)
}

/// Class names: the file given (one per line), those the checkpoint recorded, ImageNet's for
/// 1000 classes, the training dataset's, or `class N`.
pub fn class_labels(
    path: Option<&Path>,
    num_classes: usize,
    recorded: &[String],
    dataset: Option<&str>,
) -> Result<Vec<String>> {
    let names: Vec<String> = if let Some(p) = path {
        let text = std::fs::read_to_string(p).map_err(|e| TrainError::io(p, e))?;
        let names: Vec<String> = text.lines().map(str::to_string).collect();
        if names.len() != num_classes {
            return Err(TrainError::Config(format!(
                "{}: expected {num_classes} class names (one per line), found {}",
                p.display(),
                names.len()
            )));
        }
        names
    } else if recorded.len() == num_classes {
        recorded.to_vec()
    } else if num_classes == 1000 {
        IMAGENET_CLASSES.lines().map(str::to_string).collect()
    } else {
        match dataset {
            Some("cifar10") => afan_data::CifarKind::Cifar10.default_class_names(),
            Some("cifar100") => afan_data::CifarKind::Cifar100.default_class_names(),
            Some("synthetic") => afan_data::SHAPES10_CLASSES.map(str::to_string).to_vec(),
            _ => Vec::new(),
        }
    };
    if names.len() == num_classes {
        return Ok(names);
    }
    Ok((0..num_classes).map(|i| format!("class {i}")).collect())
}
