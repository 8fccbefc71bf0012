//! `afan infer`: top-k classes of image files, with the preprocessing the model family was
//! trained with (overridable), from any weights file `--weights` accepts.

use crate::device::parse_device;
use crate::weights::WeightsFile;
use afan_core::SplitModel;
use afan_data::{ImageTransform, top_k};
use afan_models::{Classifier, ClassifierKind, InputNorm};
use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// torchvision's ImageNet class names, in index order.
const IMAGENET_CLASSES: &str = include_str!("../../../assets/imagenet_classes.txt");

/// `afan infer` arguments.
#[derive(clap::Args, Debug)]
pub struct InferArgs {
    /// classify (top-k classes), segment (a palette mask; --checkpoint is the run directory) or
    /// detect (boxes; `afan infer --task detect --help` lists its flags).
    #[arg(long, value_parser = ["classify", "segment", "detect"], default_value = "classify")]
    pub task: String,
    /// Weights: an afan checkpoint, or a PyTorch/safetensors state dict (then --model is needed).
    #[arg(long, required_unless_present = "checkpoint")]
    pub weights: Option<PathBuf>,
    /// The same as --weights (for segmentation: the run directory or its model.bin).
    #[arg(long, conflicts_with = "weights")]
    pub checkpoint: Option<PathBuf>,
    /// Output mask PNG (VOC palette), with --task segment.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the image tinted by the predicted classes, with --task segment.
    #[arg(long)]
    pub overlay: Option<PathBuf>,
    /// Architecture; default: the one the checkpoint names.
    #[arg(long)]
    pub model: Option<String>,
    /// Image files (JPEG or PNG).
    #[arg(long, required = true, num_args = 1..)]
    pub image: Vec<PathBuf>,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Shorter side after resizing; default: the model family's (256 ImageNet, 32 CIFAR).
    #[arg(long)]
    pub resize: Option<u32>,
    /// Centre crop side; default: the model family's (224 ImageNet, 32 CIFAR).
    #[arg(long)]
    pub crop: Option<u32>,
    /// Channel means the weights expect, `R,G,B` (torchvision models; default ImageNet's).
    #[arg(long, value_delimiter = ',')]
    pub mean: Option<Vec<f32>>,
    /// Channel stds the weights expect, `R,G,B` (torchvision models; default ImageNet's).
    #[arg(long, value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
    /// Class names, one per line; default: ImageNet's for 1000 classes, the run's dataset's.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Refuse partial loads of a state dict (`--strict false` to allow).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub strict: bool,
    /// Backend device.
    #[arg(long, env = "BURN_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One predicted class.
#[derive(Serialize)]
pub struct Prediction {
    /// Class index.
    pub class: usize,
    /// Class name.
    pub label: String,
    /// Softmax probability.
    pub probability: f32,
}

/// The predictions for one image.
#[derive(Serialize)]
pub struct ImageResult {
    /// The file.
    pub image: PathBuf,
    /// Most probable first.
    pub top: Vec<Prediction>,
}

/// Runs `afan infer`.
pub fn run(args: InferArgs) -> Result<()> {
    let device = parse_device(&args.device)?;
    let weights = args
        .weights
        .clone()
        .or(args.checkpoint.clone())
        .expect("clap requires --weights or --checkpoint");
    if args.task == "segment" {
        let ([image], Some(out)) = (args.image.as_slice(), &args.out) else {
            bail!("--task segment takes one --image and an --out mask path");
        };
        crate::segment::infer::run(&weights, image, out, args.overlay.as_deref(), &device)?;
        eprintln!("wrote {}", out.display());
        return Ok(());
    }
    let file = WeightsFile::read(&weights)?;
    let (kind, num_classes, dataset) = match (&file, &args.model) {
        (WeightsFile::Checkpoint(c), m) => {
            let kind: ClassifierKind = m.as_deref().unwrap_or(&c.state.model).parse()?;
            (
                kind,
                c.state.num_classes,
                Some(c.state.config.dataset.clone()),
            )
        }
        (WeightsFile::StateDict(_), Some(m)) => (m.parse()?, file.num_classes(&weights)?, None),
        (WeightsFile::StateDict(_), None) => bail!(
            "{} is a state dict, which does not name its architecture; pass --model",
            weights.display()
        ),
    };
    let labels = labels(args.labels.as_deref(), num_classes, dataset.as_deref())?;
    let model = kind.build(num_classes, &device);
    let (model, note) = file.apply(model, kind, &weights, args.strict)?;
    if let Some(note) = note {
        eprintln!("warning: {note}");
    }
    let model = with_normalization(model.valid(), &args)?;
    let defaults = kind.preprocess();
    let transform = ImageTransform {
        resize: args.resize.unwrap_or(defaults.resize),
        crop: args.crop.unwrap_or(defaults.crop),
    };
    let c = transform.crop as usize;
    let mut results = Vec::new();
    for chunk in args.image.chunks(16) {
        let mut pixels = Vec::with_capacity(chunk.len() * 3 * c * c);
        for path in chunk {
            pixels.extend(transform.load(path)?);
        }
        let x = Tensor::<4>::from_data(TensorData::new(pixels, [chunk.len(), 3, c, c]), &device);
        let logits = crate::data::to_host(model.forward(x));
        for (path, row) in chunk.iter().zip(logits.chunks_exact(num_classes)) {
            if row.iter().any(|v| !v.is_finite()) {
                bail!("the model gave non-finite logits for {}", path.display());
            }
            let top = top_k(row, args.top_k.min(num_classes))
                .into_iter()
                .map(|(class, probability)| Prediction {
                    class,
                    label: labels[class].clone(),
                    probability,
                })
                .collect();
            results.push(ImageResult {
                image: path.clone(),
                top,
            });
        }
    }
    if args.json {
        println!("{}", serde_json::to_string(&results)?);
    } else {
        for r in &results {
            println!("{}", r.image.display());
            for p in &r.top {
                println!(
                    "  {:>6.2}%  {:>4}  {}",
                    100.0 * p.probability,
                    p.class,
                    p.label
                );
            }
        }
    }
    Ok(())
}

/// Applies `--mean`/`--std` to a model that normalizes outside its network.
fn with_normalization(mut model: Classifier, args: &InferArgs) -> Result<Classifier> {
    if args.mean.is_none() && args.std.is_none() {
        return Ok(model);
    }
    let Some(norm) = model.input_norm_mut() else {
        bail!("--mean/--std apply to torchvision models; CIFAR ResNets normalize inside the model");
    };
    let three = |flag: &str, v: &Option<Vec<f32>>, d: [f32; 3]| -> Result<[f32; 3]> {
        match v.as_deref() {
            None => Ok(d),
            Some(&[r, g, b]) => Ok([r, g, b]),
            Some(other) => bail!("--{flag} takes three values R,G,B, got {}", other.len()),
        }
    };
    *norm = InputNorm {
        mean: three("mean", &args.mean, norm.mean)?,
        std: three("std", &args.std, norm.std)?,
    };
    Ok(model)
}

/// Class names: the file given, ImageNet's for 1000 classes, or the training dataset's.
fn labels(path: Option<&Path>, num_classes: usize, dataset: Option<&str>) -> Result<Vec<String>> {
    let names: Vec<String> = if let Some(p) = path {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("cannot read labels file {}", p.display()))?;
        let names: Vec<String> = text.lines().map(str::to_string).collect();
        if names.len() != num_classes {
            bail!(
                "{}: expected {num_classes} class names (one per line), found {}",
                p.display(),
                names.len()
            );
        }
        names
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
