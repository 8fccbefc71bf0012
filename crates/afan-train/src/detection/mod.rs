//! Object detection as a [`Task`]: Faster R-CNN C4 (ResNet-18/50/101) on Pascal VOC (or any
//! VOC-layout folder with its own classes), COCO, or the generated `shapes-det` set; baseline
//! or A-FAN (afan-models' detection objective: a backbone point and the RoI point).

pub mod config;
pub mod data;
pub mod evaluate;
pub mod infer;
pub mod model;
pub mod objective;

use crate::checkpoint::{Checkpoint, is_archive};
use crate::config::RunConfig;
use crate::error::Result;
use crate::task::{Evaluation, Measure, Purpose, StepContext, StepOutput, Task};
use crate::task_kind::Method;
use afan_data::detection::batch::{DetectionBatch, aspect_grouped_batches, load_batch};
use afan_data::detection::{DetectionLoaderConfig, DetectionSource, SHAPES_DET_CLASSES};
use afan_models::FasterRcnn;
use burn::tensor::Device;
use config::{DetectionConfig, DetectionDataset};
use data::{Source, TestSet};
use serde_json::json;

/// A detection run's data and class names.
pub struct DetectionTask {
    config: RunConfig<DetectionConfig>,
    class_names: Vec<String>,
    train: Option<(Source, Vec<(usize, usize)>)>,
    test: Option<TestSet>,
    loader: DetectionLoaderConfig,
    per_epoch: usize,
}

impl DetectionTask {
    /// The task without data, for a detector of `class_names` (inference, export).
    pub fn without_data(mut config: RunConfig<DetectionConfig>, class_names: Vec<String>) -> Self {
        config.task.detector.num_classes = class_names.len();
        Self {
            loader: DetectionLoaderConfig {
                batch_size: config.common.batch_size,
                resize: config.task.resize,
                hflip: config.task.hflip,
                shuffle: true,
                size_divisibility: 16,
                seed: config.common.seed,
            },
            config,
            class_names,
            train: None,
            test: None,
            per_epoch: 0,
        }
    }

    /// The class names in label order.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// The evaluation set, if it was opened.
    pub fn test_set(&self) -> Option<&TestSet> {
        self.test.as_ref()
    }

    /// Whether the data is COCO (COCO AP is the headline).
    pub fn is_coco(&self) -> bool {
        self.config.task.dataset == DetectionDataset::Coco
    }

    /// The detections of `model` on the evaluation set with batches of `batch_size` (with
    /// `corruption`, on its corrupted copy), and their scores.
    pub fn detect_test_set(
        &self,
        model: &FasterRcnn,
        batch_size: usize,
        device: &Device,
        quiet: bool,
        corruption: Option<&afan_data::Corruption>,
    ) -> Result<(
        Vec<afan_data::detection::eval::Detection>,
        evaluate::DetEval,
    )> {
        // On a worker of rayon's pool, as the training step (afan_models::on_pool).
        afan_models::on_pool(|| {
            let Some(test) = &self.test else {
                return Err(crate::TrainError::Config(
                    "no evaluation data was opened".into(),
                ));
            };
            let loader = evaluate::eval_loader(&self.config.task, batch_size);
            let dets = evaluate::detect_all(model, test, &loader, device, quiet, corruption)?;
            let eval = evaluate::score(test, &dets)?;
            Ok((dets, eval))
        })
    }

    /// The training batches of epoch `epoch`: aspect-ratio grouped, full batches only (as
    /// Detectron's grouped sampler yields them), so every step has `batch_size` images.
    fn index_batches(&self, epoch: usize) -> Vec<Vec<usize>> {
        let Some((_, sizes)) = &self.train else {
            return Vec::new();
        };
        aspect_grouped_batches(sizes, &self.loader, epoch as u64)
            .into_iter()
            .filter(|b| b.len() == self.loader.batch_size)
            .collect()
    }
}

impl Task for DetectionTask {
    type Section = DetectionConfig;
    type Model = FasterRcnn;
    type Batch = DetectionBatch;

    fn open(config: RunConfig<DetectionConfig>, purpose: Purpose) -> Result<Self> {
        let seed = config.common.seed;
        let names = match (purpose, config.task.dataset) {
            (Purpose::Infer, DetectionDataset::Synthetic) => {
                SHAPES_DET_CLASSES.iter().map(|s| s.to_string()).collect()
            }
            (Purpose::Infer, _) => config
                .task
                .classes
                .clone()
                .unwrap_or_else(afan_data::detection::voc::voc_classes),
            _ => data::class_names(&config.task)?,
        };
        // Data first: bad input leaves no run directory behind.
        let train = match purpose {
            Purpose::Train => Some(data::train_set(&config.task, seed)?),
            _ => None,
        };
        let test = match purpose {
            Purpose::Infer => None,
            _ => Some(data::test_set(&config.task, seed)?),
        };
        let mut task = Self::without_data(config, names);
        task.test = test;
        if let Some(train) = train {
            let sizes = (0..train.len()).map(|i| train.size(i)).collect();
            task.train = Some((train, sizes));
            task.per_epoch = task.index_batches(0).len();
        }
        Ok(task)
    }

    fn config(&self) -> &RunConfig<DetectionConfig> {
        &self.config
    }

    fn model_info(&self) -> serde_json::Value {
        json!({ "class_names": self.class_names })
    }

    fn build_model(&self, device: &Device, initial_weights: bool) -> Result<FasterRcnn> {
        let common = &self.config.common;
        let weights = common.weights.as_deref().filter(|_| initial_weights);
        if let Some(path) = weights.filter(|p| is_archive(p)) {
            // A detection checkpoint: the whole detector, to fine-tune.
            let ckpt = Checkpoint::read(path)?;
            ckpt.expect_task(crate::TaskKind::Detection)?;
            let model = model::build(&self.config.task, None, false, device)?;
            eprintln!("initial weights from {}", path.display());
            return ckpt.load_model(model);
        }
        model::build(&self.config.task, weights, common.strict_weights, device)
    }

    fn headline(&self) -> &'static str {
        if self.is_coco() { "coco_ap" } else { "map07" }
    }

    fn steps_per_epoch(&self) -> usize {
        self.per_epoch
    }

    fn epoch_batches(
        &self,
        epoch: usize,
        start: usize,
    ) -> Box<dyn Iterator<Item = Result<DetectionBatch>> + '_> {
        let Some((source, _)) = &self.train else {
            return Box::new(std::iter::empty());
        };
        Box::new(
            self.index_batches(epoch)
                .into_iter()
                .skip(start)
                .map(move |idx| Ok(load_batch(source, &idx, &self.loader, epoch as u64)?)),
        )
    }

    fn shard(&self, b: DetectionBatch, parts: usize) -> Result<Vec<DetectionBatch>> {
        let per_image = 3 * b.height * b.width;
        Ok(crate::parallel::shard_ranges(b.image_sizes.len(), parts)?
            .into_iter()
            .map(|r| DetectionBatch {
                images: b.images[r.start * per_image..r.end * per_image].to_vec(),
                height: b.height,
                width: b.width,
                image_sizes: b.image_sizes[r.clone()].to_vec(),
                boxes: b.boxes[r.clone()].to_vec(),
                labels: b.labels[r.clone()].to_vec(),
                image_ids: b.image_ids[r.clone()].to_vec(),
                scales: b.scales[r].to_vec(),
            })
            .collect())
    }

    fn step(
        &self,
        model: &FasterRcnn,
        batch: DetectionBatch,
        ctx: &StepContext,
    ) -> Result<StepOutput> {
        let k = self.config.task.detector.num_classes;
        let input = model::input(&batch, k, ctx.device, |x| ctx.input(x))?;
        let afan = (self.config.common.method == Method::Afan).then_some(&self.config.task.afan);
        let step = objective::detection_loss(model, input, afan, ctx.seed)?;
        let mut measures = vec![Measure::vector(
            "loss_parts",
            step.parts.iter().map(|&p| p as f64).collect(),
        )];
        if let Some(p) = step.point_losses {
            measures.push(Measure::vector(
                "point_losses",
                p.into_iter().map(f64::from).collect(),
            ));
        }
        Ok(StepOutput {
            loss: step.loss,
            measures,
        })
    }

    fn evaluate(&self, model: &FasterRcnn, device: &Device, quiet: bool) -> Result<Evaluation> {
        let batch = self.config.common.batch_size;
        let (_, eval) = self.detect_test_set(model, batch, device, quiet, None)?;
        Ok(eval.evaluation(self.is_coco()))
    }
}
