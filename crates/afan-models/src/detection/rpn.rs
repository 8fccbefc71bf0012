//! The region proposal network of the C4 layout: a 3x3 conv on the `layer3` feature, then 1x1
//! convs for the objectness logits and four box deltas per anchor; its training targets, its two
//! losses, and the proposals it hands to the RoI head.
//!
//! Objectness is two logits per anchor under a softmax in the release
//! (`rpn/region_proposal_network.py` L35, L185) and one sigmoid logit in torchvision
//! ([`Objectness`]); the two are the same model family, the sigmoid halves the head's outputs.

use super::anchors::{AnchorConfig, AnchorLayout};
use super::box_coder::BoxCoder;
use super::boxes::{BBox, clip, inside};
use super::head_init::HeadInit;
use super::losses::{LossNormalization, bce_terms, smooth_l1_rows, weighted_sum};
use super::nms::{NmsRule, nms_by};
use super::sampler::{Match, Matcher, SamplingScope, balanced_sample_batch};
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How the RPN scores an anchor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objectness {
    /// Two logits (background, object) per anchor, softmax cross-entropy; proposals ranked by
    /// the object logit (the release: region_proposal_network.py L35, L185, L246-248).
    #[default]
    Softmax,
    /// One logit per anchor, binary cross-entropy (torchvision; afan before issue 17).
    Sigmoid,
}

impl Objectness {
    /// Logits per anchor.
    pub fn logits(self) -> usize {
        match self {
            Self::Softmax => 2,
            Self::Sigmoid => 1,
        }
    }
}

/// The image extent the RPN clips proposals to and keeps anchors inside of, in training.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageBounds {
    /// The padded batch (the release: `image_width, image_height` of the batch tensor,
    /// `model.py` L64-71; evaluation runs one image at a time, where the two agree).
    #[default]
    Padded,
    /// Each image's own valid size (afan before issue 17): no anchor or proposal over padding.
    Image,
}

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
    /// How NMS measures overlap (the release's kernel or torchvision's).
    pub nms_rule: NmsRule,
    /// Proposals with a side at or below this (pixels) are dropped.
    pub min_size: f32,
    /// Smooth-L1 transition of the box loss: the release's VOC scripts keep its default 1
    /// (`config/train_config.py` L12), its COCO scripts pass 0.1111 (`sh/coco/clean50/*.sh`).
    pub smooth_l1_beta: f64,
    /// Softmax (release) or sigmoid objectness.
    pub objectness: Objectness,
    /// Where the anchors sit (release or py-faster-rcnn layout).
    pub anchor_layout: AnchorLayout,
    /// Anchor sampling over the batch (release) or per image.
    pub sampling: SamplingScope,
    /// Loss reduction: per image then the mean (release) or over the batch.
    pub loss_norm: LossNormalization,
    /// Anchors and training proposals bounded by the padded batch (release) or by each image.
    pub bounds: ImageBounds,
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
            nms_rule: NmsRule::Release,
            min_size: 0.0,
            smooth_l1_beta: 1.0,
            objectness: Objectness::Softmax,
            anchor_layout: AnchorLayout::Release,
            sampling: SamplingScope::PerBatch,
            loss_norm: LossNormalization::PerImage,
            bounds: ImageBounds::Padded,
        }
    }
}

/// The RPN's layers.
#[derive(Module, Debug)]
pub struct RpnHead {
    /// 3x3 conv with ReLU (on afan's kernels where they run).
    pub conv: crate::conv::Conv2d,
    /// Objectness logits: two per anchor (softmax) or one (sigmoid).
    pub cls_logits: Conv2d,
    /// Four deltas per anchor.
    pub bbox_pred: Conv2d,
}

/// A conv initialised per `init`: PyTorch's default, or N(0, 0.01) with zero bias
/// (py-faster-rcnn's `normal_init`).
fn head_conv(
    in_ch: usize,
    out_ch: usize,
    kernel: usize,
    init: HeadInit,
    device: &Device,
) -> Conv2d {
    let p = kernel / 2;
    let config = Conv2dConfig::new([in_ch, out_ch], [kernel, kernel])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p));
    match init {
        // Burn's default conv initialiser is PyTorch's (kaiming uniform, gain 1/sqrt(3)),
        // weights and bias alike.
        HeadInit::Pytorch => config.init(device),
        HeadInit::Normal => {
            let mut conv = config
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: 0.01,
                })
                .init(device);
            conv.bias = Some(Param::from_tensor(Tensor::zeros([out_ch], device)));
            conv
        }
    }
}

impl RpnHead {
    /// An RPN on `in_channels` features.
    pub fn new(in_channels: usize, config: &RpnConfig, init: HeadInit, device: &Device) -> Self {
        let a = config.anchors.num_anchors();
        let mid = config.mid_channels;
        Self {
            conv: head_conv(in_channels, mid, 3, init, device).into(),
            cls_logits: head_conv(mid, a * config.objectness.logits(), 1, init, device),
            bbox_pred: head_conv(mid, 4 * a, 1, init, device),
        }
    }

    /// Objectness `[B, H*W*A, k]` (`k` logits per anchor, channel `a * k + j` of the conv, as
    /// the release's `view(batch, -1, 2)`) and deltas `[B, H*W*A, 4]`, in the order of
    /// [`AnchorConfig::anchors`].
    pub fn forward(&self, feature: Tensor<4>) -> (Tensor<3>, Tensor<3>) {
        let x = relu(self.conv.forward(feature));
        let [b, _, h, w] = x.dims();
        let logits = self.cls_logits.forward(x.clone());
        let a = self.bbox_pred.weight.dims()[0] / 4;
        let k = logits.dims()[1] / a;
        let logits = logits.permute([0, 2, 3, 1]).reshape([b, h * w * a, k]);
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

    /// Every anchor of a `feature_size` map over a padded batch of `image_size`.
    pub fn anchors_for(&self, feature_size: [usize; 2], image_size: [usize; 2]) -> Vec<BBox> {
        self.anchors
            .anchors(self.anchor_layout, feature_size, image_size)
    }

    /// Labels and samples the anchors of a batch: image `i` is `bounds[i]` (`[height, width]`)
    /// large, anchors reaching more than `allowed_border` outside it take no part, and the
    /// balanced sample is drawn per `self.sampling`.
    pub fn targets(
        &self,
        anchors: &[BBox],
        bounds: &[[usize; 2]],
        gts: &[&[BBox]],
        rng: &mut impl Rng,
    ) -> Vec<RpnTargets> {
        let kept: Vec<Vec<usize>> = bounds
            .iter()
            .map(|size| {
                (0..anchors.len())
                    .filter(|&i| inside(&anchors[i], *size, self.allowed_border))
                    .collect()
            })
            .collect();
        let matches: Vec<Vec<Match>> = kept
            .iter()
            .zip(gts)
            .map(|(kept, gts)| {
                let boxes: Vec<BBox> = kept.iter().map(|&i| anchors[i]).collect();
                self.matcher().assign(&boxes, gts)
            })
            .collect();
        let samples = balanced_sample_batch(
            &matches,
            self.batch_per_image,
            self.fg_fraction,
            self.sampling,
            rng,
        );
        let coder = BoxCoder::new([1.0; 4]);
        samples
            .into_iter()
            .enumerate()
            .map(|(image, (fg, bg))| {
                let (kept, matches) = (&kept[image], &matches[image]);
                let deltas = fg
                    .iter()
                    .map(|&k| match matches[k] {
                        Match::Foreground(g) => coder.encode(&gts[image][g], &anchors[kept[k]]),
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
            })
            .collect()
    }

    /// Objectness and box losses over the batch, reduced per `self.loss_norm`: cross-entropy
    /// of the sampled anchors (softmax or sigmoid per `self.objectness`) and smooth L1 of the
    /// foreground deltas.
    pub fn losses(
        &self,
        logits: Tensor<3>,
        deltas: Tensor<3>,
        targets: &[RpnTargets],
    ) -> (Tensor<1>, Tensor<1>) {
        let [b, n, k] = logits.dims();
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
        let sampled: Vec<usize> = targets.iter().map(|t| t.sampled.len()).collect();
        let foreground: Vec<usize> = targets.iter().map(|t| t.deltas.len()).collect();
        let objectness = if index.is_empty() {
            (logits.sum() * 0.0).reshape([1])
        } else {
            let m = labels.len();
            let picked = logits.reshape([b * n, k]).select(0, int(index, &device));
            let terms = match self.objectness {
                Objectness::Sigmoid => bce_terms(
                    picked.reshape([m]),
                    Tensor::from_data(TensorData::new(labels, [m]), &device),
                ),
                Objectness::Softmax => {
                    let classes = labels.iter().map(|&l| l as i64).collect();
                    log_softmax(picked, 1)
                        .gather(1, int(classes, &device).reshape([m, 1]))
                        .reshape([m])
                        .neg()
                }
            };
            weighted_sum(terms, self.loss_norm.class_weights(&sampled), &device)
        };
        let box_loss = if fg_index.is_empty() {
            (deltas.sum() * 0.0).reshape([1])
        } else {
            let m = fg_index.len();
            let picked = deltas.reshape([b * n, 4]).select(0, int(fg_index, &device));
            let target = Tensor::<2>::from_data(TensorData::new(fg_deltas, [m, 4]), &device);
            let terms = smooth_l1_rows(picked, target, self.smooth_l1_beta);
            let weights = self.loss_norm.box_weights(&foreground, &sampled);
            weighted_sum(terms, weights, &device)
        };
        (objectness, box_loss)
    }

    /// The proposals of one image from its objectness scores (one per anchor: the sigmoid logit,
    /// or the release's object logit) and deltas: decode every anchor, clip to the image, drop
    /// tiny boxes, keep the `pre_nms` best by objectness, NMS, keep `post_nms`.
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
        nms_by(&boxes, &scores, self.nms_threshold, self.nms_rule)
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
