//! One configuration spelling for every task: the engine's fields (length, batch, optimizer,
//! schedule, cadences, precision, initial weights) and the task's own section side by side at
//! the top level of one TOML file, each parsed strictly (an unknown field is named).
//!
//! ```toml
//! task = "detection"
//! method = "afan"
//! iterations = 8750
//! batch_size = 8
//! eval_every = 2500
//! checkpoint_every = 500
//! [optim]
//! lr = 0.008
//! [schedule]
//! unit = "iterations"
//! milestones = [6250]
//! [detector]          # the task's section from here on
//! backbone = "resnet50"
//! ```

mod cadence;
pub mod tree;

pub use cadence::Cadence;
pub use tree::Overrides;

use crate::error::{Result, TrainError};
use crate::optim::OptimConfig;
use crate::precision::Precision;
use crate::schedule::ScheduleConfig;
use crate::task_kind::{Method, TaskKind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The engine's part of a run's configuration, the same fields for every task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommonConfig {
    /// The task (recorded so a configuration or a run directory says what it trains).
    pub task: TaskKind,
    /// `baseline`, `afan` or (classification) `pixel_pgd`.
    pub method: Method,
    /// Seed of initialisation, data order, augmentation, samplers and random starts.
    pub seed: u64,
    /// Images per iteration: the global batch, split evenly over the devices of a data-parallel
    /// run.
    pub batch_size: usize,
    /// The run's length in epochs (exactly one of `epochs` and `iterations` is set).
    pub epochs: Option<usize>,
    /// The run's length in iterations.
    pub iterations: Option<usize>,
    /// Evaluate (and save `best.ckpt` when the headline improves) this often and at the end.
    pub eval_every: Cadence,
    /// Save `last.ckpt` this often (and at every evaluation and at the end).
    pub checkpoint_every: Cadence,
    /// The optimizer.
    pub optim: OptimConfig,
    /// The learning-rate schedule.
    pub schedule: ScheduleConfig,
    /// Arithmetic of the training passes: `f32` (the release), or `f16` / `bf16` mixed precision.
    pub precision: Precision,
    /// Initial weights: an afan checkpoint, or a PyTorch `.pth`/safetensors state dict (a whole
    /// classifier; the backbone of a detector or a DeepLab).
    pub weights: Option<PathBuf>,
    /// Refuse initial weights that do not fit completely. Off by default, so a pretrained
    /// backbone can meet a head for another class count (what does not load is reported).
    pub strict_weights: bool,
}

impl Default for CommonConfig {
    /// The classification release's settings (CIFAR-10, 128 images a step), without a length:
    /// a field left out of a table parses to its default, and a default length would then
    /// contradict the other length field (every preset sets its own).
    fn default() -> Self {
        Self {
            task: TaskKind::Classification,
            method: Method::Afan,
            seed: 0,
            batch_size: 128,
            epochs: None,
            iterations: None,
            eval_every: Cadence::Epochs(1),
            checkpoint_every: Cadence::Epochs(1),
            optim: OptimConfig::default(),
            schedule: ScheduleConfig::default(),
            precision: Precision::F32,
            weights: None,
            strict_weights: false,
        }
    }
}

/// Size of a generated dataset (`synthetic`), for the tasks that draw theirs at one size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticSize {
    /// Training images.
    pub train: usize,
    /// Test images.
    pub test: usize,
}

impl Default for SyntheticSize {
    fn default() -> Self {
        Self {
            train: 512,
            test: 128,
        }
    }
}

/// The top-level keys of [`CommonConfig`]: everything else at the top level is the task's.
pub const COMMON_KEYS: [&str; 13] = [
    "task",
    "method",
    "seed",
    "batch_size",
    "epochs",
    "iterations",
    "eval_every",
    "checkpoint_every",
    "optim",
    "schedule",
    "precision",
    "weights",
    "strict_weights",
];

impl CommonConfig {
    /// Rejects values that would fail later, naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(TrainError::Config("batch_size must be at least 1".into()));
        }
        match (self.epochs, self.iterations) {
            (Some(_), Some(_)) => {
                return Err(TrainError::Config(
                    "set the run's length as epochs or as iterations, not both".into(),
                ));
            }
            (None, None) => {
                return Err(TrainError::Config(
                    "the run needs a length: epochs or iterations".into(),
                ));
            }
            (Some(0), _) => return Err(TrainError::Config("epochs must be at least 1".into())),
            (_, Some(0)) => {
                return Err(TrainError::Config("iterations must be at least 1".into()));
            }
            _ => {}
        }
        self.optim.validate()?;
        self.schedule.validate()
    }

    /// The run's length in iterations, given the iterations of an epoch.
    pub fn total_iterations(&self, steps_per_epoch: usize) -> usize {
        match (self.epochs, self.iterations) {
            (_, Some(n)) => n,
            (Some(e), None) => e * steps_per_epoch,
            (None, None) => 0,
        }
    }
}

/// A task's section of the configuration.
pub trait TaskSection:
    Serialize + serde::de::DeserializeOwned + Clone + std::fmt::Debug + PartialEq + Send + Sync
{
    /// The task it configures.
    const KIND: TaskKind;

    /// Rejects values that would fail later, naming the field; `common` is the rest of the run.
    fn validate(&self, common: &CommonConfig) -> Result<()>;
}

/// A whole run's configuration: the engine's fields and task `T`'s section.
#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig<T> {
    /// The engine's fields.
    pub common: CommonConfig,
    /// The task's section.
    pub task: T,
}

impl<T: TaskSection> RunConfig<T> {
    /// The configuration as one TOML table (the task's keys beside the engine's).
    pub fn to_table(&self) -> Result<toml::Table> {
        let mut table = toml::Table::try_from(&self.common)?;
        for (k, v) in toml::Table::try_from(&self.task)? {
            debug_assert!(!COMMON_KEYS.contains(&k.as_str()), "{k} is the engine's");
            table.insert(k, v);
        }
        Ok(table)
    }

    /// The configuration as TOML text, as written to a run directory and a checkpoint.
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(&self.to_table()?)?)
    }

    /// Parses a table over `base` (fields it leaves out keep the base's values); `source` names
    /// where it came from in errors.
    pub fn from_table(base: &Self, table: toml::Table, source: &str) -> Result<Self> {
        Self::load_tables(base, Some(table), &[], source)
    }

    /// `base` (the task's preset), the file at `path` merged over it, then the `key=value`
    /// overrides (named flags first, `--set` last), parsed and validated.
    pub fn load(base: &Self, path: Option<&Path>, overrides: &[String]) -> Result<Self> {
        let file = path.map(tree::read_table).transpose()?;
        let source = path.map_or("the command line".into(), |p| p.display().to_string());
        Self::load_tables(base, file, overrides, &source)
    }

    fn load_tables(
        base: &Self,
        file: Option<toml::Table>,
        overrides: &[String],
        source: &str,
    ) -> Result<Self> {
        let mut table = base.to_table()?;
        if let Some(file) = file {
            tree::merge(&mut table, file);
        }
        for o in overrides {
            tree::apply_override(&mut table, o)?;
        }
        let (mut common_table, mut task_table) = (toml::Table::new(), toml::Table::new());
        for (k, v) in table {
            if COMMON_KEYS.contains(&k.as_str()) {
                common_table.insert(k, v);
            } else {
                task_table.insert(k, v);
            }
        }
        let what = format!("{} configuration", T::KIND);
        let common: CommonConfig = tree::parse(common_table, &what, source)?;
        if common.task != T::KIND {
            return Err(TrainError::Config(format!(
                "{source} configures task = \"{}\", not {}; pass --task {}",
                common.task,
                T::KIND,
                common.task
            )));
        }
        let task: T = tree::parse(task_table, &what, source)?;
        common.validate()?;
        task.validate(&common)?;
        Ok(Self { common, task })
    }
}

/// The `task` a configuration file names, if it names one (so the command line can pick the
/// task from `--config` alone).
pub fn task_of_file(path: &Path) -> Result<Option<TaskKind>> {
    let table = tree::read_table(path)?;
    match table.get("task") {
        None => Ok(None),
        Some(v) => {
            let name = v.as_str().unwrap_or_default();
            name.parse::<TaskKind>().map(Some).map_err(|e| {
                TrainError::Config(format!("config file {}: task: {e}", path.display()))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{classification, detection, segmentation};

    /// A preset written to TOML and read back over its task's release preset is itself: no
    /// field that is unset in one and set in the other vanishes on the way.
    fn round_trip<T: TaskSection>(preset: RunConfig<T>, release: &RunConfig<T>) {
        let text = preset.to_toml().unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        let back = RunConfig::from_table(release, table, "test").unwrap();
        assert_eq!(back, preset, "{text}");
    }

    #[test]
    fn every_preset_survives_its_written_configuration() {
        let c = classification::config::release();
        round_trip(classification::config::quickstart(), &c);
        round_trip(c.clone(), &c);
        let d = detection::config::release();
        for mut p in [
            detection::config::quickstart(),
            detection::config::coco(),
            d.clone(),
        ] {
            if p.task.dataset != detection::config::DetectionDataset::Synthetic {
                p.task.data = Some("VOCdevkit".into());
            }
            round_trip(p, &d);
        }
        let s = segmentation::config::release();
        round_trip(segmentation::config::quickstart(), &s);
        let mut voc = s.clone();
        voc.task.data = Some("VOC".into());
        round_trip(voc, &s);
    }

    #[test]
    fn the_engines_keys_are_its_fields_and_tasks_cannot_take_them() {
        let mut full = CommonConfig {
            epochs: Some(1),
            iterations: Some(1),
            weights: Some("w".into()),
            ..CommonConfig::default()
        };
        full.optim.lr = 0.5;
        let keys: Vec<String> = toml::Table::try_from(&full)
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let mut want: Vec<String> = COMMON_KEYS.iter().map(|k| k.to_string()).collect();
        want.sort();
        assert_eq!(keys, want);
        for t in [
            toml::Table::try_from(&classification::config::release().task).unwrap(),
            toml::Table::try_from(&detection::config::release().task).unwrap(),
            toml::Table::try_from(&segmentation::config::release().task).unwrap(),
        ] {
            assert!(
                t.keys().all(|k| !COMMON_KEYS.contains(&k.as_str())),
                "{t:?}"
            );
        }
    }

    #[test]
    fn a_file_of_another_task_and_a_misspelt_field_are_named() {
        let c = classification::config::release();
        let e = RunConfig::from_table(
            &c,
            toml::from_str("task = \"detection\"").unwrap(),
            "f.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("f.toml") && e.contains("--task detection"),
            "{e}"
        );
        let e = RunConfig::load(&c, None, &["afan.strenghts=3".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("strenghts"), "{e}");
        let e = RunConfig::load(&c, None, &["epochs=0".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("epochs must be at least 1"), "{e}");
    }
}
