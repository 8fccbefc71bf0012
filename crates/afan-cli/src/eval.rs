//! `afan eval`: the figures of a checkpoint (any task, any format) on its run's evaluation data,
//! or on other data; a classifier's PyTorch state dict too; with `--corrupt`, on corrupted
//! copies of the evaluation images (`eval_corrupt`).

use crate::eval_corrupt::{conditions, named, results_path};
use crate::task_arg::{TaskArg, agree};
use afan_data::Corruption;
use afan_models::ClassifierKind;
use afan_train::classification::ClassificationTask;
use afan_train::classification::config as cls_config;
use afan_train::classification::data::EvalSplit;
use afan_train::classification::weights::WeightsFile;
use afan_train::detection::DetectionTask;
use afan_train::segmentation::SegmentationTask;
use afan_train::{Checkpoint, Evaluation, Purpose, Task, TaskKind};
use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::Device;
use std::path::PathBuf;

/// `afan eval` arguments.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The task; default: the one the checkpoint records (a contradiction is refused).
    #[arg(long, value_enum)]
    pub task: Option<TaskArg>,
    /// A checkpoint (`RUN/best.ckpt`, `RUN/last.ckpt`) or a run directory.
    #[arg(long, required_unless_present = "weights", conflicts_with = "weights")]
    pub checkpoint: Option<PathBuf>,
    /// Or a classifier's weights: an afan checkpoint, or a PyTorch/safetensors state dict (then
    /// --model and --dataset are needed).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// The architecture of a state dict (with a checkpoint: must be the one it records).
    #[arg(long)]
    pub model: Option<String>,
    /// A state dict must load completely (default true; `--strict false` keeps what does not
    /// fit as initialised). Checkpoints always load completely.
    #[arg(long, action = clap::ArgAction::Set)]
    pub strict: Option<bool>,
    /// Dataset folder or archive; default: the data the run was trained on.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Dataset name; default: the run's.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Classification: `test`, or `val` (the images a run held out with val_split).
    #[arg(long)]
    pub split: Option<String>,
    /// Images per evaluation batch (default: 256 for classification, the run's batch size
    /// otherwise).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Detection: where to write the COCO-format result file (default: next to the checkpoint,
    /// `<name>.detections.json`, with the ground truth as `<name>.gt.json`).
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Evaluate on a corrupted copy of the evaluation images: noise, blur or contrast
    /// (CIFAR-10-C's severity 3), `NAME:STRENGTH`, or `none` (the clean images). Repeatable or a
    /// comma list: each condition is evaluated in turn and printed (one JSON object per line
    /// with --json), its name in the result.
    #[arg(long, value_name = "NAME[:S]", value_delimiter = ',')]
    pub corrupt: Vec<String>,
    /// Backend device.
    #[arg(long, env = "BURN_DEVICE", default_value = "cpu")]
    pub device: String,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `afan eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    if args.batch_size == Some(0) {
        bail!("--batch-size must be at least 1");
    }
    let conditions = conditions(&args.corrupt)?;
    let device = crate::device::one(&args.device)?;
    if let Some(path) = &args.weights
        && let WeightsFile::StateDict(_) = WeightsFile::read(path)?
    {
        // A state dict names no task: it is a classifier's.
        agree(args.task, TaskKind::Classification, path)?;
        refuse(&args, TaskKind::Classification)?;
        return state_dict(&args, &device, &conditions);
    }
    if args.strict.is_some() {
        bail!(
            "--strict applies to state dicts (--weights FILE.pth); a checkpoint always loads completely"
        );
    }
    let path = args
        .checkpoint
        .as_ref()
        .or(args.weights.as_ref())
        .expect("clap requires one");
    let ckpt = Checkpoint::read(path)?;
    let task = agree(args.task, ckpt.task, path)?;
    refuse(&args, task)?;
    let mut overrides = Vec::new();
    if let Some(d) = &args.data {
        overrides.push(format!(
            "data={}",
            toml::Value::String(d.display().to_string())
        ));
    }
    if let Some(d) = &args.dataset {
        overrides.push(format!("dataset={}", toml::Value::String(d.clone())));
    }
    match task {
        TaskKind::Classification => {
            let config = ckpt.config(&cls_config::release(), &overrides)?;
            let recorded = ckpt.model_info["model"]
                .as_str()
                .unwrap_or(&config.task.model);
            same_model(&args, recorded, &ckpt)?;
            let t = classification_data(&args, config)?;
            let want = ckpt.model_info["num_classes"]
                .as_u64()
                .unwrap_or(t.num_classes() as u64);
            if want as usize != t.num_classes() {
                bail!(
                    "{} predicts {want} classes but the evaluation data has {}",
                    path.display(),
                    t.num_classes()
                );
            }
            let model = ckpt.load_model(t.build_model(&device, false)?)?.valid();
            for c in &conditions {
                let batch = args.batch_size.unwrap_or(256);
                let e = t.evaluate_with(&model, batch, &device, args.quiet, c.as_ref())?;
                print(&named(e, c.as_ref()), args.json)?;
            }
        }
        TaskKind::Detection => {
            let base = afan_train::detection::config::release();
            let t = DetectionTask::open(ckpt.config(&base, &overrides)?, Purpose::Evaluate)?;
            same_model(&args, &t.config().task.detector.backbone, &ckpt)?;
            classes_agree(&ckpt, t.class_names())?;
            let model = ckpt.load_model(t.build_model(&device, false)?)?.valid();
            let batch = args.batch_size.unwrap_or(t.config().common.batch_size);
            for c in &conditions {
                let (dets, eval) =
                    t.detect_test_set(&model, batch, &device, args.quiet, c.as_ref())?;
                let results = args
                    .results
                    .clone()
                    .unwrap_or_else(|| ckpt.path.with_extension("detections.json"));
                let results = results_path(&results, c.as_ref());
                let test = t.test_set().expect("opened for evaluation");
                let gt = afan_train::detection::evaluate::write_results(test, &dets, &results)?;
                let mut e = eval.evaluation(t.is_coco());
                e.report["results"] = serde_json::json!(results);
                e.report["ground_truth"] = serde_json::json!(gt);
                e.text = format!(
                    "{}detections: {} (COCO result file; ground truth {})",
                    afan_train::detection::evaluate::report(&eval, t.is_coco()),
                    results.display(),
                    gt.display()
                );
                print(&named(e, c.as_ref()), args.json)?;
            }
        }
        TaskKind::Segmentation => {
            let base = afan_train::segmentation::config::release();
            let t = SegmentationTask::open(ckpt.config(&base, &overrides)?, Purpose::Evaluate)?;
            same_model(
                &args,
                crate::device::backbone_name(&t.config().task.model),
                &ckpt,
            )?;
            let model = ckpt.load_model(t.build_model(&device, false)?)?.valid();
            let batch = args.batch_size.unwrap_or(t.config().common.batch_size);
            for c in &conditions {
                let e = t.evaluate_with(&model, batch, &device, args.quiet, c.as_ref())?;
                print(&named(e, c.as_ref()), args.json)?;
            }
        }
    }
    Ok(())
}

/// The classification task on the split `--split` names (default `test`).
fn classification_data(
    args: &EvalArgs,
    config: afan_train::RunConfig<afan_train::classification::config::ClassificationConfig>,
) -> Result<ClassificationTask> {
    let name = args.split.as_deref().unwrap_or("test");
    let split = name.parse::<EvalSplit>().map_err(anyhow::Error::msg)?;
    Ok(ClassificationTask::for_evaluation(config, split)?)
}

fn print(e: &Evaluation, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(&e.report)?);
    } else {
        println!("{}", e.text);
    }
    Ok(())
}

/// Refuses the flags that have no meaning for `task`.
fn refuse(args: &EvalArgs, task: TaskKind) -> Result<()> {
    for (flag, given, applies) in [
        (
            "--split",
            args.split.is_some(),
            task == TaskKind::Classification,
        ),
        (
            "--results",
            args.results.is_some(),
            task == TaskKind::Detection,
        ),
    ] {
        if given && !applies {
            bail!("{flag} does not apply to --task {task}");
        }
    }
    Ok(())
}

/// `--model` with a checkpoint: accepted when it names the recorded architecture.
fn same_model(args: &EvalArgs, recorded: &str, ckpt: &Checkpoint) -> Result<()> {
    match &args.model {
        Some(m) if !m.eq_ignore_ascii_case(recorded) => bail!(
            "--model {m} contradicts {}, which holds a {recorded}",
            ckpt.path.display()
        ),
        _ => Ok(()),
    }
}

fn classes_agree(ckpt: &Checkpoint, data: &[String]) -> Result<()> {
    let recorded = ckpt.class_names();
    if !recorded.is_empty() && recorded.len() != data.len() {
        bail!(
            "{} detects {} classes but the evaluation data has {}",
            ckpt.path.display(),
            recorded.len(),
            data.len()
        );
    }
    Ok(())
}

/// A classifier's PyTorch or safetensors state dict, evaluated on `--dataset`.
fn state_dict(args: &EvalArgs, device: &Device, conditions: &[Option<Corruption>]) -> Result<()> {
    let path = args.weights.as_ref().expect("checked by the caller");
    let Some(model) = &args.model else {
        bail!(
            "{} is a state dict, which does not name its architecture; pass --model",
            path.display()
        );
    };
    let Some(dataset) = &args.dataset else {
        bail!(
            "{} does not say what data it was trained on; pass --dataset (and --data)",
            path.display()
        );
    };
    let mut config = cls_config::release();
    config.task.model = model.clone();
    config.task.dataset = dataset.clone();
    config.task.data = args.data.clone();
    let kind: ClassifierKind = model.parse()?;
    let t = classification_data(args, config)?;
    let file = WeightsFile::read(path)?;
    let (m, _) = file.apply(
        kind.build(t.num_classes(), device),
        kind,
        path,
        args.strict.unwrap_or(true),
    )?;
    let m = m.valid();
    for c in conditions {
        let batch = args.batch_size.unwrap_or(256);
        let e = t.evaluate_with(&m, batch, device, args.quiet, c.as_ref())?;
        print(&named(e, c.as_ref()), args.json)?;
    }
    Ok(())
}
