//! Image classification as a [`Task`]: CIFAR-10/100, ImageNet-layout folders or the generated
//! set; the CIFAR ResNets, torchvision's ResNets, EfficientNets and MobileNetV2; baseline, A-FAN,
//! its learnable multi-layer variant and pixel-level PGD.

pub mod config;
pub mod data;
pub mod evaluate;
pub mod infer;
mod learnable;
pub mod objective;
pub mod weights;

use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::task::{Evaluation, Measure, Purpose, StepContext, StepOutput, Task};
use crate::task_kind::Method;
use afan_core::SplitModel;
use afan_data::{Batch, LoaderConfig, num_batches, topk_correct};
use afan_models::{Classifier, ClassifierKind};
use burn::tensor::Device;
use config::ClassificationConfig;
use data::{ClassData, EvalSplit};
use objective::{Objective, training_loss};
use serde_json::json;

/// Batch size of evaluation passes.
const EVAL_BATCH: usize = 256;

/// A classification run's data and model description.
pub struct ClassificationTask {
    config: RunConfig<ClassificationConfig>,
    kind: ClassifierKind,
    num_classes: usize,
    class_names: Vec<String>,
    train: Option<ClassData>,
    eval: Option<(ClassData, EvalSplit)>,
    /// The test split evaluated beside a validation split.
    test: Option<ClassData>,
    loader: LoaderConfig,
}

impl ClassificationTask {
    /// The task for a model of `num_classes` classes without data (inference, export).
    pub fn without_data(
        config: RunConfig<ClassificationConfig>,
        num_classes: usize,
        class_names: Vec<String>,
    ) -> Result<Self> {
        let kind = config.task.model.parse()?;
        Ok(Self {
            loader: loader(&config),
            config,
            kind,
            num_classes,
            class_names,
            train: None,
            eval: None,
            test: None,
        })
    }

    /// The task training on images a program already holds (`config.task`'s dataset fields
    /// are not used): the way an application trains on its own data.
    pub fn with_data(
        config: RunConfig<ClassificationConfig>,
        train: afan_data::ImageDataset,
        eval: afan_data::ImageDataset,
    ) -> Result<Self> {
        train.validate()?;
        eval.validate()?;
        if train.num_classes != eval.num_classes {
            return Err(TrainError::Config(format!(
                "the training images have {} classes but the evaluation images {}",
                train.num_classes, eval.num_classes
            )));
        }
        let names = train.class_names.clone();
        let mut task = Self::without_data(config, train.num_classes, names)?;
        task.train = Some(ClassData::Memory(train));
        task.eval = Some((ClassData::Memory(eval), EvalSplit::Test));
        Ok(task)
    }

    /// The task evaluating `split` (`val` needs a run trained with `val_split`).
    pub fn for_evaluation(
        config: RunConfig<ClassificationConfig>,
        split: EvalSplit,
    ) -> Result<Self> {
        let eval = data::load_eval(&config, split)?;
        let mut task = Self::without_data(config, eval.num_classes(), eval.class_names())?;
        task.eval = Some((eval, split));
        Ok(task)
    }

    /// The architecture.
    pub fn kind(&self) -> ClassifierKind {
        self.kind
    }

    /// Classes the model predicts.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Their names, where the data gave them.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// The evaluation of `model` on the opened split with batches of `batch_size`; with
    /// `corruption`, on its corrupted copy.
    pub fn evaluate_with(
        &self,
        model: &Classifier,
        batch_size: usize,
        device: &Device,
        quiet: bool,
        corruption: Option<&afan_data::Corruption>,
    ) -> Result<Evaluation> {
        let Some((eval, split)) = &self.eval else {
            return Err(TrainError::Config("no evaluation data was opened".into()));
        };
        let name = format!("{split:?}").to_lowercase();
        let mut e = evaluate::accuracy(model, eval, batch_size, device, quiet, corruption)?
            .evaluation(&name);
        if let Some(test) = &self.test {
            let t = evaluate::accuracy(model, test, batch_size, device, quiet, corruption)?;
            e.figures
                .push(("test_top1".into(), crate::task::Value::Scalar(t.top1)));
            e.figures
                .push(("test_top5".into(), crate::task::Value::Scalar(t.top5)));
            e.report["test"] = serde_json::to_value(&t).unwrap_or_default();
            e.text = format!("{}; test top-1 {:.2}%", e.text, t.top1);
        }
        Ok(e)
    }
}

impl ClassificationTask {
    /// The step's top-1 accuracy on the logits `labels` go with.
    fn top1(&self, logits: burn::tensor::Tensor<2>, labels: &[i64]) -> Measure {
        let logits = crate::tensors::to_host(logits);
        let n = labels.len();
        let correct = topk_correct(&logits, self.num_classes, labels, 1);
        Measure {
            name: "top1",
            value: crate::task::Value::Scalar(100.0 * correct as f64 / n.max(1) as f64),
            weight: n as f64,
        }
    }
}

fn loader(config: &RunConfig<ClassificationConfig>) -> LoaderConfig {
    LoaderConfig {
        batch_size: config.common.batch_size,
        shuffle: true,
        augment: config.task.augment,
        drop_last: true,
        seed: config.common.seed,
    }
}

impl Task for ClassificationTask {
    type Section = ClassificationConfig;
    type Model = Classifier;
    type Batch = Batch;

    fn open(config: RunConfig<ClassificationConfig>, purpose: Purpose) -> Result<Self> {
        match purpose {
            Purpose::Infer => Err(TrainError::Config(
                "a classifier without data needs its class count: use ClassificationTask::without_data"
                    .into(),
            )),
            Purpose::Evaluate => {
                let split = if config.task.val_split > 0 {
                    EvalSplit::Val
                } else {
                    EvalSplit::Test
                };
                Self::for_evaluation(config, split)
            }
            Purpose::Train => {
                let splits = data::load_splits(&config)?;
                let mut task = Self::without_data(
                    config,
                    splits.train.num_classes(),
                    splits.train.class_names(),
                )?;
                if splits.train.len() < task.loader.batch_size {
                    return Err(TrainError::Config(format!(
                        "the training split has {} images, fewer than one batch of {}",
                        splits.train.len(),
                        task.loader.batch_size
                    )));
                }
                task.train = Some(splits.train);
                task.eval = Some((splits.eval, splits.eval_split));
                task.test = splits.test;
                Ok(task)
            }
        }
    }

    fn config(&self) -> &RunConfig<ClassificationConfig> {
        &self.config
    }

    fn model_info(&self) -> serde_json::Value {
        json!({
            "model": self.kind.to_string(),
            "num_classes": self.num_classes,
            "class_names": self.class_names,
        })
    }

    fn build_model(&self, device: &Device, initial_weights: bool) -> Result<Classifier> {
        let model = self.kind.build(self.num_classes, device);
        match self.config.common.method {
            Method::Afan => {
                model.split_point(&self.config.task.afan.split)?;
            }
            Method::AfanLearnable => {
                learnable::points(&model, &self.config.task.learnable)?;
            }
            Method::Baseline | Method::PixelPgd => {}
        }
        let Some(path) = self
            .config
            .common
            .weights
            .as_ref()
            .filter(|_| initial_weights)
        else {
            return Ok(model);
        };
        let strict = self.config.common.strict_weights;
        let (model, note) =
            weights::WeightsFile::read(path)?.apply(model, self.kind, path, strict)?;
        eprintln!("initial weights from {}", path.display());
        if let Some(note) = note {
            eprintln!("warning: {note}");
        }
        Ok(model)
    }

    fn headline(&self) -> &'static str {
        "top1"
    }

    fn steps_per_epoch(&self) -> usize {
        self.train
            .as_ref()
            .map_or(0, |t| num_batches(t.len(), &self.loader))
    }

    fn epoch_batches(
        &self,
        epoch: usize,
        start: usize,
    ) -> Box<dyn Iterator<Item = Result<Batch>> + '_> {
        match &self.train {
            Some(t) => t.batches(&self.loader, epoch, start),
            None => Box::new(std::iter::empty()),
        }
    }

    fn shard(&self, batch: Batch, parts: usize) -> Result<Vec<Batch>> {
        let per_image = batch.channels * batch.height * batch.width;
        Ok(crate::parallel::shard_ranges(batch.batch_size, parts)?
            .into_iter()
            .map(|r| Batch {
                images: batch.images[r.start * per_image..r.end * per_image].to_vec(),
                labels: batch.labels[r.clone()].to_vec(),
                indices: batch.indices[r.clone()].to_vec(),
                batch_size: r.len(),
                ..batch
            })
            .collect())
    }

    fn step(&self, model: &Classifier, batch: Batch, ctx: &StepContext) -> Result<StepOutput> {
        let labels = batch.labels.clone();
        let (x, y) = data::to_tensors(batch, ctx.device);
        let x = ctx.input(x);
        let task = &self.config.task;
        if self.config.common.method == Method::AfanLearnable {
            let (loss, logits, mut measures) = learnable::loss(model, x, y, &task.learnable, ctx)?;
            measures.insert(0, self.top1(logits, &labels));
            return Ok(StepOutput { loss, measures });
        }
        let point;
        let objective = match self.config.common.method {
            Method::Afan => {
                point = model.split_point(&task.afan.split)?;
                Objective::Afan(&point, &task.afan)
            }
            Method::PixelPgd => Objective::PixelPgd(&task.pixel, task.afan.attack_bn),
            Method::Baseline | Method::AfanLearnable => Objective::Baseline,
        };
        let (loss, logits, report) = training_loss(model, x, y, &objective);
        let mut measures = vec![self.top1(logits, &labels)];
        if let Some(r) = report {
            let points: Vec<f64> = r
                .point_losses
                .into_iter()
                .map(|p| p.into_scalar::<f64>())
                .collect();
            measures.push(Measure::scalar("clean_loss", points[0]));
            measures.push(Measure::scalar("pgd_l2", r.pgd.mean_l2() as f64));
            measures.push(Measure::scalar("pgd_linf", r.pgd.mean_linf() as f64));
            measures.push(Measure::vector("point_losses", points));
        }
        Ok(StepOutput { loss, measures })
    }

    fn learnable(&self) -> Option<&afan_core::LearnableConfig> {
        (self.config.common.method == Method::AfanLearnable).then_some(&self.config.task.learnable)
    }

    fn evaluate(&self, model: &Classifier, device: &Device, quiet: bool) -> Result<Evaluation> {
        self.evaluate_with(model, EVAL_BATCH, device, quiet, None)
    }
}
