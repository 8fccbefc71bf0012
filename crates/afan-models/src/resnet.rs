//! torchvision's ImageNet ResNets (He et al. 2016, as `torchvision.models.resnet` builds them):
//! ResNet-18/34 with basic blocks, ResNet-50/101/152 with bottlenecks that carry their stride on
//! the 3x3 conv (ResNet v1.5), projection ("option B") shortcuts, and torchvision's initialisation.
//!
//! Field names follow torchvision's module names, so a PyTorch state dict maps onto this model key
//! for key (`layer3.4.conv2.weight`, `bn1.running_var`, `fc.bias`), with two exceptions:
//!
//! - torchvision's `downsample` is an `nn.Sequential`, whose children are `downsample.0` (the 1x1
//!   conv) and `downsample.1` (its BatchNorm). Rust fields cannot be named `0`, so they are
//!   [`Downsample::conv`] and [`Downsample::bn`]: map `downsample.0.*` to `downsample.conv.*` and
//!   `downsample.1.*` to `downsample.bn.*`.
//! - PyTorch's BatchNorm also stores `num_batches_tracked`, which nothing here uses; drop it.
//!
//! (Burn's `Linear` stores its weight as `[in, out]`, the transpose of PyTorch's; importers that
//! know PyTorch, such as burn-store's PyTorch adapter, transpose it.)
//!
//! The model does not normalize its input: as with torchvision, callers subtract
//! [`IMAGENET_MEAN`] and divide by [`IMAGENET_STD`] outside the model.

use crate::conv::Conv2d;
use crate::layers::{ConvInit, conv};
use crate::norm::{BatchNorm2d, BatchNorm2dConfig};
use afan_core::{SplitModel, SplitPoint};
use burn::module::{Module, Param};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use std::fmt;
use std::str::FromStr;

/// The stem's max pool (torchvision's `maxpool`: 3x3, stride 2, padding 1).
const STEM_POOL: crate::pool::Pool2d = crate::pool::Pool2d {
    kernel: [3, 3],
    stride: [2, 2],
    padding: [1, 1],
};

/// Per-channel mean of the ImageNet training images (torchvision's `Normalize`).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// Per-channel standard deviation of the ImageNet training images (torchvision's `Normalize`).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The five ResNets of torchvision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResNetDepth {
    /// ResNet-18: basic blocks `[2, 2, 2, 2]`.
    R18,
    /// ResNet-34: basic blocks `[3, 4, 6, 3]`.
    R34,
    /// ResNet-50: bottlenecks `[3, 4, 6, 3]`.
    R50,
    /// ResNet-101: bottlenecks `[3, 4, 23, 3]`.
    R101,
    /// ResNet-152: bottlenecks `[3, 8, 36, 3]`.
    R152,
}

/// A name that is not one of the ResNets.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("unknown ResNet `{name}`; valid names: {}", ResNetDepth::names().join(", "))]
pub struct UnknownResNetDepth {
    /// The name as given.
    pub name: String,
}

impl ResNetDepth {
    /// Every depth, shallowest first.
    pub const ALL: [ResNetDepth; 5] = [Self::R18, Self::R34, Self::R50, Self::R101, Self::R152];

    /// The canonical names (`resnet18` .. `resnet152`), for messages and `--help`.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|d| d.name()).collect()
    }

    /// The canonical name (`resnet50`).
    pub fn name(self) -> &'static str {
        match self {
            Self::R18 => "resnet18",
            Self::R34 => "resnet34",
            Self::R50 => "resnet50",
            Self::R101 => "resnet101",
            Self::R152 => "resnet152",
        }
    }

    /// Number of weighted layers (18, 34, 50, 101, 152).
    pub fn depth(self) -> usize {
        match self {
            Self::R18 => 18,
            Self::R34 => 34,
            Self::R50 => 50,
            Self::R101 => 101,
            Self::R152 => 152,
        }
    }

    /// Blocks in `layer1` .. `layer4`.
    pub fn blocks(self) -> [usize; 4] {
        match self {
            Self::R18 => [2, 2, 2, 2],
            Self::R34 | Self::R50 => [3, 4, 6, 3],
            Self::R101 => [3, 4, 23, 3],
            Self::R152 => [3, 8, 36, 3],
        }
    }

    /// Whether the blocks are bottlenecks (ResNet-50 and deeper) rather than basic blocks.
    pub fn bottleneck(self) -> bool {
        matches!(self, Self::R50 | Self::R101 | Self::R152)
    }

    /// Output channels of a block over its width (`block.expansion` in torchvision: 4 or 1).
    pub fn expansion(self) -> usize {
        if self.bottleneck() { 4 } else { 1 }
    }

    fn from_depth(depth: usize) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.depth() == depth)
    }
}

impl FromStr for ResNetDepth {
    type Err = UnknownResNetDepth;

    /// Parses `resnet18` .. `resnet152` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|d| d.name() == lower)
            .ok_or_else(|| UnknownResNetDepth {
                name: s.to_string(),
            })
    }
}

impl fmt::Display for ResNetDepth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// torchvision's optional arguments of `ResNet.__init__`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResNetOptions {
    /// Start the last BatchNorm of every residual branch at weight 0, so each block begins as
    /// the identity (Goyal et al. 2017). torchvision's default: off.
    pub zero_init_residual: bool,
    /// For `layer2`, `layer3`, `layer4`: keep the layer at stride 1 and dilate its 3x3 convs
    /// instead (see [`ResNet::replace_stride_with_dilation`]). Bottleneck ResNets only.
    pub replace_stride_with_dilation: [bool; 3],
}

impl ResNetOptions {
    /// Sets [`ResNetOptions::zero_init_residual`].
    pub fn with_zero_init_residual(mut self, zero_init_residual: bool) -> Self {
        self.zero_init_residual = zero_init_residual;
        self
    }

    /// Sets [`ResNetOptions::replace_stride_with_dilation`].
    pub fn with_replace_stride_with_dilation(mut self, flags: [bool; 3]) -> Self {
        self.replace_stride_with_dilation = flags;
        self
    }
}

/// A PyTorch-initialised BatchNorm: weight 1 (or 0 for a zero-initialised residual), bias 0.
fn batch_norm(channels: usize, zero_weight: bool, device: &Device) -> BatchNorm2d {
    let mut bn = BatchNorm2dConfig::new(channels).init(device);
    if zero_weight {
        bn.weight = Param::from_tensor(Tensor::zeros([channels], device));
    }
    bn
}

/// Makes a 3x3 conv use `stride` and `dilation`, with padding `dilation` (torchvision's
/// `conv3x3`), keeping its weights.
fn set_stride_dilation(conv: &mut Conv2d, stride: usize, dilation: usize) {
    conv.stride = [stride, stride];
    conv.dilation = [dilation, dilation];
    conv.padding = PaddingConfig2d::Explicit(dilation, dilation, dilation, dilation);
}

/// The projection shortcut: a strided 1x1 conv and a BatchNorm (torchvision's `downsample`
/// Sequential; `downsample.0` is [`Downsample::conv`], `downsample.1` is [`Downsample::bn`]).
#[derive(Module, Debug)]
pub struct Downsample {
    /// 1x1 conv, no bias (torchvision `downsample.0`).
    pub conv: Conv2d,
    /// Its BatchNorm (torchvision `downsample.1`).
    pub bn: BatchNorm2d,
}

impl Downsample {
    fn new(in_ch: usize, out_ch: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv: conv(
                in_ch,
                out_ch,
                1,
                stride,
                ConvInit::KaimingNormalFanOut,
                device,
            )
            .into(),
            bn: batch_norm(out_ch, false, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.bn.forward(self.conv.forward(x))
    }
}

/// A residual block: torchvision's `BasicBlock` (`conv3`/`bn3` absent) or `Bottleneck`.
///
/// One struct rather than an enum, because Burn puts an enum's variant name into module paths and
/// the paths must stay torchvision's (`layer1.0.conv1.weight`).
///
/// - Basic: `conv1` 3x3 (stride), `bn1`, relu, `conv2` 3x3, `bn2`, + shortcut, relu.
/// - Bottleneck: `conv1` 1x1, `bn1`, relu, `conv2` 3x3 (stride, dilation), `bn2`, relu, `conv3`
///   1x1 to 4x the width, `bn3`, + shortcut, relu.
#[derive(Module, Debug)]
pub struct Block {
    /// First conv (3x3 with the stride in a basic block, 1x1 in a bottleneck).
    pub conv1: Conv2d,
    /// BatchNorm after `conv1`.
    pub bn1: BatchNorm2d,
    /// Second conv (3x3; carries the stride and dilation in a bottleneck).
    pub conv2: Conv2d,
    /// BatchNorm after `conv2`.
    pub bn2: BatchNorm2d,
    /// Bottleneck only: the expanding 1x1 conv.
    pub conv3: Option<Conv2d>,
    /// Bottleneck only: BatchNorm after `conv3`.
    pub bn3: Option<BatchNorm2d>,
    /// Projection shortcut where the stride or the channel count changes.
    pub downsample: Option<Downsample>,
}

impl Block {
    fn basic(in_ch: usize, planes: usize, stride: usize, zero: bool, device: &Device) -> Self {
        let init = ConvInit::KaimingNormalFanOut;
        Self {
            conv1: conv(in_ch, planes, 3, stride, init, device).into(),
            bn1: batch_norm(planes, false, device),
            conv2: conv(planes, planes, 3, 1, init, device).into(),
            bn2: batch_norm(planes, zero, device),
            conv3: None,
            bn3: None,
            downsample: (stride != 1 || in_ch != planes)
                .then(|| Downsample::new(in_ch, planes, stride, device)),
        }
    }

    fn bottleneck(in_ch: usize, planes: usize, stride: usize, zero: bool, device: &Device) -> Self {
        let init = ConvInit::KaimingNormalFanOut;
        let out_ch = 4 * planes;
        Self {
            conv1: conv(in_ch, planes, 1, 1, init, device).into(),
            bn1: batch_norm(planes, false, device),
            conv2: conv(planes, planes, 3, stride, init, device).into(),
            bn2: batch_norm(planes, false, device),
            conv3: Some(conv(planes, out_ch, 1, 1, init, device).into()),
            bn3: Some(batch_norm(out_ch, zero, device)),
            downsample: (stride != 1 || in_ch != out_ch)
                .then(|| Downsample::new(in_ch, out_ch, stride, device)),
        }
    }

    /// Runs the block on `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(downsample) => downsample.forward(x.clone()),
            None => x.clone(),
        };
        let out = self.bn1.forward_relu(self.conv1.forward(x));
        match (&self.conv3, &self.bn3) {
            (Some(conv3), Some(bn3)) => {
                let out = self.bn2.forward_relu(self.conv2.forward(out));
                bn3.forward_add_relu(conv3.forward(out), identity)
            }
            _ => self.bn2.forward_add_relu(self.conv2.forward(out), identity),
        }
    }

    /// The 3x3 conv that carries the block's stride: `conv2` in a bottleneck (v1.5), `conv1` in
    /// a basic block.
    fn strided_conv(&self) -> &Conv2d {
        if self.conv3.is_some() {
            &self.conv2
        } else {
            &self.conv1
        }
    }

    /// Sets the block's stride and the dilation of its 3x3 convs, as torchvision's `_make_layer`
    /// would have built them.
    fn set_stride_dilation(&mut self, stride: usize, dilation: usize) {
        if self.conv3.is_some() {
            set_stride_dilation(&mut self.conv2, stride, dilation);
        } else {
            assert_eq!(
                dilation, 1,
                "dilation > 1 is not supported in BasicBlock (as in torchvision)"
            );
            set_stride_dilation(&mut self.conv1, stride, 1);
        }
        if let Some(downsample) = &mut self.downsample {
            downsample.conv.stride = [stride, stride];
        }
    }
}

/// torchvision's ImageNet ResNet, without input normalization (see [`IMAGENET_MEAN`]).
#[derive(Module, Debug)]
pub struct ResNet {
    /// Stem conv: 7x7, stride 2, padding 3, 64 channels, no bias.
    pub conv1: Conv2d,
    /// Stem BatchNorm.
    pub bn1: BatchNorm2d,
    /// Stem max pool: 3x3, stride 2, padding 1.
    pub maxpool: MaxPool2d,
    /// Stage 1 (stride 4, 64 x expansion channels).
    pub layer1: Vec<Block>,
    /// Stage 2 (stride 8, 128 x expansion channels).
    pub layer2: Vec<Block>,
    /// Stage 3 (stride 16, 256 x expansion channels).
    pub layer3: Vec<Block>,
    /// Stage 4 (stride 32, 512 x expansion channels).
    pub layer4: Vec<Block>,
    /// Classifier on the globally average-pooled `layer4` output (Burn's default init, which is
    /// PyTorch's `nn.Linear` default).
    pub fc: Linear,
    /// 18, 34, 50, 101 or 152.
    depth: usize,
    num_classes: usize,
}

impl ResNet {
    /// A freshly initialised ResNet of `depth` for `num_classes` classes, with torchvision's
    /// defaults.
    pub fn new(depth: ResNetDepth, num_classes: usize, device: &Device) -> Self {
        Self::with_options(depth, num_classes, ResNetOptions::default(), device)
    }

    /// A freshly initialised ResNet with torchvision's optional arguments.
    ///
    /// Convs are drawn as `kaiming_normal_(mode="fan_out", nonlinearity="relu")`, BatchNorms start
    /// at weight 1 and bias 0, `fc` has `nn.Linear`'s default init.
    ///
    /// # Panics
    /// If `options.replace_stride_with_dilation` asks for dilation in a basic-block ResNet.
    pub fn with_options(
        depth: ResNetDepth,
        num_classes: usize,
        options: ResNetOptions,
        device: &Device,
    ) -> Self {
        let zero = options.zero_init_residual;
        let expansion = depth.expansion();
        let mut in_ch = 64;
        let mut make_layer = |planes: usize, blocks: usize, stride: usize| -> Vec<Block> {
            (0..blocks)
                .map(|i| {
                    let s = if i == 0 { stride } else { 1 };
                    let block = if depth.bottleneck() {
                        Block::bottleneck(in_ch, planes, s, zero, device)
                    } else {
                        Block::basic(in_ch, planes, s, zero, device)
                    };
                    in_ch = planes * expansion;
                    block
                })
                .collect()
        };
        let [n1, n2, n3, n4] = depth.blocks();
        let layer1 = make_layer(64, n1, 1);
        let layer2 = make_layer(128, n2, 2);
        let layer3 = make_layer(256, n3, 2);
        let layer4 = make_layer(512, n4, 2);
        let conv1 = conv(3, 64, 7, 2, ConvInit::KaimingNormalFanOut, device).into();
        let model = Self {
            conv1,
            bn1: batch_norm(64, false, device),
            maxpool: MaxPool2dConfig::new(STEM_POOL.kernel)
                .with_strides(STEM_POOL.stride)
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1,
            layer2,
            layer3,
            layer4,
            fc: LinearConfig::new(512 * expansion, num_classes).init(device),
            depth: depth.depth(),
            num_classes,
        };
        model.replace_stride_with_dilation(options.replace_stride_with_dilation)
    }

    /// torchvision's `replace_stride_with_dilation`, applied to a built (or loaded) network: for
    /// each `true` among `layer2`, `layer3`, `layer4`, that layer keeps stride 1 and the dilation
    /// of the 3x3 convs doubles from there on (padding = dilation). As in `_make_layer`, the first
    /// block of a dilated layer still uses the previous dilation and its shortcut becomes a
    /// stride-1 projection. `[false, true, true]` gives output stride 8, `[false, false, true]`
    /// 16 (DeepLabV3+).
    ///
    /// Parameters are unchanged, so ImageNet weights can be loaded before or after. The flags
    /// describe the whole network (`[false; 3]` restores the plain strides).
    ///
    /// # Panics
    /// If a flag is set on a basic-block ResNet (torchvision raises there too).
    pub fn replace_stride_with_dilation(mut self, flags: [bool; 3]) -> Self {
        let mut dilation = 1;
        for (layer, dilate) in [&mut self.layer2, &mut self.layer3, &mut self.layer4]
            .into_iter()
            .zip(flags)
        {
            let previous = dilation;
            let stride = if dilate {
                dilation *= 2;
                1
            } else {
                2
            };
            for (i, block) in layer.iter_mut().enumerate() {
                if i == 0 {
                    block.set_stride_dilation(stride, previous);
                } else {
                    block.set_stride_dilation(1, dilation);
                }
            }
        }
        self
    }

    /// Which of the ResNets this is.
    pub fn depth(&self) -> ResNetDepth {
        ResNetDepth::from_depth(self.depth).expect("ResNet built with a known depth")
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Channels of the output of `layer` (1..=4): 64, 128, 256, 512 times the expansion.
    pub fn out_channels(&self, layer: usize) -> usize {
        assert!(
            (1..=4).contains(&layer),
            "ResNet layers are 1..=4, not {layer}"
        );
        (64 << (layer - 1)) * self.depth().expansion()
    }

    /// Downsampling factor of `layer4`'s output relative to the input: 32, or 16/8 with dilation.
    pub fn output_stride(&self) -> usize {
        [&self.layer2, &self.layer3, &self.layer4]
            .iter()
            .map(|layer| layer[0].strided_conv().stride[0])
            .product::<usize>()
            * 4
    }

    /// conv1, bn1, relu, maxpool: `[B, 3, H, W]` to `[B, 64, H/4, W/4]`.
    pub fn stem(&self, x: Tensor<4>) -> Tensor<4> {
        // `self.maxpool`'s pool, by afan's kernel on flex (crate::pool).
        crate::pool::max_pool2d(self.bn1.forward_relu(self.conv1.forward(x)), STEM_POOL)
    }

    /// Runs `layer1` .. `layer4` (`layer` in 1..=4) on the previous stage's output.
    pub fn layer(&self, layer: usize, x: Tensor<4>) -> Tensor<4> {
        self.layer_blocks(layer)
            .iter()
            .fold(x, |f, block| block.forward(f))
    }

    /// The outputs of `layer1` .. `layer4` (strides 4, 8, 16, 32 without dilation), for feature
    /// pyramids and segmentation heads.
    pub fn features(&self, x: Tensor<4>) -> [Tensor<4>; 4] {
        let c1 = self.layer(1, self.stem(x));
        let c2 = self.layer(2, c1.clone());
        let c3 = self.layer(3, c2.clone());
        let c4 = self.layer(4, c3.clone());
        [c1, c2, c3, c4]
    }

    /// Global average pool, flatten, `fc`: `[B, C, H, W]` to `[B, num_classes]`.
    pub fn head(&self, f: Tensor<4>) -> Tensor<2> {
        let [b, c, _, _] = f.dims();
        let pooled = f.mean_dim(2).mean_dim(3).reshape([b, c]);
        self.fc.forward(pooled)
    }

    fn layer_blocks(&self, layer: usize) -> &[Block] {
        match layer {
            1 => &self.layer1,
            2 => &self.layer2,
            3 => &self.layer3,
            4 => &self.layer4,
            _ => panic!("ResNet layers are 1..=4, not {layer}"),
        }
    }

    /// Every block, in order.
    fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
    }
}

impl SplitModel for ResNet {
    type Input = Tensor<4>;
    type Output = Tensor<2>;

    fn model_name(&self) -> String {
        self.depth().name().to_string()
    }

    /// `stem` (after the max pool), then `layerS.I` after block I of layer S.
    fn split_points(&self) -> Vec<String> {
        let mut points = vec!["stem".to_string()];
        for layer in 1..=4 {
            points.extend((0..self.layer_blocks(layer).len()).map(|i| format!("layer{layer}.{i}")));
        }
        points
    }

    /// `layerS` is the last block of layer S; `maxpool` is the stem.
    fn resolve_alias(&self, name: &str) -> Option<usize> {
        if name == "maxpool" {
            return Some(0);
        }
        let layer: usize = name.strip_prefix("layer")?.parse().ok()?;
        (1..=4)
            .contains(&layer)
            .then(|| (1..=layer).map(|l| self.layer_blocks(l).len()).sum())
    }

    fn forward(&self, input: Tensor<4>) -> Tensor<2> {
        let f = self.blocks().fold(self.stem(input), |f, b| b.forward(f));
        self.head(f)
    }

    fn forward_to(&self, input: Tensor<4>, point: &SplitPoint) -> Tensor<4> {
        self.blocks()
            .take(point.index)
            .fold(self.stem(input), |f, b| b.forward(f))
    }

    fn forward_from(&self, feature: Tensor<4>, point: &SplitPoint) -> Tensor<2> {
        let f = self
            .blocks()
            .skip(point.index)
            .fold(feature, |f, b| b.forward(f));
        self.head(f)
    }
}

/// torchvision's names, except that its `downsample` Sequential numbers its children.
impl crate::import::PytorchImport for ResNet {
    fn import_name(&self) -> String {
        self.depth().name().to_string()
    }

    fn pytorch_key(&self, path: &str) -> String {
        path.replace(".downsample.conv.", ".downsample.0.")
            .replace(".downsample.bn.", ".downsample.1.")
    }
}

#[cfg(test)]
#[path = "resnet_tests.rs"]
mod tests;
