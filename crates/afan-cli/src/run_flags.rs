//! The flags of `afan train` that define a run, for every task: each is a shorthand for one
//! configuration field (`--lr` is `optim.lr`; `--split` is `afan.split` for a classifier,
//! `afan.backbone.split` for a detector or a DeepLab), applied before `--set`; a flag that has
//! no meaning for the task (or, once the configuration is resolved, for its method:
//! [`RunFlags::check_method`]) is refused by name.

use crate::task_arg::class_list;
use afan_train::config::Overrides;
use afan_train::{Method, TaskKind};
use anyhow::{Result, bail};
use std::path::PathBuf;

/// What a run trains on and how.
#[derive(clap::Args, Debug, Default)]
pub struct RunFlags {
    /// Dataset folder or archive: CIFAR's binary version (folder or .tar.gz), an ImageFolder root
    /// (train/CLASS/*.JPEG, val/CLASS/*.JPEG), a VOCdevkit or COCO folder (detection), the folder
    /// holding VOCdevkit or Cityscapes' leftImg8bit and gtFine (segmentation).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Dataset: synthetic, cifar10, cifar100, imagefolder (classification); synthetic, voc, coco
    /// (detection); synthetic, voc, cityscapes (segmentation).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Model: resnet20..resnet110, resnet18..resnet152, efficientnet_b0..b7, mobilenet_v2
    /// (classification); the backbone: resnet18/50/101 (detection), resnet50/101 or mobilenet_v2
    /// (segmentation).
    #[arg(long)]
    pub model: Option<String>,
    /// baseline, afan or (classification) pixel_pgd or afan_learnable (the release's learnable
    /// multi-layer variant).
    #[arg(long)]
    pub method: Option<String>,
    /// The run's length in epochs (replaces the configuration's length).
    #[arg(long, conflicts_with = "iterations")]
    pub epochs: Option<usize>,
    /// The run's length in iterations (replaces the configuration's length).
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Images per iteration (over all devices).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Base learning rate (`optim.lr`).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed of initialisation, order, augmentation and sampling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// The A-FAN split point (layer1, layer2.3, features.6, ...).
    #[arg(long)]
    pub split: Option<String>,
    /// PGD steps of the A-FAN attack (at the backbone point; at every point of afan_learnable).
    #[arg(long)]
    pub pgd_steps: Option<usize>,
    /// The points of method afan_learnable, comma-separated (`learnable.splits`), e.g.
    /// stem,layer1.1,layer2.2.
    #[arg(long, value_delimiter = ',')]
    pub splits: Option<Vec<String>>,
    /// How afan_learnable keeps its point weights feasible (`learnable.projection`): plane
    /// (the release: sum 1) or simplex (sum 1 and non-negative).
    #[arg(long)]
    pub projection: Option<String>,
    /// Initial weights: an afan checkpoint, or a PyTorch/safetensors state dict (a classifier,
    /// or the ImageNet backbone of a detector or a DeepLab).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Refuse initial weights that do not load completely.
    #[arg(long)]
    pub strict: bool,
    /// Training arithmetic: f32, f16 or bf16 (mixed precision).
    #[arg(long)]
    pub precision: Option<String>,
    /// The classes of VOC-layout data (detection: the object classes; segmentation: the labels,
    /// background first): a file with one name per line, or a,b,c.
    #[arg(long)]
    pub classes: Option<String>,
    /// Any other field: `--set optim.weight_decay=1e-4` (repeatable; applied last).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl RunFlags {
    /// Whether the run is the quick start: no configuration, data or dataset named.
    pub fn names_no_data(&self) -> bool {
        self.data.is_none() && self.dataset.is_none()
    }

    /// The flags given that change what a run trains (all but its length), for `--resume`'s
    /// refusal.
    pub fn given(&self) -> Vec<&'static str> {
        [
            ("--data", self.data.is_some()),
            ("--dataset", self.dataset.is_some()),
            ("--model", self.model.is_some()),
            ("--method", self.method.is_some()),
            ("--batch-size", self.batch_size.is_some()),
            ("--lr", self.lr.is_some()),
            ("--seed", self.seed.is_some()),
            ("--split", self.split.is_some()),
            ("--pgd-steps", self.pgd_steps.is_some()),
            ("--splits", self.splits.is_some()),
            ("--projection", self.projection.is_some()),
            ("--weights", self.weights.is_some()),
            ("--strict", self.strict),
            ("--precision", self.precision.is_some()),
            ("--classes", self.classes.is_some()),
            ("--set", !self.set.is_empty()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }

    /// The first afan_learnable flag given.
    fn learnable_flag(&self) -> Option<&'static str> {
        [
            ("--splits", self.splits.is_some()),
            ("--projection", self.projection.is_some()),
        ]
        .into_iter()
        .find_map(|(name, given)| given.then_some(name))
    }

    /// Refuses the flags that the resolved configuration's `method` does not use: `--splits` and
    /// `--projection` outside afan_learnable, `--split` (one point) in it.
    pub fn check_method(&self, method: Method) -> Result<()> {
        match (method, self.learnable_flag()) {
            (Method::AfanLearnable, _) if self.split.is_some() => bail!(
                "--split sets the one point of method afan; method afan_learnable perturbs \
                 several: use --splits a,b,c"
            ),
            (Method::AfanLearnable, _) | (_, None) => Ok(()),
            (other, Some(flag)) => bail!(
                "{flag} applies to --method afan_learnable only; this run's method is {other}"
            ),
        }
    }

    /// `epochs=N` or `iterations=N`, if given.
    pub fn length(&self) -> Vec<String> {
        let mut o = Overrides::default();
        if let Some(e) = self.epochs {
            o = o.raw("epochs", &e.to_string());
        }
        if let Some(i) = self.iterations {
            o = o.raw("iterations", &i.to_string());
        }
        o.finish(&[])
    }

    /// Every flag as a configuration assignment for `task`, `--set` last.
    pub fn overrides(&self, task: TaskKind) -> Result<Vec<String>> {
        let afan = match task {
            TaskKind::Classification => "afan",
            _ => "afan.backbone",
        };
        let mut o = Overrides::default();
        let text = |o: Overrides, key: &str, v: &Option<String>| match v {
            Some(v) => o.text(key, v),
            None => o,
        };
        o = text(o, "dataset", &self.dataset);
        o = text(o, "method", &self.method);
        o = text(o, &format!("{afan}.split"), &self.split);
        o = text(o, "precision", &self.precision);
        if let Some(d) = &self.data {
            o = o.text("data", &d.display().to_string());
        }
        if let Some(w) = &self.weights {
            o = o.text("weights", &w.display().to_string());
        }
        if let Some(m) = &self.model {
            o = match task {
                TaskKind::Classification => o.text("model", m),
                TaskKind::Detection => o.text("detector.backbone", m),
                TaskKind::Segmentation if m.eq_ignore_ascii_case("mobilenet_v2") => {
                    o.raw("model.backbone", "{mobilenet_v2 = {width_mult = 1.0}}")
                }
                TaskKind::Segmentation => o.text("model.backbone", m),
            };
        }
        if task == TaskKind::Classification {
            o = text(o, "learnable.projection", &self.projection);
            if let Some(splits) = &self.splits {
                let list =
                    toml::Value::Array(splits.iter().cloned().map(toml::Value::String).collect());
                o = o.raw("learnable.splits", &list.to_string());
            }
            if let Some(steps) = self.pgd_steps {
                o = o.raw("learnable.pgd.steps", &steps.to_string());
            }
        } else if let Some(flag) = self.learnable_flag() {
            bail!(
                "{flag} belongs to --method afan_learnable, which trains classification only, \
                 not --task {task}"
            );
        }
        let pgd_steps = format!("{afan}.pgd.steps");
        for (key, v) in [
            ("batch_size", self.batch_size.map(|v| v.to_string())),
            ("optim.lr", self.lr.map(|v| format!("{v:?}"))),
            ("seed", self.seed.map(|v| v.to_string())),
            (pgd_steps.as_str(), self.pgd_steps.map(|v| v.to_string())),
        ] {
            if let Some(v) = v {
                o = o.raw(key, &v);
            }
        }
        if self.strict {
            o = o.raw("strict_weights", "true");
        }
        if let Some(c) = &self.classes {
            if task == TaskKind::Classification {
                bail!(
                    "--classes does not apply to --task classification (a classifier's classes \
                     come from its dataset)"
                );
            }
            let names = class_list(c)?;
            let list = toml::Value::Array(names.into_iter().map(toml::Value::String).collect());
            o = o.raw("classes", &list.to_string());
        }
        let mut all = o.finish(&[]);
        all.extend(self.length());
        all.extend(self.set.iter().cloned());
        Ok(all)
    }
}
