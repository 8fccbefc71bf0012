//! Faster R-CNN in the C4 layout of the release: a torchvision ResNet up to `layer3` (stride 16)
//! extracts features, the RPN proposes regions on them, and `layer4` is the RoI head.
//!
//! [`FasterRcnnConfig::voc`] and [`FasterRcnnConfig::coco`] are the release's detectors
//! (`Detection/`, the scripts its README runs: `sh/voc2007/clean50/090_final_setting1.sh`,
//! `sh/coco/clean50/090_final_setting1_gpu01.sh`), each field with the file and line it comes
//! from; every other value of a field is a named option (docs/method.md).

use super::boxes::BBox;
pub use super::head_init::HeadInit;
use super::roi_heads::{Detections, RoiHead, RoiHeadConfig};
use super::rpn::{ImageBounds, RpnConfig, RpnHead};
use crate::norm::BatchNorm2d;
use crate::resnet::{Block, ResNet, ResNetDepth, UnknownResNetDepth};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// A whole detector; defaults are the release's Pascal VOC setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FasterRcnnConfig {
    /// `resnet18` (small runs), `resnet50` or `resnet101`.
    pub backbone: String,
    /// Object classes, background excluded (VOC 20, COCO 80).
    pub num_classes: usize,
    /// The region proposal network.
    pub rpn: RpnConfig,
    /// The RoI head.
    pub roi: RoiHeadConfig,
    /// Batch norm in eval mode with no gradient everywhere, as detection fine-tuning from
    /// ImageNet weights does (batches of one or two images give useless batch statistics).
    pub frozen_bn: bool,
    /// Leading stages with no gradient: 0 none, 1 the stem, 2 the stem and `layer1` (release).
    pub frozen_stages: usize,
    /// How the RPN convs and the two predictors start.
    pub head_init: HeadInit,
}

impl Default for FasterRcnnConfig {
    fn default() -> Self {
        Self::voc()
    }
}

/// A configuration that cannot build a detector.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum DetectionConfigError {
    /// `backbone` names no ResNet.
    #[error("detector.backbone: {0}")]
    Backbone(#[from] UnknownResNetDepth),
    /// A value outside its domain.
    #[error("detector.{field} = {value} is invalid: {expected}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
}

impl FasterRcnnConfig {
    /// The release's Pascal VOC detector, `Detection/sh/voc2007/clean50/090_final_setting1.sh`
    /// (the script its README runs), field by field:
    ///
    /// - `backbone = "resnet50"`: `-b=resnet50` (090_final_setting1.sh L21).
    /// - `num_classes = 20`: `dataset/voc2007.py` (20 classes + background).
    /// - `rpn.anchors`: sizes 128, 256, 512 and ratios (1,2), (1,1), (2,1)
    ///   (`config/config.py` L12-13), laid out as `generate_anchors`
    ///   (`rpn/region_proposal_network.py` L198-228).
    /// - `rpn.mid_channels = 512` (region_proposal_network.py L20).
    /// - `rpn.batch_per_image = 256`, `rpn.fg_fraction = 0.5`: `128 * batch_size` foreground of
    ///   `256 * batch_size`, over the batch (L84-90).
    /// - `rpn.fg_iou = 0.7`, `rpn.bg_iou = 0.3`, best anchor per object with IoU > 0 (L77-82).
    /// - `rpn.allowed_border = 0`: `BBox.inside(..., 0, 0, width, height)` (L64), padded batch.
    /// - `rpn.pre_nms_train = 12000`, `rpn.post_nms_train = 2000` (`config/train_config.py`
    ///   L9-10); `rpn.pre_nms_test = 6000`, `rpn.post_nms_test = 300` (`config/eval_config.py`
    ///   L8-9); `rpn.nms_threshold = 0.7` (region_proposal_network.py L254).
    /// - `rpn.smooth_l1_beta = 1`: `ANCHOR_SMOOTH_L1_LOSS_BETA` (train_config.py L12), not
    ///   overridden by the VOC scripts.
    /// - `rpn.objectness = softmax` (L35, L185); `rpn.loss_norm = per_image`
    ///   (`extension/functional.py` L9, region_proposal_network.py L182-194,
    ///   `attack_algo.py` L21-27).
    /// - `roi.pool`: RoIAlign 14x14, `sampling_ratio=0`, scale 1/16, unaligned; then
    ///   `roi.pooled_max_2x2` (`roi/pooler.py` L21-22, L35-42; `POOLER_MODE = ALIGN`,
    ///   config.py L14).
    /// - `roi.head_pool = max` (`model.py` L287).
    /// - `roi.batch_per_image = 128`, `roi.fg_fraction = 0.25`, over the batch (model.py
    ///   L271-277); `roi.fg_iou = 0.5`, background below 0.5 (L266-267); no ground truth among
    ///   the candidates (`roi.add_gt_boxes = false`, L262-270).
    /// - `roi.box_stds = [0.1, 0.1, 0.2, 0.2]` (L239); `roi.smooth_l1_beta = 1`
    ///   (`PROPOSAL_SMOOTH_L1_LOSS_BETA`, train_config.py L13); `roi.loss_norm = per_image`
    ///   (model.py L365-377).
    /// - `roi.nms_threshold = 0.3` (model.py L403), `roi.nms_rule = release` and
    ///   `rpn.nms_rule = release` (`support/src/cpu/nms_cpu.cpp` L22, L56-60);
    ///   `roi.score_threshold = 0.05`, `roi.detections_per_image = 0` (no cap: `evaluator.py`
    ///   L34-38).
    /// - `frozen_bn = true` (model.py L27-35, L47-48); `frozen_stages = 2`: conv1, bn1 and
    ///   `layer1` (`backbone/resnet50.py` L36-38).
    /// - `head_init = pytorch`: the RPN and predictors keep PyTorch's default initialisation.
    pub fn voc() -> Self {
        Self {
            backbone: "resnet50".into(),
            num_classes: 20,
            rpn: RpnConfig::default(),
            roi: RoiHeadConfig::default(),
            frozen_bn: true,
            frozen_stages: 2,
            head_init: HeadInit::Pytorch,
        }
    }

    /// The release's COCO detector, `Detection/sh/coco/clean50/090_final_setting1_gpu01.sh`:
    /// the VOC detector with 80 classes, anchor sizes 64-512 (`--anchor_sizes="[64, 128, 256,
    /// 512]"`, L25) and an RPN smooth-L1 beta of 0.1111 (`--anchor_smooth_l1_loss_beta`, L26).
    /// Its evaluation keeps 1000 proposals (`--rpn_post_nms_top_n=1000`, L45), and every
    /// detection above 0.05 (COCO's evaluation then counts at most 100 per image and class).
    pub fn coco() -> Self {
        let mut c = Self::voc();
        c.num_classes = 80;
        c.rpn.anchors = super::anchors::AnchorConfig::coco();
        c.rpn.smooth_l1_beta = 0.1111;
        c.rpn.post_nms_test = 1000;
        c
    }

    /// Checks the parts and resolves the backbone.
    pub fn validate(&self) -> Result<ResNetDepth, DetectionConfigError> {
        let depth: ResNetDepth = self.backbone.parse()?;
        let invalid = |field, value: String, expected| {
            Err(DetectionConfigError::Invalid {
                field,
                value,
                expected,
            })
        };
        if self.num_classes == 0 {
            return invalid("num_classes", "0".into(), "at least one object class");
        }
        if self.frozen_stages > 2 {
            return invalid(
                "frozen_stages",
                self.frozen_stages.to_string(),
                "0 (none), 1 (stem) or 2 (stem and layer1)",
            );
        }
        let stride = self.rpn.anchors.base_size as f32;
        if (self.roi.pool.spatial_scale * stride - 1.0).abs() > 1e-6 {
            return invalid(
                "roi.pool.spatial_scale",
                self.roi.pool.spatial_scale.to_string(),
                "1 / rpn.anchors.base_size (the layer3 stride, 16)",
            );
        }
        for (field, f) in [
            ("rpn.fg_fraction", self.rpn.fg_fraction),
            ("roi.fg_fraction", self.roi.fg_fraction),
        ] {
            if !(0.0..=1.0).contains(&f) {
                return invalid(field, f.to_string(), "a fraction in [0, 1]");
            }
        }
        Ok(depth)
    }

    /// A freshly initialised detector.
    pub fn init(&self, device: &Device) -> Result<FasterRcnn, DetectionConfigError> {
        let depth = self.validate()?;
        self.init_with_backbone(ResNet::new(depth, 1, device), device)
    }

    /// A detector around `backbone`, typically a torchvision ResNet with ImageNet weights
    /// ([`crate::load_state_dict`]): its stem and `layer1`..`layer3` extract features, its
    /// `layer4` becomes the RoI head, its `fc` is dropped; the RPN and predictors are fresh.
    pub fn init_with_backbone(
        &self,
        mut backbone: ResNet,
        device: &Device,
    ) -> Result<FasterRcnn, DetectionConfigError> {
        let depth = self.validate()?;
        if backbone.depth() != depth || backbone.layer4.is_empty() {
            return Err(DetectionConfigError::Invalid {
                field: "backbone",
                value: backbone.depth().to_string(),
                expected: "a complete ResNet of the configured depth",
            });
        }
        let layer4 = std::mem::take(&mut backbone.layer4);
        // The classifier has no role in detection; a one-output stand-in keeps the struct whole.
        backbone.fc = burn::nn::LinearConfig::new(1, 1).init(device);
        let rpn = RpnHead::new(backbone.out_channels(3), &self.rpn, self.head_init, device);
        let head_channels = backbone.out_channels(4);
        let mut roi_head = RoiHead::new(
            layer4,
            head_channels,
            self.num_classes,
            self.head_init,
            device,
        );
        if self.frozen_bn {
            backbone.bn1 = backbone.bn1.freeze();
            for layer in [
                &mut backbone.layer1,
                &mut backbone.layer2,
                &mut backbone.layer3,
            ] {
                freeze_block_norms(layer);
            }
            freeze_block_norms(&mut roi_head.layer4);
        }
        if self.frozen_stages >= 1 {
            backbone.conv1 = backbone.conv1.no_grad();
            backbone.bn1 = backbone.bn1.no_grad();
        }
        if self.frozen_stages >= 2 {
            backbone.layer1 = backbone.layer1.no_grad();
        }
        let model = FasterRcnn {
            backbone,
            rpn,
            roi_head,
            config: self.clone(),
        };
        Ok(afan_core::materialize(model))
    }
}

fn freeze_block_norms(blocks: &mut [Block]) {
    fn frozen(bn: &mut BatchNorm2d) {
        *bn = bn.clone().freeze();
    }
    for b in blocks {
        frozen(&mut b.bn1);
        frozen(&mut b.bn2);
        if let Some(bn3) = &mut b.bn3 {
            frozen(bn3);
        }
        if let Some(d) = &mut b.downsample {
            frozen(&mut d.bn);
        }
    }
}

/// Faster R-CNN, C4 layout.
///
/// `backbone` is a torchvision ResNet whose `layer4` was moved into [`RoiHead::layer4`] (its
/// `fc` is a one-output stand-in). For ImageNet weights, load them into a [`ResNet`] and build
/// the detector with [`FasterRcnnConfig::init_with_backbone`].
#[derive(Module, Debug)]
pub struct FasterRcnn {
    /// Stem and `layer1` .. `layer3`.
    pub backbone: ResNet,
    /// Region proposal network on `layer3`.
    pub rpn: RpnHead,
    /// `layer4` and the predictors.
    pub roi_head: RoiHead,
    /// The settings it was built with.
    #[module(skip)]
    pub config: FasterRcnnConfig,
}

impl FasterRcnn {
    /// The stem and `layer1` .. `layer{stage}` (stage 1..=3).
    pub fn features_to(&self, images: Tensor<4>, stage: usize) -> Tensor<4> {
        (1..=stage).fold(self.backbone.stem(images), |f, l| self.backbone.layer(l, f))
    }

    /// `layer{stage+1}` .. `layer3` on the output of `layer{stage}` (stage 1..=3).
    pub fn features_from(&self, feature: Tensor<4>, stage: usize) -> Tensor<4> {
        (stage + 1..=3).fold(feature, |f, l| self.backbone.layer(l, f))
    }

    /// Detections for padded `images` `[B, 3, H, W]` whose valid parts are `sizes`
    /// (`[height, width]` each), with the evaluation settings (6000/300 proposals, per-class NMS).
    /// The release evaluates one image at a time (`evaluator.py` L16), so each image's own size
    /// bounds its proposals and detections whatever `rpn.bounds` says.
    pub fn detect(&self, images: Tensor<4>, sizes: &[[usize; 2]]) -> Vec<Detections> {
        let [_, _, ih, iw] = images.dims();
        let feature = self.features_to(images, 3);
        let proposals = self.proposals(feature.clone(), [ih, iw], sizes, false);
        let rois: Vec<(usize, BBox)> = proposals
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.iter().map(move |b| (i, *b)))
            .collect();
        if rois.is_empty() {
            return vec![Detections::default(); sizes.len()];
        }
        let pooled = self.config.roi.pool_regions(feature, &rois);
        let (logits, deltas) = self.roi_head.forward(pooled, self.config.roi.head_pool);
        let deltas: Vec<f32> = host(deltas);
        let k4 = 4 * (self.config.num_classes + 1);
        let mut start = 0;
        proposals
            .iter()
            .zip(sizes)
            .map(|(p, size)| {
                let n = p.len();
                let out = self.config.roi.postprocess(
                    p,
                    logits.clone().slice(start..start + n),
                    &deltas[start * k4..(start + n) * k4],
                    *size,
                );
                start += n;
                out
            })
            .collect()
    }

    /// The RPN's proposals per image, from host copies of its outputs (no gradient): anchors
    /// over the `padded` batch (`[H, W]` of the image tensor), each image's proposals clipped
    /// to `bounds[i]`.
    pub fn proposals(
        &self,
        feature: Tensor<4>,
        padded: [usize; 2],
        bounds: &[[usize; 2]],
        training: bool,
    ) -> Vec<Vec<BBox>> {
        let [_, _, h, w] = feature.dims();
        let (logits, deltas) = self.rpn.forward(feature);
        let k = logits.dims()[2];
        self.proposals_from(
            &host(logits),
            k,
            &host(deltas),
            [[h, w], padded],
            bounds,
            training,
        )
    }

    /// Proposals from host logits (`k` per anchor) and deltas of a `feature_size` map over a
    /// `padded` batch (`[feature_size, padded]`), each image clipped to `bounds[i]`.
    pub(crate) fn proposals_from(
        &self,
        logits: &[f32],
        k: usize,
        deltas: &[f32],
        [feature_size, padded]: [[usize; 2]; 2],
        bounds: &[[usize; 2]],
        training: bool,
    ) -> Vec<Vec<BBox>> {
        let anchors = self.config.rpn.anchors_for(feature_size, padded);
        let n = anchors.len();
        bounds
            .iter()
            .enumerate()
            .map(|(i, size)| {
                // The ranking score: the sigmoid logit, or the release's object logit
                // (softmax over the anchors of `objectnesses[:, :, 1]`, a monotone map).
                let scores: Vec<f32> = (0..n).map(|a| logits[(i * n + a) * k + k - 1]).collect();
                self.config.rpn.proposals(
                    &scores,
                    &deltas[4 * i * n..4 * (i + 1) * n],
                    &anchors,
                    *size,
                    training,
                )
            })
            .collect()
    }
}

/// Each image's bounds in training per `bounds`: the padded batch or the image itself.
pub(crate) fn training_bounds(
    bounds: ImageBounds,
    sizes: &[[usize; 2]],
    padded: [usize; 2],
) -> Vec<[usize; 2]> {
    match bounds {
        ImageBounds::Padded => vec![padded; sizes.len()],
        ImageBounds::Image => sizes.to_vec(),
    }
}

/// A tensor's values on the host.
pub(crate) fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 data")
}

#[cfg(test)]
#[path = "faster_rcnn_tests.rs"]
mod tests;
