//! Convolutions with the initialisations of the reference implementations.

use burn::nn::Initializer;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::Device;

/// How conv weights are drawn, per reference implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvInit {
    /// `kaiming_normal_(w)`: fan-in, gain sqrt(2) (the CIFAR ResNets of the release).
    KaimingNormalFanIn,
    /// `kaiming_normal_(w, mode="fan_out", nonlinearity="relu")` (torchvision ResNets).
    KaimingNormalFanOut,
}

impl ConvInit {
    fn initializer(self) -> Initializer {
        let gain = std::f64::consts::SQRT_2;
        match self {
            ConvInit::KaimingNormalFanIn => Initializer::KaimingNormal {
                gain,
                fan_out_only: false,
            },
            ConvInit::KaimingNormalFanOut => Initializer::KaimingNormal {
                gain,
                fan_out_only: true,
            },
        }
    }
}

/// A bias-free `k x k` convolution with symmetric padding `k / 2` (or `dilation` for atrous 3x3).
pub fn conv(
    in_ch: usize,
    out_ch: usize,
    kernel: usize,
    stride: usize,
    init: ConvInit,
    device: &Device,
) -> Conv2d {
    let p = kernel / 2;
    Conv2dConfig::new([in_ch, out_ch], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        .with_initializer(init.initializer())
        .init(device)
}

/// A bias-free conv and its BatchNorm (torchvision's `Conv2dNormActivation`), with the activation
/// chosen per call: ReLU in DeepLab, ReLU6 in MobileNetV2, none in MobileNetV2's projections
/// (whose residual add callers apply).
#[derive(burn::module::Module, Debug)]
pub struct ConvBn {
    /// The convolution (torchvision `.0`), on afan's kernels where they run.
    pub conv: crate::conv::Conv2d,
    /// Its BatchNorm (torchvision `.1`).
    pub bn: crate::norm::BatchNorm2d,
}

impl ConvBn {
    /// Wraps `conv` (of `channels` outputs) with a PyTorch-initialised BatchNorm.
    pub fn new(conv: Conv2d, channels: usize, device: &Device) -> Self {
        Self {
            conv: conv.into(),
            bn: crate::norm::BatchNorm2dConfig::new(channels).init(device),
        }
    }

    /// conv, then BatchNorm.
    pub fn forward(&self, x: burn::tensor::Tensor<4>) -> burn::tensor::Tensor<4> {
        self.bn.forward(self.conv.forward(x))
    }

    /// conv, BatchNorm, ReLU (the last two as one operation where afan's kernels run).
    pub fn forward_relu(&self, x: burn::tensor::Tensor<4>) -> burn::tensor::Tensor<4> {
        self.bn.forward_relu(self.conv.forward(x))
    }

    /// conv, BatchNorm, ReLU6 (the last two as one operation where afan's kernels run).
    pub fn forward_relu6(&self, x: burn::tensor::Tensor<4>) -> burn::tensor::Tensor<4> {
        self.bn.forward_relu6(self.conv.forward(x))
    }
}

/// A bias-free `k x k` conv with stride, dilation, groups and "same" padding `dilation * (k / 2)`.
pub fn conv_ext(
    [in_ch, out_ch]: [usize; 2],
    kernel: usize,
    [stride, dilation, groups]: [usize; 3],
    init: ConvInit,
    device: &Device,
) -> Conv2d {
    let p = dilation * (kernel / 2);
    Conv2dConfig::new([in_ch, out_ch], [kernel, kernel])
        .with_stride([stride, stride])
        .with_dilation([dilation, dilation])
        .with_groups(groups)
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        .with_initializer(init.initializer())
        .init(device)
}
