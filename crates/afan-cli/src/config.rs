//! The training configuration: one TOML file, every field overridable from the command line.
//!
//! Overrides are applied to the TOML tree *before* it is parsed, so a flag and a file field go
//! through the same validation, and a misspelt field — in the file or in `--set` — is rejected by
//! name instead of being silently ignored.

use afan_core::{AfanConfig, PixelPgdConfig};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Baseline training or A-FAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Clean cross-entropy only.
    Baseline,
    /// Clean loss plus the augmented points' losses.
    Afan,
    /// Pixel-level PGD adversarial training (Madry et al.), the cost A-FAN is compared with.
    PixelPgd,
}

/// Stochastic gradient descent, with PyTorch's semantics made explicit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Base learning rate (release: 0.1).
    pub lr: f64,
    /// Momentum (release: 0.9).
    pub momentum: f64,
    /// Momentum dampening. PyTorch's default is 0; Burn's is 0.1, so it is set here explicitly.
    pub dampening: f64,
    /// L2 weight decay added to the gradient, as `torch.optim.SGD(weight_decay=...)` (release: 5e-4).
    pub weight_decay: f64,
    /// Nesterov momentum (release: off).
    pub nesterov: bool,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 5e-4,
            nesterov: false,
        }
    }
}

/// Step schedule with linear warm-up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Epochs after which the rate is multiplied by `gamma` (release: 50 and 150 of 200).
    pub milestones: Vec<usize>,
    /// Decay factor at each milestone (release: 0.1).
    pub gamma: f64,
    /// Epochs of linear warm-up from `lr / warmup_start_div` (release: 1 epoch).
    pub warmup_epochs: usize,
    /// The warm-up starts at `lr / warmup_start_div`.
    pub warmup_start_div: f64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            milestones: vec![50, 150],
            gamma: 0.1,
            warmup_epochs: 1,
            warmup_start_div: 10.0,
        }
    }
}

/// Size of the embedded generated dataset used when no data is given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Training images.
    pub train: usize,
    /// Test images.
    pub test: usize,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            train: 4096,
            test: 1024,
        }
    }
}

/// Everything a training run needs. `Default` is the release's CIFAR-10 A-FAN setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Model name (`resnet20`, `resnet56`, ...).
    pub model: String,
    /// `synthetic` (embedded, generated), `cifar10` or `cifar100`.
    pub dataset: String,
    /// Dataset folder or archive; required for CIFAR.
    pub data: Option<PathBuf>,
    /// Hold out this many training images for validation (release option: 5000); 0 evaluates on
    /// the test split.
    pub val_split: usize,
    /// Training epochs (release: 200).
    pub epochs: usize,
    /// Mini-batch size (release: 128).
    pub batch_size: usize,
    /// `baseline` or `afan`.
    pub method: Method,
    /// Random crop with 4-pixel padding and horizontal flip (release: on).
    pub augment: bool,
    /// Seed of initialisation, shuffling, augmentation and random starts.
    pub seed: u64,
    /// The optimizer.
    pub optim: OptimConfig,
    /// The learning-rate schedule.
    pub schedule: ScheduleConfig,
    /// The A-FAN setting, used when `method = "afan"`.
    pub afan: AfanConfig,
    /// Size of the generated dataset.
    pub synthetic: SyntheticConfig,
    /// Crop sizes of an ImageFolder dataset (ImageNet: 224 crops, validation resize 256).
    pub folder: afan_data::FolderTransform,
    /// The input-space attack, used when `method = "pixel_pgd"` (trains on the attacked images).
    pub pixel: PixelPgdConfig,
    /// Initial weights (an afan checkpoint, or a PyTorch `.pth`/safetensors state dict), loaded
    /// before the first epoch; none: random initialisation.
    pub weights: Option<PathBuf>,
    /// Refuse initial weights that do not fit completely. Off by default, so a pretrained
    /// backbone can meet a classifier for another class count (what does not load is reported).
    pub strict_weights: bool,
    /// Arithmetic of the training passes: `f32` (the release), or `f16` / `bf16` mixed precision
    /// (f32 master weights, half-precision passes; f16 with dynamic loss scaling).
    pub precision: crate::precision::Precision,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model: "resnet56".into(),
            dataset: "cifar10".into(),
            data: None,
            val_split: 0,
            epochs: 200,
            batch_size: 128,
            method: Method::Afan,
            augment: true,
            seed: 0,
            optim: OptimConfig::default(),
            schedule: ScheduleConfig::default(),
            afan: AfanConfig::default(),
            synthetic: SyntheticConfig::default(),
            folder: afan_data::FolderTransform::default(),
            pixel: PixelPgdConfig::default(),
            weights: None,
            strict_weights: false,
            precision: crate::precision::Precision::F32,
        }
    }
}

impl TrainConfig {
    /// What `afan train` runs with no arguments: A-FAN on the embedded generated dataset with a
    /// ResNet-20, short enough to finish in minutes on a laptop CPU.
    pub fn quickstart() -> Self {
        let mut c = Self {
            model: "resnet20".into(),
            dataset: "synthetic".into(),
            epochs: 4,
            batch_size: 64,
            ..Self::default()
        };
        c.optim.lr = 0.05;
        c.schedule.milestones = vec![3];
        c.afan.pgd.steps = 3;
        c
    }

    /// Reads a TOML file (or starts from `base` when `path` is `None`), applies `key=value`
    /// overrides, and validates.
    pub fn load(path: Option<&Path>, base: TrainConfig, overrides: &[String]) -> Result<Self> {
        let config: TrainConfig = load_toml(path, &base, overrides, "configuration")?;
        config.validate()?;
        Ok(config)
    }

    /// Rejects values that would fail later, naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            bail!("batch_size must be at least 1");
        }
        if !(self.optim.lr.is_finite() && self.optim.lr > 0.0) {
            bail!("optim.lr = {} must be a positive number", self.optim.lr);
        }
        self.model.parse::<afan_models::ClassifierKind>()?;
        crate::data::DatasetName::parse(&self.dataset)?;
        if self.method == Method::Afan {
            self.afan.validate().context("invalid [afan] section")?;
        }
        Ok(())
    }

    /// The configuration as TOML, as written to a run directory.
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string_pretty(self)?)
    }
}

/// `key=value` overrides from named command-line flags, which are shorthands for `--set`: each
/// flag that was given becomes one assignment, strings and paths quoted as TOML strings.
#[derive(Default)]
pub struct Overrides(Vec<String>);

impl Overrides {
    /// `key = "v"` if given.
    pub fn text(mut self, key: &str, v: Option<&str>) -> Self {
        if let Some(v) = v {
            self.0.push(format!("{key}={v:?}"));
        }
        self
    }

    /// `key = "path"` if given.
    pub fn path(self, key: &str, v: Option<&Path>) -> Self {
        let v = v.map(|p| p.display().to_string());
        self.text(key, v.as_deref())
    }

    /// `key = v` (a number or boolean, written as Rust's `Debug` prints it) if given.
    pub fn value<T: std::fmt::Debug>(mut self, key: &str, v: Option<T>) -> Self {
        if let Some(v) = v {
            self.0.push(format!("{key}={v:?}"));
        }
        self
    }

    /// The assignments, followed by the raw `--set` ones (which therefore win).
    pub fn finish(mut self, set: &[String]) -> Vec<String> {
        self.0.extend(set.iter().cloned());
        self.0
    }
}

/// The configuration loading every task shares: `base` as a TOML tree, the file's fields merged
/// over it (fields it leaves out keep the base's values), then the `key=value` overrides, then
/// parsed into `T` — so a flag and a file field go through the same validation, and a misspelt
/// field is named. `what` names the configuration in the one-line error.
pub fn load_toml<T>(path: Option<&Path>, base: &T, overrides: &[String], what: &str) -> Result<T>
where
    T: Serialize + serde::de::DeserializeOwned,
{
    let mut tree = toml::Table::try_from(base)?;
    if let Some(p) = path {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("cannot read config file {}", p.display()))?;
        let file: toml::Table = toml::from_str(&text)
            .with_context(|| format!("config file {} is not valid TOML", p.display()))?;
        merge(&mut tree, file);
    }
    for o in overrides {
        apply_override(&mut tree, o)?;
    }
    let source = path.map_or("the command line".into(), |p| p.display().to_string());
    // toml's messages span lines (`...\nin `optim``); one line reads better after `error:`.
    toml::Value::Table(tree)
        .try_into()
        .map_err(|e: toml::de::Error| {
            let msg = e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            anyhow::anyhow!("invalid {what} (from {source}): {msg}")
        })
}

pub(crate) fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Applies `a.b.c=value`; the value is read as a TOML literal (`0.05`, `true`, `[50, 150]`,
/// `"text"`) and, failing that, as a bare string.
pub fn apply_override(tree: &mut toml::Table, assignment: &str) -> Result<()> {
    let (key, raw) = assignment.split_once('=').with_context(|| {
        format!("override `{assignment}` must look like key=value (e.g. optim.lr=0.05)")
    })?;
    let key = key.trim();
    let value = parse_value(raw.trim());
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut table = tree;
    for part in parts {
        table = match table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()))
        {
            toml::Value::Table(t) => t,
            _ => bail!("override `{assignment}`: `{part}` is not a section"),
        };
    }
    table.insert(last.to_string(), value);
    Ok(())
}

fn parse_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    toml::from_str::<toml::Table>(&doc)
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_release_recipe() {
        let c = TrainConfig::default();
        assert_eq!((c.epochs, c.batch_size), (200, 128));
        assert_eq!(
            (
                c.optim.lr,
                c.optim.momentum,
                c.optim.weight_decay,
                c.optim.dampening
            ),
            (0.1, 0.9, 5e-4, 0.0)
        );
        assert_eq!(c.schedule.milestones, vec![50, 150]);
        assert_eq!(c.schedule.warmup_epochs, 1);
    }

    #[test]
    fn overrides_reach_nested_fields_and_typos_are_named() {
        let c = TrainConfig::load(
            None,
            TrainConfig::quickstart(),
            &[
                "optim.lr=0.01".into(),
                "afan.pgd.steps=2".into(),
                "schedule.milestones=[1, 2]".into(),
                "model=resnet32".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.optim.lr, 0.01);
        assert_eq!(c.afan.pgd.steps, 2);
        assert_eq!(c.schedule.milestones, vec![1, 2]);
        assert_eq!(c.model, "resnet32");
        let e = TrainConfig::load(None, TrainConfig::quickstart(), &["optim.lrr=0.01".into()])
            .unwrap_err();
        assert!(format!("{e:#}").contains("lrr"), "{e:#}");
        let e = TrainConfig::load(None, TrainConfig::quickstart(), &["model=resnet21".into()])
            .unwrap_err();
        assert!(format!("{e:#}").contains("resnet21"), "{e:#}");
    }

    #[test]
    fn files_merge_over_the_base_and_unknown_fields_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "epochs = 7\n[optim]\nlr = 0.2\n").unwrap();
        let c = TrainConfig::load(Some(&p), TrainConfig::default(), &[]).unwrap();
        assert_eq!((c.epochs, c.optim.lr, c.optim.momentum), (7, 0.2, 0.9));
        std::fs::write(&p, "epochs = 7\n[afan]\nstrenghts = 3\n").unwrap();
        let e = TrainConfig::load(Some(&p), TrainConfig::default(), &[]).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("strenghts") && msg.contains("c.toml"), "{msg}");
    }
}
