//! The RoI head of the C4 layout: `layer4` of the ResNet on each pooled region, global average
//! pool, then class logits and class-specific box deltas; its sampling, losses and the
//! per-class post-processing that turns its outputs into detections.

use super::box_coder::BoxCoder;
use super::boxes::{BBox, clip};
use super::losses::smooth_l1_sum;
use super::nms::batched_nms;
use super::roi_align::RoiPoolConfig;
use super::rpn::int;
use super::sampler::{Match, Matcher, balanced_sample};
use crate::resnet::Block;
use afan_core::cross_entropy;
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use serde::{Deserialize, Serialize};

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
    /// Detections need a class score above this.
    pub score_threshold: f32,
    /// Per-class NMS IoU threshold of the detections.
    pub nms_threshold: f32,
    /// Most detections kept per image.
    pub detections_per_image: usize,
}

impl Default for RoiHeadConfig {
    fn default() -> Self {
        Self {
            pool: RoiPoolConfig::default(),
            batch_per_image: 128,
            fg_fraction: 0.25,
            fg_iou: 0.5,
            bg_iou_high: 0.5,
            bg_iou_low: 0.0,
            box_stds: [0.1, 0.1, 0.2, 0.2],
            smooth_l1_beta: 1.0,
            score_threshold: 0.05,
            nms_threshold: 0.3,
            detections_per_image: 100,
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

fn linear(input: usize, output: usize, std: f64, device: &Device) -> Linear {
    let mut l = LinearConfig::new(input, output)
        .with_initializer(Initializer::Normal { mean: 0.0, std })
        .init(device);
    l.bias = Some(Param::from_tensor(Tensor::zeros([output], device)));
    l
}

impl RoiHead {
    /// A head for `num_classes` classes plus background on `channels`-wide `layer4` output.
    /// Predictors start as in the release: N(0, 0.01) logits, N(0, 0.001) deltas, zero biases.
    pub fn new(layer4: Vec<Block>, channels: usize, num_classes: usize, device: &Device) -> Self {
        Self {
            layer4,
            cls_score: linear(channels, num_classes + 1, 0.01, device),
            bbox_pred: linear(channels, 4 * (num_classes + 1), 0.001, device),
        }
    }

    /// Pooled regions `[R, C, P, P]` to logits `[R, K+1]` and deltas `[R, 4(K+1)]`.
    pub fn forward(&self, pooled: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let x = self.layer4.iter().fold(pooled, |f, b| b.forward(f));
        let [r, c, _, _] = x.dims();
        let x = x.mean_dim(2).mean_dim(3).reshape([r, c]);
        (self.cls_score.forward(x.clone()), self.bbox_pred.forward(x))
    }
}

impl RoiHeadConfig {
    fn coder(&self) -> BoxCoder {
        BoxCoder::with_stds(self.box_stds)
    }

    /// Samples the regions of one image among its proposals and ground-truth boxes (added as
    /// proposals, as in the release, so every object has a perfect region).
    pub fn sample(
        &self,
        proposals: &[BBox],
        gts: &[BBox],
        gt_labels: &[usize],
        rng: &mut impl Rng,
    ) -> RoiSample {
        let candidates: Vec<BBox> = proposals.iter().chain(gts).copied().collect();
        let matcher = Matcher {
            fg_iou: self.fg_iou,
            bg_high: self.bg_iou_high,
            bg_low: self.bg_iou_low,
            best_per_gt: false,
        };
        let matches = matcher.assign(&candidates, gts);
        let (fg, bg) = balanced_sample(&matches, self.batch_per_image, self.fg_fraction, rng);
        let coder = self.coder();
        let mut sample = RoiSample::default();
        for &k in &fg {
            let Match::Foreground(g) = matches[k] else {
                unreachable!("sampled foreground is foreground")
            };
            sample.boxes.push(candidates[k]);
            sample.labels.push(gt_labels[g]);
            sample.deltas.push(coder.encode(&gts[g], &candidates[k]));
        }
        for &k in &bg {
            sample.boxes.push(candidates[k]);
            sample.labels.push(0);
        }
        sample
    }

    /// Classification loss (mean cross-entropy over the sampled regions) and box loss (smooth L1
    /// of each foreground region's own-class deltas, summed, divided by the regions sampled).
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
        let total = labels.len();
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
        let class_loss = cross_entropy(logits, int(labels, &device));
        let box_loss = if rows.is_empty() {
            (deltas.sum() * 0.0).reshape([1])
        } else {
            let m = rows.len();
            let own = deltas
                .select(0, int(rows, &device))
                .gather(1, int(columns, &device).reshape([m, 4]));
            let target = Tensor::<2>::from_data(TensorData::new(targets, [m, 4]), &device);
            smooth_l1_sum(own, target, self.smooth_l1_beta).div_scalar(total as f64)
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
        let keep = batched_nms(&boxes, &scores, &labels, self.nms_threshold);
        let keep = &keep[..keep.len().min(self.detections_per_image)];
        Detections {
            boxes: keep.iter().map(|&i| boxes[i]).collect(),
            scores: keep.iter().map(|&i| scores[i]).collect(),
            labels: keep.iter().map(|&i| labels[i]).collect(),
        }
    }
}

/// RoI pooling in f32 whatever the features' type, the result back in theirs: the pooling's
/// interpolation weights are f32 host data, and torchvision's `roi_align` runs in f32 under
/// autocast too.
pub(crate) fn pool_f32(
    pool: &RoiPoolConfig,
    features: Tensor<4>,
    rois: &[super::roi_align::Roi],
) -> Tensor<4> {
    let dtype = features.dtype();
    if dtype == burn::tensor::DType::F32 {
        return pool.forward(features, rois);
    }
    let f32 = burn::tensor::FloatDType::F32;
    pool.forward(features.cast(f32), rois)
        .cast(burn::tensor::FloatDType::from(dtype))
}
