//! The DeepLabV3+ head (Chen et al. 2018, the release's `DeepLabHeadV3Plus`): ASPP on the deep
//! feature, upsampled to the low-level (stride-4) feature reduced to 48 channels, concatenated,
//! then a 3x3 conv and a 1x1 classifier.

use super::aspp::Aspp;
use crate::layers::{ConvBn, ConvInit, conv_ext};
use burn::module::{Module, Param};
use burn::nn::conv::Conv2dConfig;
use burn::tensor::{Device, Distribution, Tensor};

/// Channels the low-level feature is reduced to.
pub const LOW_LEVEL_CHANNELS: usize = 48;

/// `F.interpolate(x, size, mode="bilinear", align_corners=False)`: Burn's default is
/// `align_corners = true`, so it is set explicitly.
pub fn upsample_bilinear(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    crate::upsample::resize_bilinear(x, size, false)
}

/// ASPP, low-level projection and classifier.
#[derive(Module, Debug)]
pub struct DeepLabHead {
    /// 1x1 conv of the low-level feature to 48 channels, BN, ReLU (release `project`).
    pub project: ConvBn,
    /// ASPP on the deep feature.
    pub aspp: Aspp,
    /// 3x3 conv of the 304 concatenated channels to 256, BN, ReLU (release `classifier.0/1`).
    pub fuse: ConvBn,
    /// 1x1 conv to the classes, with bias (release `classifier.3`).
    pub classifier: crate::conv::Conv2d,
}

impl DeepLabHead {
    /// A head for `in_ch` deep and `low_ch` low-level channels with `c`-channel ASPP and fusion
    /// (release: 256), initialised as the release's
    /// `_init_weight` does (`kaiming_normal_` fan-in convs, BN weight 1 and bias 0; the classifier
    /// bias keeps PyTorch's default `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`).
    pub fn new(
        [in_ch, low_ch, c]: [usize; 3],
        num_classes: usize,
        rates: [usize; 3],
        device: &Device,
    ) -> Self {
        let init = ConvInit::KaimingNormalFanIn;
        let low = LOW_LEVEL_CHANNELS;
        let mut classifier = Conv2dConfig::new([c, num_classes], [1, 1])
            .with_initializer(burn::nn::Initializer::KaimingNormal {
                gain: std::f64::consts::SQRT_2,
                fan_out_only: false,
            })
            .init(device);
        let bound = 1.0 / (c as f64).sqrt();
        classifier.bias = Some(Param::from_tensor(Tensor::random(
            [num_classes],
            Distribution::Uniform(-bound, bound),
            device,
        )));
        Self {
            project: ConvBn::new(
                conv_ext([low_ch, low], 1, [1, 1, 1], init, device),
                low,
                device,
            ),
            aspp: Aspp::new(in_ch, c, rates, device),
            fuse: ConvBn::new(
                conv_ext([low + c, c], 3, [1, 1, 1], init, device),
                c,
                device,
            ),
            classifier: classifier.into(),
        }
    }

    /// The decoder input: `cat([project(low), upsample(aspp_out)])`, 304 channels at stride 4.
    pub fn decoder_input(&self, aspp_out: Tensor<4>, low: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = low.dims();
        let low = self.project.forward_relu(low);
        Tensor::cat(vec![low, upsample_bilinear(aspp_out, [h, w])], 1)
    }

    /// Logits at stride 4 from the decoder input.
    pub fn classify(&self, decoder_input: Tensor<4>) -> Tensor<4> {
        self.classifier
            .forward(self.fuse.forward_relu(decoder_input))
    }
}
