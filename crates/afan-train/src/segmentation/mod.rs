//! Semantic segmentation as a [`Task`]: DeepLabV3+ (ResNet-50/101 or MobileNetV2 backbone) on
//! Pascal VOC (or any VOC-layout folder with its own classes), Cityscapes or the generated
//! `shapes-seg` set; baseline or A-FAN (a backbone point and a decoder point).

pub mod config;
pub mod data;
pub mod evaluate;
pub mod infer;
pub mod loss;

use crate::checkpoint::{Checkpoint, is_archive};
use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::task::{Evaluation, Measure, Purpose, StepContext, StepOutput, Task};
use crate::task_kind::Method;
use afan_core::{SplitModel, attack_copy, materialize};
use afan_data::segmentation::{SegBatch, SegDataset, load_batch};
use afan_models::{DeepLabV3Plus, StateDict, segmentation_afan_objective};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor};
use config::SegmentationConfig;
use data::{context, normalization, to_tensors};
use loss::seg_cross_entropy;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde_json::json;

/// A segmentation run's data.
pub struct SegmentationTask {
    config: RunConfig<SegmentationConfig>,
    class_names: Vec<String>,
    train: Option<SegDataset>,
    test: Option<SegDataset>,
}

impl SegmentationTask {
    /// The mean and deviation the network's input is normalized with.
    pub fn normalization(&self) -> ([f32; 3], [f32; 3]) {
        normalization(&self.config.task)
    }

    /// The class names in label order.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// The scores of `model` on the evaluation split with batches of `batch_size` (used with
    /// `val_crop`); with `corruption`, on its corrupted copy.
    pub fn evaluate_with(
        &self,
        model: &DeepLabV3Plus,
        batch_size: usize,
        device: &Device,
        quiet: bool,
        corruption: Option<&afan_data::Corruption>,
    ) -> Result<Evaluation> {
        let Some(test) = &self.test else {
            return Err(TrainError::Config("no evaluation data was opened".into()));
        };
        let crop = Some(self.config.task.val_crop).filter(|&c| c > 0);
        let norm = normalization(&self.config.task);
        let s = evaluate::scores(
            model, test, crop, norm, batch_size, device, quiet, corruption,
        )?;
        Ok(evaluate::evaluation(&s))
    }

    /// The evaluation split, if it was opened.
    pub fn test_set(&self) -> Option<&SegDataset> {
        self.test.as_ref()
    }

    /// The image indices of pass `epoch` over the training split: shuffled by the seed and the
    /// pass, every image once (cycled when the split is smaller than a batch), as the release's
    /// loader with `drop_last`.
    fn order(&self, epoch: usize) -> Vec<usize> {
        let (Some(train), b) = (&self.train, self.config.common.batch_size) else {
            return Vec::new();
        };
        let mut order: Vec<usize> = (0..train.len())
            .cycle()
            .take(self.steps_per_epoch() * b)
            .collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
            self.config.common.seed ^ ((epoch as u64) << 20),
        ));
        order
    }
}

impl Task for SegmentationTask {
    type Section = SegmentationConfig;
    type Model = DeepLabV3Plus;
    type Batch = SegBatch;

    fn open(mut config: RunConfig<SegmentationConfig>, purpose: Purpose) -> Result<Self> {
        let class_names = data::class_names(&config.task);
        config.task.model.num_classes = class_names.len();
        let seed = config.common.seed;
        let train = match purpose {
            Purpose::Train => Some(data::open_split(&config.task, seed, true)?),
            _ => None,
        };
        let test = match purpose {
            Purpose::Infer => None,
            _ => Some(data::open_split(&config.task, seed, false)?),
        };
        Ok(Self {
            config,
            class_names,
            train,
            test,
        })
    }

    fn config(&self) -> &RunConfig<SegmentationConfig> {
        &self.config
    }

    fn model_info(&self) -> serde_json::Value {
        json!({ "class_names": self.class_names })
    }

    fn build_model(&self, device: &Device, initial_weights: bool) -> Result<DeepLabV3Plus> {
        let mut model = self.config.task.model.init(device);
        if let Some(path) = self
            .config
            .common
            .weights
            .as_deref()
            .filter(|_| initial_weights)
        {
            if is_archive(path) {
                let ckpt = Checkpoint::read(path)?;
                ckpt.expect_task(crate::TaskKind::Segmentation)?;
                model = ckpt.load_model(model)?;
            } else {
                let dict = StateDict::from_file(path).map_err(TrainError::model)?;
                model = model.load_backbone(&dict).map_err(|e| {
                    TrainError::Model(format!(
                        "cannot use {} as the backbone: {e}",
                        path.display()
                    ))
                })?;
            }
            eprintln!("initial weights from {}", path.display());
        }
        let model =
            materialize(model.with_backbone_bn_momentum(self.config.task.backbone_bn_momentum));
        if self.config.common.method == Method::Afan {
            self.config
                .task
                .afan
                .validate(&model)
                .map_err(|e| TrainError::Config(format!("invalid [afan] section: {e}")))?;
        }
        Ok(model)
    }

    fn headline(&self) -> &'static str {
        "miou"
    }

    fn steps_per_epoch(&self) -> usize {
        self.train
            .as_ref()
            .map_or(0, |t| (t.len() / self.config.common.batch_size).max(1))
    }

    fn epoch_batches(
        &self,
        epoch: usize,
        start: usize,
    ) -> Box<dyn Iterator<Item = Result<SegBatch>> + '_> {
        let Some(train) = &self.train else {
            return Box::new(std::iter::empty());
        };
        let (order, b, per) = (
            self.order(epoch),
            self.config.common.batch_size,
            self.steps_per_epoch(),
        );
        let aug = &self.config.task.augment;
        let seed = self.config.common.seed;
        let norm = normalization(&self.config.task);
        Box::new((start..per).map(move |k| {
            let it = (epoch * per + k) as u64;
            let batch = load_batch(
                train,
                &order[k * b..(k + 1) * b],
                Some(aug),
                None,
                (seed, it),
                norm,
            );
            context(batch, "training")
        }))
    }

    fn shard(&self, batch: SegBatch, parts: usize) -> Result<Vec<SegBatch>> {
        let hw = batch.height * batch.width;
        Ok(crate::parallel::shard_ranges(batch.batch, parts)?
            .into_iter()
            .map(|r| SegBatch {
                images: batch.images[r.start * 3 * hw..r.end * 3 * hw].to_vec(),
                labels: batch.labels[r.start * hw..r.end * hw].to_vec(),
                batch: r.len(),
                height: batch.height,
                width: batch.width,
            })
            .collect())
    }

    fn step(
        &self,
        model: &DeepLabV3Plus,
        batch: SegBatch,
        ctx: &StepContext,
    ) -> Result<StepOutput> {
        let (x, y) = to_tensors(batch, ctx.device);
        self.loss(model, ctx.input(x), y)
    }

    /// The backbone at `backbone_lr_mult` times the head's rate, as the release's two SGD
    /// parameter groups.
    fn lr_groups(
        &self,
        model: &DeepLabV3Plus,
        mut grads: GradientsParams,
    ) -> Vec<(f64, GradientsParams)> {
        let mut head = Take {
            from: &mut grads,
            to: GradientsParams::new(),
        };
        model.head.visit(&mut head);
        let head = head.to;
        vec![(self.config.task.backbone_lr_mult, grads), (1.0, head)]
    }

    fn evaluate(&self, model: &DeepLabV3Plus, device: &Device, quiet: bool) -> Result<Evaluation> {
        self.evaluate_with(model, self.config.common.batch_size, device, quiet, None)
    }
}

impl SegmentationTask {
    /// The loss of one step on images `x` (normalized, in the step's float type) and labels `y`
    /// (255 ignored): cross-entropy, or the A-FAN objective of the backbone and decoder points.
    pub fn loss(
        &self,
        model: &DeepLabV3Plus,
        x: Tensor<4>,
        y: Tensor<3, Int>,
    ) -> Result<StepOutput> {
        let afan = &self.config.task.afan;
        if self.config.common.method != Method::Afan {
            let loss = seg_cross_entropy(model.forward(x), y);
            return Ok(StepOutput {
                loss,
                measures: vec![],
            });
        }
        let attacker = attack_copy(model, afan.backbone.attack_bn);
        let out = segmentation_afan_objective(model, &attacker, x, afan, |o| {
            seg_cross_entropy(o.clone(), y.clone())
        })
        .map_err(|e| TrainError::Config(format!("invalid [afan] section: {e}")))?;
        let points = out
            .point_losses
            .into_iter()
            .map(|p| p.into_scalar::<f64>())
            .collect();
        Ok(StepOutput {
            loss: out.loss,
            measures: vec![Measure::vector("point_losses", points)],
        })
    }
}

/// Moves the gradients of the visited parameters from one set to another.
struct Take<'a> {
    from: &'a mut GradientsParams,
    to: GradientsParams,
}

impl ModuleVisitor for Take<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.from.remove::<D>(param.id) {
            self.to.register(param.id, g);
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
