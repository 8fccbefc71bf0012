//! `afan infer`: the predictions of a checkpoint (or a classifier's state dict) on image files —
//! top-k classes, boxes (drawn with `--out DIR`), or segmentation masks written to `--out DIR`.

use crate::infer_outputs;
use crate::task_arg::{TaskArg, agree};
use afan_data::ImageTransform;
use afan_models::ClassifierKind;
use afan_train::classification::infer::{class_labels, predict, with_normalization};
use afan_train::classification::weights::WeightsFile;
use afan_train::{Checkpoint, TaskKind};
use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::Device;
use std::path::{Path, PathBuf};

/// `afan infer` arguments.
#[derive(clap::Args, Debug)]
pub struct InferArgs {
    /// The task; default: the one the checkpoint records (a state dict is a classifier's).
    #[arg(long, value_enum)]
    pub task: Option<TaskArg>,
    /// Weights: an afan checkpoint, or a classifier's PyTorch/safetensors state dict (then
    /// --model is needed).
    #[arg(long, required_unless_present = "checkpoint")]
    pub weights: Option<PathBuf>,
    /// The same as --weights (a checkpoint or a run directory).
    #[arg(long, conflicts_with = "weights")]
    pub checkpoint: Option<PathBuf>,
    /// Classification: the architecture of a state dict; with a checkpoint, the one it records.
    #[arg(long)]
    pub model: Option<String>,
    /// Image files (JPEG or PNG).
    #[arg(long, required = true, num_args = 1..)]
    pub image: Vec<PathBuf>,
    /// Classification: classes to print per image (default 5).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Classification: shorter side after resizing; default: the model family's.
    #[arg(long)]
    pub resize: Option<u32>,
    /// Classification: centre crop side; default: the model family's.
    #[arg(long)]
    pub crop: Option<u32>,
    /// Classification: channel means the weights expect, `R,G,B` (torchvision models).
    #[arg(long, value_delimiter = ',')]
    pub mean: Option<Vec<f32>>,
    /// Classification: channel stds the weights expect, `R,G,B` (torchvision models).
    #[arg(long, value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
    /// Classification: class names, one per line (default: the checkpoint's, ImageNet's for
    /// 1000 classes, the dataset's).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Detection: report boxes with at least this score (the model's own threshold applies
    /// first).
    #[arg(long)]
    pub min_score: Option<f32>,
    /// Detection: write each image with its boxes into this folder; segmentation (required):
    /// write each image's palette mask into it, as `<image name>.png`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Segmentation: also write each image tinted by class, `<image name>.overlay.png`.
    #[arg(long)]
    pub overlay: bool,
    /// A state dict must load completely (default true; `--strict false` keeps what does not
    /// fit as initialised). Checkpoints always load completely.
    #[arg(long, action = clap::ArgAction::Set)]
    pub strict: Option<bool>,
    /// Backend device.
    #[arg(long, env = "BURN_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl InferArgs {
    /// The flags of each task that were given, for the refusal.
    fn task_flags(&self) -> [(&'static str, bool, TaskKind); 10] {
        use TaskKind::*;
        [
            ("--top-k", self.top_k.is_some(), Classification),
            ("--resize", self.resize.is_some(), Classification),
            ("--crop", self.crop.is_some(), Classification),
            ("--mean", self.mean.is_some(), Classification),
            ("--std", self.std.is_some(), Classification),
            ("--labels", self.labels.is_some(), Classification),
            ("--model", self.model.is_some(), Classification),
            ("--min-score", self.min_score.is_some(), Detection),
            ("--overlay", self.overlay, Segmentation),
            ("--out", self.out.is_some(), Classification),
        ]
    }
}

/// Runs `afan infer`.
pub fn run(args: InferArgs) -> Result<()> {
    let device = crate::device::one(&args.device)?;
    let path = args
        .weights
        .as_ref()
        .or(args.checkpoint.as_ref())
        .expect("clap requires one");
    let file = if path.is_dir() || afan_train::checkpoint::is_archive(path) {
        Some(Checkpoint::read(path)?)
    } else {
        None
    };
    let task = match &file {
        Some(c) => agree(args.task, c.task, path)?,
        None => agree(args.task, TaskKind::Classification, path)?,
    };
    for (flag, given, owner) in args.task_flags() {
        let applies = match flag {
            "--out" => task != TaskKind::Classification,
            _ => task == owner,
        };
        if given && !applies {
            bail!("{flag} does not apply to --task {task}");
        }
    }
    if args.strict.is_some() && file.is_some() {
        bail!("--strict applies to state dicts; a checkpoint always loads completely");
    }
    let images = distinct_names(&args.image)?;
    let out = out_dir(&args)?;
    match (task, file) {
        (TaskKind::Detection, Some(c)) => {
            let min_score = args.min_score.unwrap_or(0.0);
            infer_outputs::detection(c, &images, min_score, out, args.json, &device)
        }
        (TaskKind::Segmentation, Some(c)) => {
            infer_outputs::segmentation(c, &images, out, args.overlay, args.json, &device)
        }
        (_, c) => classification(&args, path, c, &device),
    }
}

/// Output files are named after the images: two images of one name would overwrite each other.
fn distinct_names(images: &[PathBuf]) -> Result<Vec<(PathBuf, String)>> {
    let mut seen = std::collections::HashSet::new();
    images
        .iter()
        .map(|p| {
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned());
            let Some(stem) = stem.filter(|s| seen.insert(s.clone())) else {
                bail!("{}: another image has the same name", p.display());
            };
            Ok((p.clone(), stem))
        })
        .collect()
}

fn out_dir(args: &InferArgs) -> Result<Option<&Path>> {
    if let Some(d) = &args.out {
        std::fs::create_dir_all(d)
            .map_err(|e| anyhow::anyhow!("cannot create --out {}: {e}", d.display()))?;
    }
    Ok(args.out.as_deref())
}

fn classification(
    args: &InferArgs,
    path: &Path,
    ckpt: Option<Checkpoint>,
    device: &Device,
) -> Result<()> {
    let file = match ckpt {
        Some(c) => WeightsFile::Checkpoint(c),
        None => WeightsFile::read(path)?,
    };
    let kind: ClassifierKind = match (file.model_name(), &args.model) {
        (Some(recorded), Some(m)) if !m.eq_ignore_ascii_case(&recorded) => bail!(
            "--model {m} contradicts {}, which holds a {recorded}",
            path.display()
        ),
        (Some(recorded), _) => recorded.parse()?,
        (None, Some(m)) => m.parse()?,
        (None, None) => bail!(
            "{} is a state dict, which does not name its architecture; pass --model",
            path.display()
        ),
    };
    let num_classes = file.num_classes(path)?;
    let (recorded, dataset) = match &file {
        WeightsFile::Checkpoint(c) => (
            c.class_names(),
            c.config
                .get("dataset")
                .and_then(|v| v.as_str())
                .map(str::to_string),
        ),
        WeightsFile::StateDict(_) => (Vec::new(), None),
    };
    let labels = class_labels(
        args.labels.as_deref(),
        num_classes,
        &recorded,
        dataset.as_deref(),
    )?;
    let (model, note) = file.apply(
        kind.build(num_classes, device),
        kind,
        path,
        args.strict.unwrap_or(true),
    )?;
    if let Some(note) = note {
        eprintln!("warning: {note}");
    }
    let three = |flag: &str, v: &Option<Vec<f32>>| -> Result<Option<[f32; 3]>> {
        match v.as_deref() {
            None => Ok(None),
            Some(&[r, g, b]) => Ok(Some([r, g, b])),
            Some(other) => bail!("--{flag} takes three values R,G,B, got {}", other.len()),
        }
    };
    let model = with_normalization(
        model.valid(),
        three("mean", &args.mean)?,
        three("std", &args.std)?,
    )?;
    let defaults = kind.preprocess();
    let transform = ImageTransform {
        resize: args.resize.unwrap_or(defaults.resize),
        crop: args.crop.unwrap_or(defaults.crop),
    };
    if transform.crop == 0 || transform.resize == 0 || args.top_k == Some(0) {
        bail!("--resize, --crop and --top-k must be at least 1");
    }
    let results = predict(
        &model,
        &args.image,
        transform,
        &labels,
        args.top_k.unwrap_or(5),
        device,
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&results)?);
        return Ok(());
    }
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
    Ok(())
}
