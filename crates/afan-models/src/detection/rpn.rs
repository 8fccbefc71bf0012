//! The region proposal network of the C4 layout: a 3x3 conv on the `layer3` feature, then 1x1
//! convs for one objectness logit and four box deltas per anchor; its training targets, its two
//! losses, and the proposals it hands to the RoI head.
//!
//! Objectness is one sigmoid logit per anchor (torchvision) rather than the release's two-way
//! softmax; the two are the same model family and the sigmoid halves the head's outputs.

use super::anchors::AnchorConfig;
use super::box_coder::BoxCoder;
use super::boxes::{BBox, clip, inside};
use super::losses::{bce_with_logits, smooth_l1_sum};
use super::nms::nms;
use super::sampler::{Match, Matcher, balanced_sample};
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// RPN settings; defaults are the release's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpnConfig {
    /// Anchor shapes (VOC or COCO preset).
    pub anchors: AnchorConfig,
    /// Channels of the 3x3 conv (512 in the release's ResNet C4 model).
    pub mid_channels: usize,
    /// Anchors sampled per image for the losses.
    pub batch_per_image: usize,
    /// Largest foreground share of the sample.
    pub fg_fraction: f32,
    /// IoU at or above which an anchor is foreground.
    pub fg_iou: f32,
    /// IoU below which an anchor is background.
    pub bg_iou: f32,
    /// How far outside the image an anchor may reach and still be trained on (0: cross-boundary
    /// anchors are dropped).
    pub allowed_border: f32,
    /// Proposals kept before NMS, by objectness, in training.
    pub pre_nms_train: usize,
    /// Proposals kept after NMS in training.
    pub post_nms_train: usize,
    /// Proposals kept before NMS at evaluation.
    pub pre_nms_test: usize,
    /// Proposals kept after NMS at evaluation.
    pub post_nms_test: usize,
    /// NMS IoU threshold among proposals.
    pub nms_threshold: f32,
    /// Proposals with a side at or below this (pixels) are dropped.
    pub min_size: f32,
    /// Smooth-L1 transition of the box loss (1/9, i.e. sigma 3).
    pub smooth_l1_beta: f64,
}

impl Default for RpnConfig {
    fn default() -> Self {
        Self {
            anchors: AnchorConfig::voc(),
            mid_channels: 512,
            batch_per_image: 256,
            fg_fraction: 0.5,
            fg_iou: 0.7,
            bg_iou: 0.3,
            allowed_border: 0.0,
            pre_nms_train: 12000,
            post_nms_train: 2000,
            pre_nms_test: 6000,
            post_nms_test: 300,
            nms_threshold: 0.7,
            min_size: 0.0,
            smooth_l1_beta: 1.0 / 9.0,
        }
    }
}

/// The RPN's layers.
#[derive(Module, Debug)]
pub struct RpnHead {
    /// 3x3 conv with ReLU (on afan's kernels where they run).
    pub conv: crate::conv::Conv2d,
    /// One objectness logit per anchor.
    pub cls_logits: Conv2d,
    /// Four deltas per anchor.
    pub bbox_pred: Conv2d,
}

/// A conv drawn from N(0, 0.01) with zero bias, the release's `normal_init`.
fn small_conv(in_ch: usize, out_ch: usize, kernel: usize, device: &Device) -> Conv2d {
    let p = kernel / 2;
    let mut conv = Conv2dConfig::new([in_ch, out_ch], [kernel, kernel])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_initializer(Initializer::Normal {
            mean: 0.0,
            std: 0.01,
        })
        .init(device);
    conv.bias = Some(Param::from_tensor(Tensor::zeros([out_ch], device)));
    conv
}

impl RpnHead {
    /// An RPN on `in_channels` features.
    pub fn new(in_channels: usize, config: &RpnConfig, device: &Device) -> Self {
        let a = config.anchors.num_anchors();
        let mid = config.mid_channels;
        Self {
            conv: small_conv(in_channels, mid, 3, device).into(),
            cls_logits: small_conv(mid, a, 1, device),
            bbox_pred: small_conv(mid, 4 * a, 1, device),
        }
    }

    /// Objectness `[B, H*W*A]` and deltas `[B, H*W*A, 4]`, in the order of
    /// [`AnchorConfig::grid_anchors`].
    pub fn forward(&self, feature: Tensor<4>) -> (Tensor<2>, Tensor<3>) {
        let x = relu(self.conv.forward(feature));
        let [b, _, h, w] = x.dims();
        let logits = self.cls_logits.forward(x.clone());
        let a = logits.dims()[1];
        let logits = logits.permute([0, 2, 3, 1]).reshape([b, h * w * a]);
        let deltas = self
            .bbox_pred
            .forward(x)
            .reshape([b, a, 4, h, w])
            .permute([0, 3, 4, 1, 2])
            .reshape([b, h * w * a, 4]);
        (logits, deltas)
    }
}

/// The sampled anchors of one image and what they should predict.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RpnTargets {
    /// Sampled anchors (foreground first).
    pub sampled: Vec<usize>,
    /// 1 for foreground, 0 for background, per sampled anchor.
    pub labels: Vec<f32>,
    /// Regression targets of the foreground anchors (the first `fg` of `sampled`).
    pub deltas: Vec<[f32; 4]>,
}

impl RpnConfig {
    /// The matcher of the RPN: foreground at 0.7, background below 0.3, best anchor per object.
    pub fn matcher(&self) -> Matcher {
        Matcher {
            fg_iou: self.fg_iou,
            bg_high: self.bg_iou,
            bg_low: 0.0,
            best_per_gt: true,
        }
    }

    /// Labels and samples the anchors of one image of `[height, width]`; anchors reaching more
    /// than `allowed_border` outside it take no part.
    pub fn targets(
        &self,
        anchors: &[BBox],
        size: [usize; 2],
        gts: &[BBox],
        rng: &mut impl Rng,
    ) -> RpnTargets {
        let kept: Vec<usize> = (0..anchors.len())
            .filter(|&i| inside(&anchors[i], size, self.allowed_border))
            .collect();
        let boxes: Vec<BBox> = kept.iter().map(|&i| anchors[i]).collect();
        let matches = self.matcher().assign(&boxes, gts);
        let (fg, bg) = balanced_sample(&matches, self.batch_per_image, self.fg_fraction, rng);
        let coder = BoxCoder::new([1.0; 4]);
        let deltas = fg
            .iter()
            .map(|&k| match matches[k] {
                Match::Foreground(g) => coder.encode(&gts[g], &boxes[k]),
                _ => unreachable!("sampled foreground is foreground"),
            })
            .collect();
        let labels = fg
            .iter()
            .map(|_| 1.0)
            .chain(bg.iter().map(|_| 0.0))
            .collect();
        let sampled = fg.iter().chain(&bg).map(|&k| kept[k]).collect();
        RpnTargets {
            sampled,
            labels,
            deltas,
        }
    }

    /// Objectness and box losses over the batch: the mean binary cross-entropy of the sampled
    /// anchors, and the smooth-L1 sum of the foreground deltas divided by the number sampled
    /// (torchvision's normalisation).
    pub fn losses(
        &self,
        logits: Tensor<2>,
        deltas: Tensor<3>,
        targets: &[RpnTargets],
    ) -> (Tensor<1>, Tensor<1>) {
        let [b, n] = logits.dims();
        let device = logits.device();
        let mut index = Vec::new();
        let mut labels: Vec<f32> = Vec::new();
        let mut fg_index = Vec::new();
        let mut fg_deltas: Vec<f32> = Vec::new();
        for (image, t) in targets.iter().enumerate() {
            index.extend(t.sampled.iter().map(|&i| (image * n + i) as i64));
            labels.extend(&t.labels);
            fg_index.extend(
                t.sampled[..t.deltas.len()]
                    .iter()
                    .map(|&i| (image * n + i) as i64),
            );
            fg_deltas.extend(t.deltas.iter().flatten());
        }
        let total = index.len().max(1) as f64;
        let objectness = if index.is_empty() {
            Tensor::zeros([1], &device)
        } else {
            let picked = logits.reshape([b * n]).select(0, int(index, &device));
            let n_sampled = labels.len();
            bce_with_logits(
                picked,
                Tensor::from_data(TensorData::new(labels, [n_sampled]), &device),
            )
        };
        let box_loss = if fg_index.is_empty() {
            (deltas.sum() * 0.0).reshape([1])
        } else {
            let m = fg_index.len();
            let picked = deltas.reshape([b * n, 4]).select(0, int(fg_index, &device));
            let target = Tensor::<2>::from_data(TensorData::new(fg_deltas, [m, 4]), &device);
            smooth_l1_sum(picked, target, self.smooth_l1_beta).div_scalar(total)
        };
        (objectness, box_loss)
    }

    /// The proposals of one image: decode every anchor, clip to the image, drop tiny boxes, keep
    /// the `pre_nms` best by objectness, NMS, keep `post_nms`.
    pub fn proposals(
        &self,
        logits: &[f32],
        deltas: &[f32],
        anchors: &[BBox],
        size: [usize; 2],
        training: bool,
    ) -> Vec<BBox> {
        let (pre, post) = if training {
            (self.pre_nms_train, self.post_nms_train)
        } else {
            (self.pre_nms_test, self.post_nms_test)
        };
        let coder = BoxCoder::new([1.0; 4]);
        let mut order: Vec<usize> = (0..anchors.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        let mut boxes = Vec::new();
        let mut scores = Vec::new();
        for &i in order.iter() {
            if boxes.len() == pre {
                break;
            }
            let d = [
                deltas[4 * i],
                deltas[4 * i + 1],
                deltas[4 * i + 2],
                deltas[4 * i + 3],
            ];
            let b = clip(&coder.decode(&d, &anchors[i]), size);
            if b[2] - b[0] > self.min_size && b[3] - b[1] > self.min_size {
                boxes.push(b);
                scores.push(logits[i]);
            }
        }
        nms(&boxes, &scores, self.nms_threshold)
            .into_iter()
            .take(post)
            .map(|k| boxes[k])
            .collect()
    }
}

/// A 1-D index tensor.
pub(crate) fn int(values: Vec<i64>, device: &Device) -> Tensor<1, Int> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}
