//! `afan train`: one set of flags for every task, resolved into the task's configuration and
//! handed to the engine (`afan_train::train`).

use crate::run_flags::RunFlags;
use crate::task_arg::{TaskArg, agree};
use afan_train::classification::ClassificationTask;
use afan_train::config::task_of_file;
use afan_train::detection::DetectionTask;
use afan_train::run_dir::CONFIG;
use afan_train::segmentation::SegmentationTask;
use afan_train::{
    Method, OpenMode, Purpose, RunConfig, Summary, Task, TaskKind, TaskSection, TrainOptions,
};
use anyhow::{Result, bail};
use std::path::PathBuf;

/// `afan train` arguments.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// classification (classify), detection (detect) or segmentation (segment); default: the
    /// `task` of --config (or of the run with --resume), else classification.
    #[arg(long, value_enum)]
    pub task: Option<TaskArg>,
    /// TOML configuration (see configs/); fields it leaves out keep the task's defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunFlags,
    /// Run directory (default: `runs/<task>-<method>-<time>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out with its own configuration (--epochs / --iterations extend it).
    #[arg(long, requires = "out", conflicts_with = "overwrite")]
    pub resume: bool,
    /// Replace the run --out holds (its files only).
    #[arg(long)]
    pub overwrite: bool,
    /// Stop after this many iterations with a checkpoint, as an interruption would (a
    /// time-boxed job); continue with --resume.
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Backend device: cpu (= flex), wgpu, `cuda[:N]`; a comma-separated list (`cuda:0,cuda:1`)
    /// trains data-parallel, the batch split evenly over the devices.
    #[arg(long, env = "BURN_DEVICE", default_value = "cpu")]
    pub device: String,
    /// No progress bars or per-evaluation lines.
    #[arg(long)]
    pub quiet: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Print the resolved configuration (defaults, file and flags merged) as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// Runs `afan train`.
pub fn run(args: TrainArgs) -> Result<()> {
    let task = if args.resume {
        let stored = stored_config(&args)?;
        let found = task_of_file(&stored)?.unwrap_or(TaskKind::Classification);
        agree(args.task, found, &stored)?
    } else {
        match (&args.config, args.task) {
            (Some(c), flag) => match task_of_file(c)? {
                Some(found) => agree(flag, found, c)?,
                None => flag.map_or(TaskKind::Classification, Into::into),
            },
            (None, flag) => flag.map_or(TaskKind::Classification, Into::into),
        }
    };
    match task {
        TaskKind::Classification => train::<ClassificationTask>(&args, |quick, dataset| {
            if quick {
                afan_train::classification::config::quickstart()
            } else {
                afan_train::classification::config::release_for(dataset)
            }
        }),
        TaskKind::Detection => train::<DetectionTask>(&args, |quick, dataset| {
            use afan_train::detection::config::{coco, quickstart, release};
            match dataset {
                Some("coco") => coco(),
                Some("synthetic") => quickstart(),
                _ if quick => quickstart(),
                _ => release(),
            }
        }),
        TaskKind::Segmentation => train::<SegmentationTask>(&args, |quick, dataset| {
            use afan_train::segmentation::config::{cityscapes, quickstart, release};
            match dataset {
                Some("synthetic") => quickstart(),
                Some("cityscapes") => cityscapes(),
                _ if quick => quickstart(),
                _ => release(),
            }
        }),
    }
}

fn stored_config(args: &TrainArgs) -> Result<PathBuf> {
    let out = args
        .out
        .as_ref()
        .expect("clap requires --out with --resume");
    Ok(out.join(CONFIG))
}

/// The configuration: the run's own with `--resume` (its length extended, definition flags
/// refused), else `base` (quick start or release preset), the file, the flags.
fn resolve<S: TaskSection>(
    args: &TrainArgs,
    base: impl Fn(bool, Option<&str>) -> RunConfig<S>,
) -> Result<RunConfig<S>> {
    if args.resume {
        let stored = stored_config(args)?;
        if args.config.is_some() {
            bail!(
                "--resume continues with the run's own {}; drop --config",
                stored.display()
            );
        }
        if let Some(flag) = args.run.given().first() {
            bail!(
                "{flag} cannot change a run being resumed (it continues with {}); only \
                 --epochs / --iterations extend it",
                stored.display()
            );
        }
        return Ok(RunConfig::load(
            &base(false, None),
            Some(&stored),
            &args.run.length(),
        )?);
    }
    let quick = args.config.is_none() && args.run.names_no_data();
    let overrides = args.run.overrides(S::KIND)?;
    Ok(RunConfig::load(
        &base(quick, args.run.dataset.as_deref()),
        args.config.as_deref(),
        &overrides,
    )?)
}

fn train<T: Task>(
    args: &TrainArgs,
    base: impl Fn(bool, Option<&str>) -> RunConfig<T::Section>,
) -> Result<()> {
    let config = resolve(args, base)?;
    args.run.check_method(config.common.method)?;
    if args.print_config {
        print!("{}", config.to_toml()?);
        return Ok(());
    }
    let out = args.out.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from("runs").join(format!("{}-{}-{t}", T::Section::KIND, config.common.method))
    });
    if args.stop_after == Some(0) {
        bail!("--stop-after must be at least 1");
    }
    let mode = match (args.resume, args.overwrite) {
        (true, _) => OpenMode::Resume,
        (false, true) => OpenMode::Overwrite,
        (false, false) => OpenMode::Fresh,
    };
    if mode == OpenMode::Fresh && afan_train::run_dir::RunDir::holds_run(&out) {
        // Said before the data is read; the engine checks again under the run's lock.
        afan_train::run_dir::RunDir::open(&out, mode)?;
    }
    let (devices, sync) = afan_train::parallel::parse_devices(&args.device)?;
    warn_on_afan_gradient_caveat(&args.device, config.common.method);
    let length = match (config.common.epochs, config.common.iterations) {
        (Some(e), _) => format!("{e} epochs"),
        (_, Some(i)) => format!("{i} iterations"),
        _ => String::new(),
    };
    let task = T::open(config, Purpose::Train)?;
    if !args.quiet {
        eprintln!(
            "training {} ({}) for {length} on {} -> {}",
            T::Section::KIND,
            task.config().common.method,
            args.device,
            out.display()
        );
        if devices.len() > 1 {
            eprintln!(
                "data-parallel over {} devices: {} images per device per step",
                devices.len(),
                task.config().common.batch_size / devices.len()
            );
        }
    }
    let opts = TrainOptions {
        out,
        mode,
        devices,
        sync,
        quiet: args.quiet,
        stop_after: args.stop_after,
    };
    let summary = afan_train::train(&task, &opts)?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("{}", describe(&summary));
    }
    Ok(())
}

/// A-FAN on a device whose gradients are known wrong for its step (afan_core::device) trains,
/// but not the method: said once at start, whatever `--quiet` says, so no result is reported from
/// it unknowingly.
fn warn_on_afan_gradient_caveat(devices: &str, method: Method) {
    if matches!(method, Method::Baseline | Method::PixelPgd) {
        return;
    }
    let caveat = devices
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .find_map(afan_core::device::afan_gradient_caveat);
    if let Some(caveat) = caveat {
        eprintln!("warning: --method {method} on --device {devices}: {caveat}");
    }
}

/// The summary in one line.
fn describe(s: &Summary) -> String {
    let figure = match (s.last, s.best, s.best_iteration) {
        (Some(last), Some(best), Some(at)) => {
            let test = s
                .best_record
                .as_ref()
                .and_then(|r| r.get("eval_test_top1")?.as_f64())
                .map_or(String::new(), |t| format!(", test top1 {t:.2} there"));
            format!(
                "final {} {last:.2} (best {best:.2} after iteration {at}{test})",
                s.headline
            )
        }
        _ => "no evaluation yet".to_string(),
    };
    let losses = match (s.first_loss, s.last_loss) {
        (Some(a), Some(b)) => format!("; training loss {a:.4} -> {b:.4}"),
        _ => String::new(),
    };
    let progress = if s.complete {
        format!("after {} iterations ({:.2} epochs)", s.iterations, s.epochs)
    } else {
        format!(
            "stopped after {} of {} iterations (continue with --resume)",
            s.iterations, s.total_iterations
        )
    };
    format!(
        "{figure} {progress}{losses}; run saved in {}",
        s.run_dir.display()
    )
}
