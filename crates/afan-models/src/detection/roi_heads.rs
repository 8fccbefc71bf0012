//! The RoI head of the C4 layout: `layer4` of the ResNet on each pooled region, a global pool
//! to one vector per region (the release's RoI split point), then class logits and
//! class-specific box deltas; its sampling, losses and the per-class post-processing that turns
//! its outputs into detections.

use super::box_coder::BoxCoder;
use super::boxes::{BBox, clip};
use super::head_init::HeadInit;
use super::losses::{LossNormalization, smooth_l1_rows, weighted_sum};
use super::nms::{NmsRule, batched_nms};
use super::roi_align::{Roi, RoiPoolConfig};
use super::rpn::int;
use super::sampler::{Match, Matcher, SamplingScope, balanced_sample_batch};
use crate::resnet::Block;
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How `layer4`'s output of a region becomes one vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadPool {
    /// `F.adaptive_max_pool2d(hidden, 1)` (the release: `model.py` L287, L327).
    #[default]
    Max,
    /// The global average of torchvision's ResNet (afan before issue 17).
    Mean,
}

/// RoI-head settings; defaults are the release's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoiHeadConfig {
    /// How regions are pooled from the `layer3` feature.
    pub pool: RoiPoolConfig,
    /// Regions sampled per image for the losses.
    pub batch_per_image: usize,
    /// Largest foreground share of the sample.
    pub fg_fraction: f32,
    /// IoU at or above which a proposal is foreground.
    pub fg_iou: f32,
    /// Background is IoU in `[bg_iou_low, bg_iou_high)`.
    pub bg_iou_high: f32,
    /// Lower end of the background range.
    pub bg_iou_low: f32,
    /// The regression targets are divided by these (`BBOX_NORMALIZE_STDS`).
    pub box_stds: [f32; 4],
    /// Smooth-L1 transition of the box loss (1: sigma 1).
    pub smooth_l1_beta: f64,
    /// A 2x2 max-pool (stride 2) on the pooled regions before `layer4` (the release pools to
    /// 14x14 and halves: `roi/pooler.py` L22, L42).
    pub pooled_max_2x2: bool,
    /// Max (release) or mean over `layer4`'s output.
    pub head_pool: HeadPool,
    /// Region sampling over the batch (release) or per image.
    pub sampling: SamplingScope,
    /// Loss reduction: per image then the mean (release) or over the batch.
    pub loss_norm: LossNormalization,
    /// Add the ground-truth boxes to the proposals before sampling (torchvision, afan before
    /// issue 17); the release samples among the proposals only (`model.py` L262-270).
    pub add_gt_boxes: bool,
    /// Detections need a class score above this.
    pub score_threshold: f32,
    /// Per-class NMS IoU threshold of the detections.
    pub nms_threshold: f32,
    /// How that NMS measures overlap (the release's kernel or torchvision's).
    pub nms_rule: NmsRule,
    /// Most detections kept per image; 0 keeps every one (the release: `evaluator.py` L34-38
    /// only drops scores at or below 0.05).
    pub detections_per_image: usize,
}

impl Default for RoiHeadConfig {
    /// The release's (`model.py`, `roi/pooler.py`): RoIAlign to 14x14 then a 2x2 max-pool,
    /// max-pooled `layer4`, 128 regions per image drawn over the batch, a quarter foreground.
    fn default() -> Self {
        Self {
            // `output_size = (7 * 2, 7 * 2)`, `sampling_ratio=0`, `spatial_scale = 1/16`,
            // maskrcnn-benchmark's unaligned RoIAlign (roi/pooler.py L21-22, L35).
            pool: RoiPoolConfig {
                output_size: [14, 14],
                ..RoiPoolConfig::default()
            },
            batch_per_image: 128,
            fg_fraction: 0.25,
            fg_iou: 0.5,
            bg_iou_high: 0.5,
            bg_iou_low: 0.0,
            box_stds: [0.1, 0.1, 0.2, 0.2],
            smooth_l1_beta: 1.0,
            score_threshold: 0.05,
            nms_threshold: 0.3,
            nms_rule: NmsRule::Release,
            detections_per_image: 0,
            pooled_max_2x2: true,
            head_pool: HeadPool::Max,
            sampling: SamplingScope::PerBatch,
            loss_norm: LossNormalization::PerImage,
            add_gt_boxes: false,
        }
    }
}

/// The sampled regions of one image and what they should predict.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoiSample {
    /// Regions, foreground first, in input pixels.
    pub boxes: Vec<BBox>,
    /// Class per region, 0 for background, `1..=K` for the dataset's classes.
    pub labels: Vec<usize>,
    /// Normalised regression targets of the foreground regions (the first ones).
    pub deltas: Vec<[f32; 4]>,
}

/// One image's detections, by decreasing score.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Detections {
    /// Boxes in input pixels.
    pub boxes: Vec<BBox>,
    /// Scores in `(score_threshold, 1]`.
    pub scores: Vec<f32>,
    /// Classes in `1..=K` (0 is background and never reported).
    pub labels: Vec<usize>,
}

/// `layer4` and the two predictors.
#[derive(Module, Debug)]
pub struct RoiHead {
    /// The ResNet's last stage, run on every pooled region.
    pub layer4: Vec<Block>,
    /// `K + 1` class logits (index 0 is background).
    pub cls_score: Linear,
    /// `4 (K + 1)` deltas: one box per class.
    pub bbox_pred: Linear,
}

fn linear(input: usize, output: usize, std: f64, init: HeadInit, device: &Device) -> Linear {
    let config = LinearConfig::new(input, output);
    match init {
        // Burn's default linear initialiser is PyTorch's, weights and bias alike.
        HeadInit::Pytorch => config.init(device),
        HeadInit::Normal => {
            let mut l = config
                .with_initializer(Initializer::Normal { mean: 0.0, std })
                .init(device);
            l.bias = Some(Param::from_tensor(Tensor::zeros([output], device)));
            l
        }
    }
}

impl RoiHead {
    /// A head for `num_classes` classes plus background on `channels`-wide `layer4` output,
    /// predictors initialised per `init` (`Normal`: N(0, 0.01) logits, N(0, 0.001) deltas,
    /// zero biases).
    pub fn new(
        layer4: Vec<Block>,
        channels: usize,
        num_classes: usize,
        init: HeadInit,
        device: &Device,
    ) -> Self {
        Self {
            layer4,
            cls_score: linear(channels, num_classes + 1, 0.01, init, device),
            bbox_pred: linear(channels, 4 * (num_classes + 1), 0.001, init, device),
        }
    }

    /// Pooled regions `[R, C, P, P]` to logits `[R, K+1]` and deltas `[R, 4(K+1)]`.
    pub fn forward(&self, pooled: Tensor<4>, pool: HeadPool) -> (Tensor<2>, Tensor<2>) {
        self.predict(self.vector(pooled, pool))
    }

    /// `layer4` and the global pool: one `[R, C, 1, 1]` vector per region, the feature before
    /// the two predictors (the release's RoI point, `model.py` L325-329).
    pub fn vector(&self, pooled: Tensor<4>, pool: HeadPool) -> Tensor<4> {
        let x = self.layer4.iter().fold(pooled, |f, b| b.forward(f));
        let [r, c, h, w] = x.dims();
        let x = x.reshape([r, c, h * w]);
        let x = match pool {
            HeadPool::Max => x.max_dim(2),
            HeadPool::Mean => x.mean_dim(2),
        };
        x.reshape([r, c, 1, 1])
    }

    /// Logits `[R, K+1]` and deltas `[R, 4(K+1)]` from the vectors `[R, C, 1, 1]`.
    pub fn predict(&self, vector: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let [r, c, _, _] = vector.dims();
        let x = vector.reshape([r, c]);
        (self.cls_score.forward(x.clone()), self.bbox_pred.forward(x))
    }
}

impl RoiHeadConfig {
    fn coder(&self) -> BoxCoder {
        BoxCoder::with_stds(self.box_stds)
    }

    /// Pools `rois` from the `layer3` feature: RoIAlign (or RoIPool), then the release's 2x2
    /// max-pool if configured.
    ///
    /// The pooling runs in f32 whatever the feature's type, the result back in its type: the
    /// interpolation weights are f32 host data, and torchvision's `roi_align` runs in f32 under
    /// autocast too.
    pub fn pool_regions(&self, feature: Tensor<4>, rois: &[Roi]) -> Tensor<4> {
        let dtype = feature.dtype();
        let pooled = if dtype == burn::tensor::DType::F32 {
            self.pool.forward(feature, rois)
        } else {
            self.pool
                .forward(feature.cast(burn::tensor::FloatDType::F32), rois)
                .cast(burn::tensor::FloatDType::from(dtype))
        };
        if self.pooled_max_2x2 {
            crate::pool::max_pool2d(pooled, crate::pool::Pool2d::square(2, 2, 0))
        } else {
            pooled
        }
    }

    /// Samples the regions of a batch among each image's proposals (and its ground-truth boxes
    /// if `add_gt_boxes`), per `self.sampling`.
    pub fn sample(
        &self,
        proposals: &[Vec<BBox>],
        gts: &[&[BBox]],
        gt_labels: &[&[usize]],
        rng: &mut impl Rng,
    ) -> Vec<RoiSample> {
        let candidates: Vec<Vec<BBox>> = proposals
            .iter()
            .zip(gts)
            .map(|(p, g)| {
                let gt: &[BBox] = if self.add_gt_boxes { g } else { &[] };
                p.iter().chain(gt).copied().collect()
            })
            .collect();
        let matcher = Matcher {
            fg_iou: self.fg_iou,
            bg_high: self.bg_iou_high,
            bg_low: self.bg_iou_low,
            best_per_gt: false,
        };
        let matches: Vec<Vec<Match>> = candidates
            .iter()
            .zip(gts)
            .map(|(c, g)| matcher.assign(c, g))
            .collect();
        let drawn = balanced_sample_batch(
            &matches,
            self.batch_per_image,
            self.fg_fraction,
            self.sampling,
            rng,
        );
        let coder = self.coder();
        drawn
            .into_iter()
            .enumerate()
            .map(|(image, (fg, bg))| {
                let (candidates, matches) = (&candidates[image], &matches[image]);
                let mut sample = RoiSample::default();
                for &k in &fg {
                    let Match::Foreground(g) = matches[k] else {
                        unreachable!("sampled foreground is foreground")
                    };
                    sample.boxes.push(candidates[k]);
                    sample.labels.push(gt_labels[image][g]);
                    sample
                        .deltas
                        .push(coder.encode(&gts[image][g], &candidates[k]));
                }
                for &k in &bg {
                    sample.boxes.push(candidates[k]);
                    sample.labels.push(0);
                }
                sample
            })
            .collect()
    }

    /// Classification loss (cross-entropy of the sampled regions) and box loss (smooth L1 of each
    /// foreground region's own-class deltas), reduced per `self.loss_norm`.
    pub fn losses(
        &self,
        logits: Tensor<2>,
        deltas: Tensor<2>,
        samples: &[RoiSample],
    ) -> (Tensor<1>, Tensor<1>) {
        let device = logits.device();
        let labels: Vec<i64> = samples
            .iter()
            .flat_map(|s| s.labels.iter().map(|&l| l as i64))
            .collect();
        let mut rows = Vec::new();
        let mut columns = Vec::new();
        let mut targets: Vec<f32> = Vec::new();
        let mut offset = 0;
        for s in samples {
            for (k, d) in s.deltas.iter().enumerate() {
                rows.push((offset + k) as i64);
                columns.extend((0..4).map(|j| (s.labels[k] * 4 + j) as i64));
                targets.extend(d);
            }
            offset += s.labels.len();
        }
        let sampled: Vec<usize> = samples.iter().map(|s| s.labels.len()).collect();
        let foreground: Vec<usize> = samples.iter().map(|s| s.deltas.len()).collect();
        let n = labels.len();
        let class_loss = if n == 0 {
            (logits.sum() * 0.0).reshape([1])
        } else {
            let terms = log_softmax(logits, 1)
                .gather(1, int(labels, &device).reshape([n, 1]))
                .reshape([n])
                .neg();
            weighted_sum(terms, self.loss_norm.class_weights(&sampled), &device)
        };
        let box_loss = if rows.is_empty() {
            (deltas.sum() * 0.0).reshape([1])
        } else {
            let m = rows.len();
            let own = deltas
                .select(0, int(rows, &device))
                .gather(1, int(columns, &device).reshape([m, 4]));
            let target = Tensor::<2>::from_data(TensorData::new(targets, [m, 4]), &device);
            let terms = smooth_l1_rows(own, target, self.smooth_l1_beta);
            let weights = self.loss_norm.box_weights(&foreground, &sampled);
            weighted_sum(terms, weights, &device)
        };
        (class_loss, box_loss)
    }

    /// Detections of one image from its regions' logits `[R, K+1]` and deltas `[R, 4(K+1)]`
    /// (host data): per class, decode, clip, keep scores above the threshold, NMS per class,
    /// keep the best `detections_per_image`.
    pub fn postprocess(
        &self,
        regions: &[BBox],
        logits: Tensor<2>,
        deltas: &[f32],
        size: [usize; 2],
    ) -> Detections {
        let [r, k1] = logits.dims();
        let probs: Vec<f32> = softmax(logits, 1)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        let coder = self.coder();
        let (mut boxes, mut scores, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..r {
            for c in 1..k1 {
                let p = probs[i * k1 + c];
                if p <= self.score_threshold {
                    continue;
                }
                let o = (i * k1 + c) * 4;
                let d = [deltas[o], deltas[o + 1], deltas[o + 2], deltas[o + 3]];
                let b = clip(&coder.decode(&d, &regions[i]), size);
                if b[2] > b[0] && b[3] > b[1] {
                    boxes.push(b);
                    scores.push(p);
                    labels.push(c);
                }
            }
        }
        let keep = batched_nms(&boxes, &scores, &labels, self.nms_threshold, self.nms_rule);
        let cap = match self.detections_per_image {
            0 => keep.len(),
            n => n.min(keep.len()),
        };
        let keep = &keep[..cap];
        Detections {
            boxes: keep.iter().map(|&i| boxes[i]).collect(),
            scores: keep.iter().map(|&i| scores[i]).collect(),
            labels: keep.iter().map(|&i| labels[i]).collect(),
        }
    }
}
