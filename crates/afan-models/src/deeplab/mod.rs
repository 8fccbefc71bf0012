//! DeepLabV3+ (Chen et al. 2018) as the A-FAN segmentation release trains it
//! (VainF/DeepLabV3Plus-Pytorch): a ResNet-50/101 or MobileNetV2 backbone at output stride 16 or
//! 8, ASPP, and a decoder fed by the stride-4 low-level feature.
//!
//! The model's output — for [`SplitModel`] as for [`DeepLabV3Plus::forward`] — is the logits at
//! stride 4, the resolution of the decoder; [`DeepLabV3Plus::predict`] and the training loss
//! upsample them bilinearly to the input size (`align_corners=False`), which is the release's
//! final `F.interpolate` moved out of the model: a split point's tail cannot know the input size.
//!
//! Split points: the four backbone stages (`layer1`..`layer4`, for MobileNetV2 `features.3`,
//! `features.6`, `features.13`, `features.17`), the ASPP output (`aspp`) and the decoder input
//! (`decoder`, the concatenated 304 channels). Past `layer1` the feature carries the skip
//! connection too (see [`mod@pack`]).

pub mod afan;
mod aspp;
mod decoder;
mod momentum;
pub mod pack;
mod pretrained;

#[cfg(test)]
mod release_tests;
#[cfg(test)]
mod tests;

pub use afan::{
    SegmentationAfanConfig, SegmentationAfanError, SkipFeature, segmentation_afan_objective,
};
pub use aspp::{ASPP_CHANNELS, Aspp};
pub use decoder::{DeepLabHead, LOW_LEVEL_CHANNELS, upsample_bilinear};
pub use momentum::RELEASE_BACKBONE_BN_MOMENTUM;
pub use pretrained::{release_key, resnet_key};

use crate::mobilenet_v2::{MOBILENET_STAGE_ENDS, MobileNetV2};
use crate::resnet::{ResNet, ResNetDepth, ResNetOptions};
use afan_core::{SplitModel, SplitPoint};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use pack::{pack, unpack};

/// Which backbone, with its size (`"resnet50"`, `"resnet101"`, `{ mobilenet_v2 = { width_mult
/// = 1.0 } }` in a config).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeepLabBackbone {
    /// ResNet-50: low-level feature `layer1`, deep `layer4`.
    Resnet50,
    /// ResNet-101.
    Resnet101,
    /// MobileNetV2 at a width multiplier (release: 1.0): low-level `features.3`, deep
    /// `features.17`.
    MobilenetV2 {
        /// Width multiplier.
        width_mult: f64,
    },
}

/// Everything that fixes a DeepLabV3+ architecture.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeepLabConfig {
    /// The backbone.
    pub backbone: DeepLabBackbone,
    /// Number of classes (21 for VOC, 19 for Cityscapes).
    pub num_classes: usize,
    /// 16 (release default; ASPP rates 6/12/18) or 8 (rates 12/24/36).
    pub output_stride: usize,
    /// Channels of the ASPP branches and of the decoder's 3x3 conv (release: 256; smaller only
    /// for tests and toy runs).
    #[serde(default = "default_aspp_channels")]
    pub aspp_channels: usize,
}

fn default_aspp_channels() -> usize {
    ASPP_CHANNELS
}

impl DeepLabConfig {
    /// ASPP rates of the output stride.
    pub fn aspp_rates(&self) -> [usize; 3] {
        if self.output_stride == 8 {
            [12, 24, 36]
        } else {
            [6, 12, 18]
        }
    }

    /// A freshly initialised model (backbone as torchvision initialises it, head as the release).
    ///
    /// # Panics
    /// If the output stride is not 8 or 16.
    pub fn init(&self, device: &Device) -> DeepLabV3Plus {
        assert!(
            matches!(self.output_stride, 8 | 16),
            "DeepLabV3+ output stride must be 8 or 16, not {}",
            self.output_stride
        );
        let (resnet, mobilenet, in_ch, low_ch) = match self.backbone {
            DeepLabBackbone::Resnet50 | DeepLabBackbone::Resnet101 => {
                let depth = if self.backbone == DeepLabBackbone::Resnet50 {
                    ResNetDepth::R50
                } else {
                    ResNetDepth::R101
                };
                let flags = [false, self.output_stride == 8, true];
                // The classification layer is never run; one output keeps it negligible.
                let options = ResNetOptions::default().with_replace_stride_with_dilation(flags);
                let r = ResNet::with_options(depth, 1, options, device);
                let (c4, c1) = (r.out_channels(4), r.out_channels(1));
                (Some(r), None, c4, c1)
            }
            DeepLabBackbone::MobilenetV2 { width_mult } => {
                let m = MobileNetV2::backbone(width_mult, self.output_stride, device);
                let (c4, c1) = (m.channels(17), m.channels(3));
                (None, Some(m), c4, c1)
            }
        };
        DeepLabV3Plus {
            resnet,
            mobilenet,
            head: DeepLabHead::new(
                [in_ch, low_ch, self.aspp_channels],
                self.num_classes,
                self.aspp_rates(),
                device,
            ),
            output_stride: self.output_stride,
            num_classes: self.num_classes,
        }
    }
}

/// DeepLabV3+; exactly one of the two backbones is present.
#[derive(Module, Debug)]
pub struct DeepLabV3Plus {
    /// ResNet backbone (stage outputs `layer1`..`layer4`).
    pub resnet: Option<ResNet>,
    /// MobileNetV2 backbone (`features.0..=17`).
    pub mobilenet: Option<MobileNetV2>,
    /// ASPP and decoder.
    pub head: DeepLabHead,
    output_stride: usize,
    num_classes: usize,
}

/// Index of the `aspp` point; the four stages come before it, `decoder` after.
const ASPP: usize = 4;
const DECODER: usize = 5;

impl DeepLabV3Plus {
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// 8 or 16.
    pub fn output_stride(&self) -> usize {
        self.output_stride
    }

    /// Stride of backbone stage `s` (1..=4) over the low-level feature's stride 4.
    fn ratio(&self, stage: usize) -> usize {
        (4usize << (stage - 1)).min(self.output_stride) / 4
    }

    fn stage_channels(&self, stage: usize) -> usize {
        match (&self.resnet, &self.mobilenet) {
            (Some(r), _) => r.out_channels(stage),
            (_, Some(m)) => m.channels(MOBILENET_STAGE_ENDS[stage - 1]),
            _ => unreachable!("a DeepLabV3Plus has a backbone"),
        }
    }

    /// Runs backbone stage `stage` (1..=4; stage 1 includes the stem) on the previous output.
    fn stage(&self, stage: usize, x: Tensor<4>) -> Tensor<4> {
        match (&self.resnet, &self.mobilenet) {
            (Some(r), _) if stage == 1 => r.layer(1, r.stem(x)),
            (Some(r), _) => r.layer(stage, x),
            (_, Some(m)) => {
                let from = if stage == 1 {
                    0
                } else {
                    MOBILENET_STAGE_ENDS[stage - 2] + 1
                };
                m.features(x, from, MOBILENET_STAGE_ENDS[stage - 1])
            }
            _ => unreachable!("a DeepLabV3Plus has a backbone"),
        }
    }

    /// Stages `from..=4` on `x`.
    fn stages(&self, x: Tensor<4>, from: usize) -> Tensor<4> {
        (from..=4).fold(x, |f, s| self.stage(s, f))
    }

    fn decode(&self, deep: Tensor<4>, low: Tensor<4>) -> Tensor<4> {
        let aspp = self.head.aspp.forward(deep);
        self.head.classify(self.head.decoder_input(aspp, low))
    }

    /// The release's head pass to `point` (`network/backbone/resnet.py` L201-253,
    /// `network/utils.py` L31-36): the feature there and, separately, the low-level (stride-4)
    /// feature of the same pass, which the release hands to the tail unperturbed.
    pub fn forward_to_parts(&self, input: Tensor<4>, point: &SplitPoint) -> (Tensor<4>, Tensor<4>) {
        let low = self.stage(1, input);
        let feature = match point.index {
            0 => low.clone(),
            s @ 1..=3 => (2..=s + 1).fold(low.clone(), |f, st| self.stage(st, f)),
            ASPP => self.head.aspp.forward(self.stages(low.clone(), 2)),
            DECODER => {
                let aspp = self.head.aspp.forward(self.stages(low.clone(), 2));
                self.head.decoder_input(aspp, low.clone())
            }
            i => panic!("DeepLabV3Plus has no split point {i}"),
        };
        (feature, low)
    }

    /// The release's tail pass from `point` (`resnet.py` L255-286 `flag == 'tail'`,
    /// `_deeplab.py` L61-78 `aspp_tail` / `concat_tail`): the rest of the network on `feature`
    /// with `low` as the skip connection (unused past the decoder's concatenation).
    pub fn forward_from_parts(
        &self,
        feature: Tensor<4>,
        low: Tensor<4>,
        point: &SplitPoint,
    ) -> Tensor<4> {
        match point.index {
            s @ 0..=3 => self.decode(self.stages(feature, s + 2), low),
            ASPP => self.head.classify(self.head.decoder_input(feature, low)),
            DECODER => self.head.classify(feature),
            i => panic!("DeepLabV3Plus has no split point {i}"),
        }
    }

    /// Logits upsampled to the input size: what the release's model returns.
    pub fn predict(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        upsample_bilinear(self.forward(x), [h, w])
    }
}

impl SplitModel for DeepLabV3Plus {
    type Input = Tensor<4>;
    /// Logits at stride 4 (see the module documentation).
    type Output = Tensor<4>;

    fn model_name(&self) -> String {
        let backbone = match &self.resnet {
            Some(r) => r.depth().name().to_string(),
            None => "mobilenet_v2".to_string(),
        };
        format!("deeplabv3plus_{backbone}_os{}", self.output_stride)
    }

    fn split_points(&self) -> Vec<String> {
        let mut points: Vec<String> = match &self.resnet {
            Some(_) => (1..=4).map(|s| format!("layer{s}")).collect(),
            None => MOBILENET_STAGE_ENDS
                .iter()
                .map(|i| format!("features.{i}"))
                .collect(),
        };
        points.extend(["aspp".to_string(), "decoder".to_string()]);
        points
    }

    fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let low = self.stage(1, input);
        let deep = self.stages(low.clone(), 2);
        self.decode(deep, low)
    }

    fn forward_to(&self, input: Tensor<4>, point: &SplitPoint) -> Tensor<4> {
        let low = self.stage(1, input);
        match point.index {
            0 => low,
            s @ 1..=3 => {
                let deep = (2..=s + 1).fold(low.clone(), |f, st| self.stage(st, f));
                pack(deep, low, self.ratio(s + 1))
            }
            ASPP => {
                let aspp = self.head.aspp.forward(self.stages(low.clone(), 2));
                pack(aspp, low, self.output_stride / 4)
            }
            DECODER => {
                let aspp = self.head.aspp.forward(self.stages(low.clone(), 2));
                self.head.decoder_input(aspp, low)
            }
            i => panic!("DeepLabV3Plus has no split point {i}"),
        }
    }

    fn forward_from(&self, feature: Tensor<4>, point: &SplitPoint) -> Tensor<4> {
        match point.index {
            0 => {
                let deep = self.stages(feature.clone(), 2);
                self.decode(deep, feature)
            }
            s @ 1..=3 => {
                let (deep, low) = unpack(feature, self.stage_channels(s + 1), self.ratio(s + 1));
                self.decode(self.stages(deep, s + 2), low)
            }
            ASPP => {
                let (aspp, low) = unpack(feature, self.head.aspp.channels, self.output_stride / 4);
                self.head.classify(self.head.decoder_input(aspp, low))
            }
            DECODER => self.head.classify(feature),
            i => panic!("DeepLabV3Plus has no split point {i}"),
        }
    }
}
