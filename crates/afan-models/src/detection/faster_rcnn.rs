//! Faster R-CNN in the C4 layout of the release: a torchvision ResNet up to `layer3` (stride 16)
//! extracts features, the RPN proposes regions on them, and `layer4` is the RoI head.

use super::boxes::BBox;
use super::roi_heads::{Detections, RoiHead, RoiHeadConfig};
use super::rpn::{RpnConfig, RpnHead};
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
    /// Pascal VOC: ResNet-101, 20 classes, anchors 128-512.
    pub fn voc() -> Self {
        Self {
            backbone: "resnet101".into(),
            num_classes: 20,
            rpn: RpnConfig::default(),
            roi: RoiHeadConfig::default(),
            frozen_bn: true,
            frozen_stages: 2,
        }
    }

    /// COCO: 80 classes and the extra 64-pixel anchor scale.
    pub fn coco() -> Self {
        let mut c = Self::voc();
        c.num_classes = 80;
        c.rpn.anchors = super::anchors::AnchorConfig::coco();
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
        let rpn = RpnHead::new(backbone.out_channels(3), &self.rpn, device);
        let head_channels = backbone.out_channels(4);
        let mut roi_head = RoiHead::new(layer4, head_channels, self.num_classes, device);
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
    pub fn detect(&self, images: Tensor<4>, sizes: &[[usize; 2]]) -> Vec<Detections> {
        let feature = self.features_to(images, 3);
        let proposals = self.proposals(feature.clone(), sizes, false);
        let rois: Vec<(usize, BBox)> = proposals
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.iter().map(move |b| (i, *b)))
            .collect();
        if rois.is_empty() {
            return vec![Detections::default(); sizes.len()];
        }
        let pooled = super::roi_heads::pool_f32(&self.config.roi.pool, feature, &rois);
        let (logits, deltas) = self.roi_head.forward(pooled);
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

    /// The RPN's proposals per image, from host copies of its outputs (no gradient).
    pub fn proposals(
        &self,
        feature: Tensor<4>,
        sizes: &[[usize; 2]],
        training: bool,
    ) -> Vec<Vec<BBox>> {
        let [_, _, h, w] = feature.dims();
        let (logits, deltas) = self.rpn.forward(feature);
        self.proposals_from(&host(logits), &host(deltas), [h, w], sizes, training)
    }

    pub(crate) fn proposals_from(
        &self,
        logits: &[f32],
        deltas: &[f32],
        feature_size: [usize; 2],
        sizes: &[[usize; 2]],
        training: bool,
    ) -> Vec<Vec<BBox>> {
        let anchors = self.config.rpn.anchors.grid_anchors(feature_size);
        let n = anchors.len();
        sizes
            .iter()
            .enumerate()
            .map(|(i, size)| {
                self.config.rpn.proposals(
                    &logits[i * n..(i + 1) * n],
                    &deltas[4 * i * n..4 * (i + 1) * n],
                    &anchors,
                    *size,
                    training,
                )
            })
            .collect()
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
