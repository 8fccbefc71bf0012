//! torchvision's MobileNetV2 (Sandler et al. 2018), with the output-stride control of the
//! segmentation release (VainF/DeepLabV3Plus-Pytorch): past the requested stride, stride-2 blocks
//! run at stride 1 and the depthwise convs that follow are dilated instead.
//!
//! Parameters follow torchvision's `features.N` layout; Rust fields cannot be called `0`, so
//! [`MobileNetV2::pytorch_key`] maps a Burn path (`features.4.expand.conv.weight`) to the state-dict
//! key (`features.4.conv.0.0.weight`) for [`crate::load_state_dict`]. `features.0` (the stem) is
//! [`MobileNetV2::stem`], `features.18` [`MobileNetV2::last`] and `classifier.1`
//! [`MobileNetV2::classifier`]; the last two are absent in a segmentation backbone.

use crate::layers::{ConvBn, ConvInit, conv_ext};
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Distribution, Tensor};

/// `(expand ratio t, channels c, repeats n, stride s)` of the inverted-residual stages.
const SETTING: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// torchvision's `_make_divisible(v, 8)`: the nearest multiple of 8, never 10% below `v`.
fn make_divisible(v: f64) -> usize {
    let d = 8.0;
    let mut new = ((v + d / 2.0) / d).floor() * d;
    new = new.max(d);
    if new < 0.9 * v {
        new += d;
    }
    new as usize
}

/// A depthwise-separable inverted residual: optional 1x1 expansion, 3x3 depthwise, 1x1 linear
/// projection, identity shortcut when shape is kept.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    /// 1x1 expansion + BN (+ ReLU6); absent for expand ratio 1 (torchvision `conv.0`).
    pub expand: Option<ConvBn>,
    /// 3x3 depthwise + BN (+ ReLU6) (`conv.0` or `conv.1`).
    pub depthwise: ConvBn,
    /// 1x1 linear projection + BN (`conv.1`/`conv.2` or `conv.2`/`conv.3`).
    pub project: ConvBn,
    /// Whether the input is added back (stride 1 and equal channels).
    pub residual: bool,
}

impl InvertedResidual {
    fn new(
        in_ch: usize,
        out_ch: usize,
        [stride, dilation, expand]: [usize; 3],
        device: &Device,
    ) -> Self {
        let hidden = in_ch * expand;
        let init = ConvInit::KaimingNormalFanOut;
        let pointwise = |i, o| ConvBn::new(conv_ext([i, o], 1, [1, 1, 1], init, device), o, device);
        let mut dw = conv_ext(
            [hidden, hidden],
            3,
            [stride, dilation, hidden],
            init,
            device,
        );
        // PyTorch's fan-out of a depthwise weight [C, 1, 3, 3] is C * 9; Burn divides by groups.
        let std = (2.0 / (hidden * 9) as f64).sqrt();
        dw.weight = Param::from_tensor(Tensor::random(
            [hidden, 1, 3, 3],
            Distribution::Normal(0.0, std),
            device,
        ));
        Self {
            expand: (expand != 1).then(|| pointwise(in_ch, hidden)),
            depthwise: ConvBn::new(dw, hidden, device),
            project: pointwise(hidden, out_ch),
            residual: stride == 1 && in_ch == out_ch,
        }
    }

    /// Runs the block on `[B, C, H, W]` (each ReLU6 inside the batch norm before it: see
    /// [`crate::norm`]).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = match &self.expand {
            Some(e) => e.forward_relu6(x.clone()),
            None => x.clone(),
        };
        let out = self.project.forward(self.depthwise.forward_relu6(h));
        if self.residual { out + x } else { out }
    }
}

/// MobileNetV2 without input normalization (callers apply the ImageNet mean/std).
#[derive(Module, Debug)]
pub struct MobileNetV2 {
    /// `features.0`: 3x3 stride-2 conv + BN + ReLU6.
    pub stem: ConvBn,
    /// `features.1` .. `features.17`.
    pub blocks: Vec<InvertedResidual>,
    /// `features.18`: 1x1 conv to 1280 channels + BN + ReLU6 (classification only).
    pub last: Option<ConvBn>,
    /// `classifier.1` (after dropout 0.2 in torchvision; classification only).
    pub classifier: Option<Linear>,
}

/// Which feature indices end a resolution stage: strides 4, 8, 16, 32 (before dilation).
pub const MOBILENET_STAGE_ENDS: [usize; 4] = [3, 6, 13, 17];

impl MobileNetV2 {
    /// torchvision's `mobilenet_v2(num_classes, width_mult)` at output stride 32.
    pub fn classifier(num_classes: usize, width_mult: f64, device: &Device) -> Self {
        let mut net = Self::backbone(width_mult, 32, device);
        let in_ch = make_divisible(SETTING[6].1 as f64 * width_mult);
        let last_ch = make_divisible(1280.0 * width_mult.max(1.0));
        let init = ConvInit::KaimingNormalFanOut;
        net.last = Some(ConvBn::new(
            conv_ext([in_ch, last_ch], 1, [1, 1, 1], init, device),
            last_ch,
            device,
        ));
        let mut fc = LinearConfig::new(last_ch, num_classes)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.01,
            })
            .init(device);
        fc.bias = Some(Param::from_tensor(Tensor::zeros([num_classes], device)));
        net.classifier = Some(fc);
        net
    }

    /// `features.0..=17` for dense prediction at `output_stride` (8, 16 or 32), as the release's
    /// `MobileNetV2(output_stride=...)`: once the stride is reached, a stage keeps stride 1 and
    /// its blocks (after the first) use a dilation multiplied by the stage's stride.
    pub fn backbone(width_mult: f64, output_stride: usize, device: &Device) -> Self {
        let init = ConvInit::KaimingNormalFanOut;
        let mut in_ch = make_divisible(32.0 * width_mult);
        let stem = ConvBn::new(
            conv_ext([3, in_ch], 3, [2, 1, 1], init, device),
            in_ch,
            device,
        );
        let (mut current, mut dilation) = (2, 1);
        let mut blocks = Vec::new();
        for (t, c, n, s) in SETTING {
            let out_ch = make_divisible(c as f64 * width_mult);
            let previous = dilation;
            let stride = if current == output_stride {
                dilation *= s;
                1
            } else {
                current *= s;
                s
            };
            for i in 0..n {
                let (st, d) = if i == 0 {
                    (stride, previous)
                } else {
                    (1, dilation)
                };
                blocks.push(InvertedResidual::new(in_ch, out_ch, [st, d, t], device));
                in_ch = out_ch;
            }
        }
        Self {
            stem,
            blocks,
            last: None,
            classifier: None,
        }
    }

    /// Output channels of `features.index` (1..=17).
    pub fn channels(&self, index: usize) -> usize {
        self.blocks[index - 1].project.bn.weight.lazy_shape()[0]
    }

    /// Runs `features.from ..= features.to` (0 is the stem) on the output of `features.(from-1)`.
    pub fn features(&self, x: Tensor<4>, from: usize, to: usize) -> Tensor<4> {
        let x = if from == 0 {
            self.stem.forward_relu6(x)
        } else {
            x
        };
        self.blocks[from.max(1) - 1..to]
            .iter()
            .fold(x, |f, b| b.forward(f))
    }

    /// The classifier: all features, `features.18`, global average pool, `classifier.1`.
    ///
    /// # Panics
    /// On a segmentation backbone (built without the head).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.head(self.features(x, 0, self.blocks.len()))
    }

    /// `features.18`, global average pool, `classifier.1`, on the output of `features.17`.
    fn head(&self, f: Tensor<4>) -> Tensor<2> {
        let (last, fc) = (
            self.last
                .as_ref()
                .expect("built by MobileNetV2::classifier"),
            self.classifier
                .as_ref()
                .expect("built by MobileNetV2::classifier"),
        );
        let f = last.forward_relu6(f);
        let [b, c, _, _] = f.dims();
        fc.forward(f.mean_dim(2).mean_dim(3).reshape([b, c]))
    }

    /// The torchvision state-dict key of a Burn parameter path. (Only `features.1`, expand ratio
    /// 1, lacks the expansion conv, which shifts the indices inside torchvision's `conv`.)
    pub fn pytorch_key(path: &str) -> String {
        let conv_bn = |rest: &str| rest.replacen("conv.", "0.", 1).replacen("bn.", "1.", 1);
        if let Some(rest) = path.strip_prefix("stem.") {
            return format!("features.0.{}", conv_bn(rest));
        }
        if let Some(rest) = path.strip_prefix("last.") {
            return format!("features.18.{}", conv_bn(rest));
        }
        if let Some(rest) = path.strip_prefix("classifier.") {
            return format!("classifier.1.{rest}");
        }
        let Some(rest) = path.strip_prefix("blocks.") else {
            return path.to_string();
        };
        let (index, rest) = rest.split_once('.').unwrap_or((rest, ""));
        let i: usize = index.parse().unwrap_or(0);
        let shift = usize::from(i > 0);
        let (part, rest) = rest.split_once('.').unwrap_or((rest, ""));
        let key = match (part, rest.split_once('.')) {
            ("expand", _) => format!("conv.0.{}", conv_bn(rest)),
            ("depthwise", _) => format!("conv.{shift}.{}", conv_bn(rest)),
            ("project", Some(("conv", p))) => format!("conv.{}.{p}", shift + 1),
            ("project", Some(("bn", p))) => format!("conv.{}.{p}", shift + 2),
            _ => format!("{part}.{rest}"),
        };
        format!("features.{}.{key}", i + 1)
    }
}

/// As a classifier: cut after any `features.N` (0 = stem, 17 = the last inverted residual).
impl afan_core::SplitModel for MobileNetV2 {
    type Input = Tensor<4>;
    type Output = Tensor<2>;

    fn model_name(&self) -> String {
        "mobilenet_v2".into()
    }
    fn split_points(&self) -> Vec<String> {
        (0..=self.blocks.len())
            .map(|i| format!("features.{i}"))
            .collect()
    }
    fn forward(&self, input: Tensor<4>) -> Tensor<2> {
        MobileNetV2::forward(self, input)
    }
    fn forward_to(&self, input: Tensor<4>, point: &afan_core::SplitPoint) -> Tensor<4> {
        self.features(input, 0, point.index)
    }
    fn forward_from(&self, feature: Tensor<4>, point: &afan_core::SplitPoint) -> Tensor<2> {
        let f = self.features(feature, point.index + 1, self.blocks.len());
        self.head(f)
    }
}

/// torchvision's names (see [`MobileNetV2::pytorch_key`]).
impl crate::import::PytorchImport for MobileNetV2 {
    fn import_name(&self) -> String {
        "mobilenet_v2".into()
    }
    fn pytorch_key(&self, path: &str) -> String {
        MobileNetV2::pytorch_key(path)
    }
}

#[cfg(test)]
#[path = "mobilenet_v2_tests.rs"]
mod tests;
