//! EfficientNet-B0..B7 with torchvision's layout, names and initialisation, cut after each
//! `features.N` stage.
//!
//! Burn's tree is named for what the layers do (`stages.2.1.depthwise.conv`); torchvision's
//! numbers its Sequentials (`features.3.1.block.1.0`). [`PytorchImport::pytorch_key`] translates,
//! looking at each block to know whether its expansion conv exists (it does not when the expand
//! ratio is 1), which shifts torchvision's `block.N` indices.

use crate::import::PytorchImport;
use crate::norm::{BatchNorm2d, BatchNorm2dConfig};
use afan_core::{SplitModel, SplitPoint};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{sigmoid, silu};
use burn::tensor::{Device, Tensor};

/// The compound-scaled variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EfficientNetVariant {
    /// B0 .. B7 by index.
    B(u8),
}

impl EfficientNetVariant {
    /// `(width_mult, depth_mult, dropout)` of torchvision's `efficientnet_bN`.
    fn scaling(self) -> (f64, f64, f64) {
        let EfficientNetVariant::B(n) = self;
        [
            (1.0, 1.0, 0.2),
            (1.0, 1.1, 0.2),
            (1.1, 1.2, 0.3),
            (1.2, 1.4, 0.3),
            (1.4, 1.8, 0.4),
            (1.6, 2.2, 0.4),
            (1.8, 2.6, 0.5),
            (2.0, 3.1, 0.5),
        ][n as usize]
    }

    /// B5..B7 use batch norm with eps 1e-3 and momentum 0.01 in torchvision; B0..B4 PyTorch's
    /// defaults.
    fn norm(self, channels: usize) -> BatchNorm2dConfig {
        let EfficientNetVariant::B(n) = self;
        let c = BatchNorm2dConfig::new(channels);
        if n >= 5 {
            c.with_epsilon(1e-3).with_momentum(0.01)
        } else {
            c
        }
    }

    /// `efficientnet_b0` ...
    pub fn name(self) -> String {
        let EfficientNetVariant::B(n) = self;
        format!("efficientnet_b{n}")
    }

    /// Parses `efficientnet_b0` .. `efficientnet_b7` (also `efficientnet-b0`).
    pub fn parse(name: &str) -> Option<Self> {
        let n: u8 = name
            .strip_prefix("efficientnet_b")
            .or_else(|| name.strip_prefix("efficientnet-b"))?
            .parse()
            .ok()?;
        (n <= 7).then_some(EfficientNetVariant::B(n))
    }

    /// torchvision's evaluation sizes `(resize, crop)` for the pretrained weights.
    pub fn eval_size(self) -> (u32, u32) {
        let EfficientNetVariant::B(n) = self;
        [
            (256, 224),
            (255, 240),
            (288, 288),
            (320, 300),
            (384, 380),
            (456, 456),
            (528, 528),
            (600, 600),
        ][n as usize]
    }
}

/// torchvision's `_make_divisible(v, 8)`: round to a multiple of 8, never below 90% of `v`.
fn make_divisible(v: f64) -> usize {
    let new = 8usize.max(((v + 4.0) as usize) / 8 * 8);
    if (new as f64) < 0.9 * v { new + 8 } else { new }
}

/// Conv, batch norm and (optionally) SiLU: torchvision's `Conv2dNormActivation`.
#[derive(Module, Debug)]
pub struct ConvNormAct {
    /// The conv (torchvision child `0`), on afan's kernels where they run.
    pub conv: crate::conv::Conv2d,
    /// The batch norm (torchvision child `1`).
    pub bn: BatchNorm2d,
    /// Whether SiLU follows.
    #[module(skip)]
    pub act: bool,
}

impl ConvNormAct {
    #[allow(clippy::too_many_arguments)]
    fn new(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        groups: usize,
        act: bool,
        v: EfficientNetVariant,
        device: &Device,
    ) -> Self {
        let p = (k - 1) / 2;
        let conv = Conv2dConfig::new([cin, cout], [k, k])
            .with_stride([stride, stride])
            .with_groups(groups)
            .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
            .with_bias(false)
            // kaiming_normal_(mode="fan_out"), default leaky_relu gain sqrt(2).
            .with_initializer(Initializer::KaimingNormal {
                gain: std::f64::consts::SQRT_2,
                fan_out_only: true,
            })
            .init(device);
        Self {
            conv: conv.into(),
            bn: v.norm(cout).init(device),
            act,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.bn.forward(self.conv.forward(x));
        if self.act { silu(y) } else { y }
    }
}

/// Squeeze-and-excitation: global pool, 1x1 conv down, SiLU, 1x1 conv up, sigmoid gate.
#[derive(Module, Debug)]
pub struct SqueezeExcitation {
    /// Reduction conv (with bias).
    pub fc1: Conv2d,
    /// Expansion conv (with bias).
    pub fc2: Conv2d,
}

impl SqueezeExcitation {
    fn new(channels: usize, squeeze: usize, device: &Device) -> Self {
        let conv = |a, b| {
            Conv2dConfig::new([a, b], [1, 1])
                .with_initializer(Initializer::KaimingNormal {
                    gain: std::f64::consts::SQRT_2,
                    fan_out_only: true,
                })
                .init(device)
        };
        Self {
            fc1: conv(channels, squeeze),
            fc2: conv(squeeze, channels),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let s = x.clone().mean_dim(2).mean_dim(3);
        let s = sigmoid(self.fc2.forward(silu(self.fc1.forward(s))));
        x * s
    }
}

/// Inverted residual block with squeeze-excitation and stochastic depth.
#[derive(Module, Debug)]
pub struct MBConv {
    /// 1x1 expansion (absent for expand ratio 1).
    pub expand: Option<ConvNormAct>,
    /// k x k depthwise conv (carries the stride).
    pub depthwise: ConvNormAct,
    /// Channel gate.
    pub se: SqueezeExcitation,
    /// 1x1 projection, no activation.
    pub project: ConvNormAct,
    /// Probability of dropping the residual branch per sample in training.
    #[module(skip)]
    pub drop_prob: f64,
    /// Whether the input is added back (stride 1 and equal channels).
    #[module(skip)]
    pub residual: bool,
}

impl MBConv {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut y = x.clone();
        if let Some(e) = &self.expand {
            y = e.forward(y);
        }
        let y = self
            .project
            .forward(self.se.forward(self.depthwise.forward(y)));
        if !self.residual {
            return y;
        }
        x + self.stochastic_depth(y)
    }

    /// torchvision's `StochasticDepth(p, "row")`: in training, zero the branch of each sample
    /// with probability p and scale survivors by 1/(1-p); at evaluation, the identity.
    fn stochastic_depth(&self, y: Tensor<4>) -> Tensor<4> {
        if self.drop_prob == 0.0 || !y.device().is_autodiff() {
            return y;
        }
        let keep = 1.0 - self.drop_prob;
        let b = y.dims()[0];
        let mask = afan_core::draw::keep_mask([b, 1, 1, 1], (&y.device(), y.dtype()), keep);
        y * mask
    }
}

/// torchvision's EfficientNet (B0..B7), classifier `Dropout` + `Linear`.
#[derive(Module, Debug)]
pub struct EfficientNet {
    /// `features.0`: 3x3 stride-2 conv to 32·width channels.
    pub stem: ConvNormAct,
    /// `features.1..7`: the seven MBConv stages.
    pub stages: Vec<Vec<MBConv>>,
    /// `features.8`: 1x1 conv to 4x the last stage's channels.
    pub last: ConvNormAct,
    /// Dropout before the classifier (torchvision `classifier.0`).
    pub dropout: Dropout,
    /// The classifier (torchvision `classifier.1`).
    pub classifier: Linear,
    #[module(skip)]
    variant: u8,
}

/// `(expand, kernel, stride, in, out, layers)` of B0 (Table 1 of the paper).
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
];

impl EfficientNet {
    /// A freshly initialised network with torchvision's initialisation (stochastic depth 0.2).
    pub fn new(variant: EfficientNetVariant, num_classes: usize, device: &Device) -> Self {
        let (width, depth, dropout) = variant.scaling();
        let ch = |c: usize| make_divisible(c as f64 * width);
        let layers = |n: usize| (n as f64 * depth).ceil() as usize;
        let total: usize = STAGES.iter().map(|s| layers(s.5)).sum();
        let stem = ConvNormAct::new(3, ch(32), 3, 2, 1, true, variant, device);
        let mut stages = Vec::new();
        let mut block_id = 0;
        for &(expand, k, stride, cin, cout, n) in &STAGES {
            let (cin, cout) = (ch(cin), ch(cout));
            let mut stage = Vec::new();
            for i in 0..layers(n) {
                let (input, s) = if i == 0 { (cin, stride) } else { (cout, 1) };
                let hidden = make_divisible((input * expand) as f64);
                stage.push(MBConv {
                    expand: (hidden != input)
                        .then(|| ConvNormAct::new(input, hidden, 1, 1, 1, true, variant, device)),
                    depthwise: ConvNormAct::new(
                        hidden, hidden, k, s, hidden, true, variant, device,
                    ),
                    se: SqueezeExcitation::new(hidden, (input / 4).max(1), device),
                    project: ConvNormAct::new(hidden, cout, 1, 1, 1, false, variant, device),
                    drop_prob: 0.2 * block_id as f64 / total as f64,
                    residual: s == 1 && input == cout,
                });
                block_id += 1;
            }
            stages.push(stage);
        }
        let last_in = ch(STAGES[6].4);
        let last = ConvNormAct::new(last_in, 4 * last_in, 1, 1, 1, true, variant, device);
        let range = 1.0 / (num_classes as f64).sqrt();
        let classifier = LinearConfig::new(4 * last_in, num_classes)
            .with_initializer(Initializer::Uniform {
                min: -range,
                max: range,
            })
            .init(device);
        let classifier = Linear {
            bias: classifier.bias.map(|b| b.map(|t| t.zeros_like())),
            ..classifier
        };
        let EfficientNetVariant::B(v) = variant;
        Self {
            stem,
            stages,
            last,
            dropout: DropoutConfig::new(dropout).init(),
            classifier,
            variant: v,
        }
    }

    /// Which variant this is.
    pub fn variant(&self) -> EfficientNetVariant {
        EfficientNetVariant::B(self.variant)
    }

    /// `features.idx` (0 = stem, 1..=7 stages, 8 = last conv).
    fn feature(&self, idx: usize, x: Tensor<4>) -> Tensor<4> {
        match idx {
            0 => self.stem.forward(x),
            8 => self.last.forward(x),
            i => self.stages[i - 1].iter().fold(x, |f, b| b.forward(f)),
        }
    }

    /// Global average pool, dropout, classifier.
    pub fn head(&self, f: Tensor<4>) -> Tensor<2> {
        let [b, c, _, _] = f.dims();
        let pooled = f.mean_dim(2).mean_dim(3).reshape([b, c]);
        self.classifier
            .forward(crate::dropout::apply(&self.dropout, pooled))
    }
}

impl SplitModel for EfficientNet {
    type Input = Tensor<4>;
    type Output = Tensor<2>;

    fn model_name(&self) -> String {
        self.variant().name()
    }
    /// `features.0` (stem) .. `features.8` (last conv), after each torchvision `features` child.
    fn split_points(&self) -> Vec<String> {
        (0..=8).map(|i| format!("features.{i}")).collect()
    }
    fn forward(&self, input: Tensor<4>) -> Tensor<2> {
        self.head((0..=8).fold(input, |f, i| self.feature(i, f)))
    }
    fn forward_to(&self, input: Tensor<4>, point: &SplitPoint) -> Tensor<4> {
        (0..=point.index).fold(input, |f, i| self.feature(i, f))
    }
    fn forward_from(&self, feature: Tensor<4>, point: &SplitPoint) -> Tensor<2> {
        self.head((point.index + 1..=8).fold(feature, |f, i| self.feature(i, f)))
    }
}

impl PytorchImport for EfficientNet {
    fn import_name(&self) -> String {
        self.variant().name()
    }

    fn pytorch_key(&self, path: &str) -> String {
        let cna = |rest: &str| rest.replacen("conv.", "0.", 1).replacen("bn.", "1.", 1);
        if let Some(rest) = path.strip_prefix("stem.") {
            return format!("features.0.{}", cna(rest));
        }
        if let Some(rest) = path.strip_prefix("last.") {
            return format!("features.8.{}", cna(rest));
        }
        if let Some(rest) = path.strip_prefix("classifier.") {
            return format!("classifier.1.{rest}");
        }
        let parts: Vec<&str> = path.splitn(4, '.').collect();
        if let ["stages", s, b, rest] = parts.as_slice()
            && let (Ok(s), Ok(b)) = (s.parse::<usize>(), b.parse::<usize>())
            && let Some(block) = self.stages.get(s).and_then(|st| st.get(b))
        {
            let shift = usize::from(block.expand.is_some());
            let (layer, tail) = rest.split_once('.').unwrap_or((rest, ""));
            let (index, tail) = match layer {
                "expand" => (0, cna(tail)),
                "depthwise" => (shift, cna(tail)),
                "se" => (shift + 1, tail.to_string()),
                _ => (shift + 2, cna(tail)),
            };
            return format!("features.{}.{b}.block.{index}.{tail}", s + 1);
        }
        path.to_string()
    }
}
