//! The CIFAR ResNets of He et al. (2016), section 4.2, as the release trains them: three stages of
//! 16/32/64 channels, `n` basic blocks each (depth `6n + 2`), the parameter-free "option A"
//! shortcut (stride-2 subsampling plus zero channels), and input normalization inside the model so
//! that attacks and augmentations see pixels in 0..1.

use crate::conv::Conv2d;
use crate::import::{ImportReport, PytorchBuffer, PytorchImport, load_state_dict_partial};
use crate::layers::{ConvInit, conv};
use crate::norm::{BatchNorm2d, BatchNorm2dConfig};
use crate::state_dict::StateDict;
use afan_core::{SplitModel, SplitPoint};
use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor, s};

/// Per-channel mean of the CIFAR-10 training images.
pub const CIFAR_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
/// Per-channel standard deviation of the CIFAR-10 training images.
pub const CIFAR_STD: [f32; 3] = [0.2470, 0.2435, 0.2616];

fn pytorch_key(blocks_per_stage: usize, path: &str) -> String {
    let Some((index, tail)) = path.strip_prefix("blocks.").and_then(|r| r.split_once('.')) else {
        return path.to_string();
    };
    match index.parse::<usize>() {
        Ok(i) => format!(
            "layer{}.{}.{tail}",
            i / blocks_per_stage + 1,
            i % blocks_per_stage
        ),
        Err(_) => path.to_string(),
    }
}

/// The key of a parameter in the release's model (`Classification/resnet_s.py`), one
/// `nn.Sequential` named `sequential_model`: 0 the input normalisation, 1 the conv, 2 its
/// BatchNorm, 3 the ReLU, then one entry per block, then pooling, flattening and the linear layer
/// (`sequential_model.15` for ResNet-20).
pub fn release_key(blocks_per_stage: usize, path: &str) -> String {
    let (module, tail) = path.split_once('.').unwrap_or((path, ""));
    let index = match module {
        "conv1" => 1,
        "bn1" => 2,
        "fc" => 3 * blocks_per_stage + 6,
        "blocks" => {
            let Some((i, rest)) = tail.split_once('.') else {
                return path.to_string();
            };
            return match i.parse::<usize>() {
                Ok(i) => format!("sequential_model.{}.{rest}", 4 + i),
                Err(_) => path.to_string(),
            };
        }
        _ => return path.to_string(),
    };
    format!("sequential_model.{index}.{tail}")
}

/// A key only the release's layout has: tells it from the `layerS.I` one on import.
const RELEASE_PROBE: &str = "sequential_model.1.weight";

/// A basic block with an option-A shortcut.
#[derive(Module, Debug)]
pub struct BlockA {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    /// Zero channels added on each side of the shortcut (0: identity shortcut).
    pad: usize,
    stride: usize,
}

impl BlockA {
    fn new(in_ch: usize, out_ch: usize, stride: usize, device: &Device) -> Self {
        let init = ConvInit::KaimingNormalFanIn;
        let pad = if stride != 1 || in_ch != out_ch {
            (out_ch - in_ch) / 2
        } else {
            0
        };
        Self {
            conv1: conv(in_ch, out_ch, 3, stride, init, device).into(),
            bn1: BatchNorm2dConfig::new(out_ch).init(device),
            conv2: conv(out_ch, out_ch, 3, 1, init, device).into(),
            bn2: BatchNorm2dConfig::new(out_ch).init(device),
            pad,
            stride,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = self.bn1.forward_relu(self.conv1.forward(x.clone()));
        self.bn2
            .forward_add_relu(self.conv2.forward(out), self.shortcut(x))
    }

    /// `F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p))`.
    fn shortcut(&self, x: Tensor<4>) -> Tensor<4> {
        if self.pad == 0 && self.stride == 1 {
            return x;
        }
        let x = if self.stride == 2 {
            x.slice(s![.., .., ..;2, ..;2])
        } else {
            x
        };
        let [b, _, h, w] = x.dims();
        // In the input's dtype: mixed-precision training runs this in f16/bf16.
        let zeros = Tensor::<4>::zeros([b, self.pad, h, w], &x.device()).cast(x.dtype());
        Tensor::cat(vec![zeros.clone(), x, zeros], 1)
    }
}

/// CIFAR ResNet-(6n+2).
#[derive(Module, Debug)]
pub struct CifarResNet {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    /// All blocks of the three stages, in order.
    blocks: Vec<BlockA>,
    fc: Linear,
    /// Blocks per stage.
    n: usize,
    num_classes: usize,
}

impl CifarResNet {
    /// ResNet of depth `6n + 2` for `num_classes` classes.
    pub fn new(depth: usize, num_classes: usize, device: &Device) -> Self {
        assert!(
            depth >= 8 && (depth - 2).is_multiple_of(6),
            "CIFAR ResNet depth must be 6n+2"
        );
        let n = (depth - 2) / 6;
        let mut blocks = Vec::with_capacity(3 * n);
        let mut in_ch = 16;
        for (stage, out_ch) in [16, 32, 64].into_iter().enumerate() {
            for i in 0..n {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                blocks.push(BlockA::new(in_ch, out_ch, stride, device));
                in_ch = out_ch;
            }
        }
        Self {
            conv1: conv(3, 16, 3, 1, ConvInit::KaimingNormalFanIn, device).into(),
            bn1: BatchNorm2dConfig::new(16).init(device),
            blocks,
            fc: LinearConfig::new(64, num_classes)
                .with_initializer(Initializer::KaimingNormal {
                    gain: std::f64::consts::SQRT_2,
                    fan_out_only: false,
                })
                .init(device),
            n,
            num_classes,
        }
    }

    /// Network depth (20, 32, 44, 56, 110, ...).
    pub fn depth(&self) -> usize {
        6 * self.n + 2
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn stem(&self, x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        let dtype = x.dtype();
        let mean = Tensor::<1>::from_floats(CIFAR_MEAN, &device).cast(dtype);
        let std = Tensor::<1>::from_floats(CIFAR_STD, &device).cast(dtype);
        let x = (x - mean.reshape([1, 3, 1, 1])) / std.reshape([1, 3, 1, 1]);
        self.bn1.forward_relu(self.conv1.forward(x))
    }

    fn head(&self, f: Tensor<4>) -> Tensor<2> {
        let [b, c, _, _] = f.dims();
        let pooled = f.mean_dim(2).mean_dim(3).reshape([b, c]);
        self.fc.forward(pooled)
    }
}

impl SplitModel for CifarResNet {
    type Input = Tensor<4>;
    type Output = Tensor<2>;

    fn model_name(&self) -> String {
        format!("resnet{}", self.depth())
    }

    /// `stem`, then `layerS.I` after block I of stage S (torchvision numbering).
    fn split_points(&self) -> Vec<String> {
        let mut points = vec!["stem".to_string()];
        for stage in 1..=3 {
            points.extend((0..self.n).map(|i| format!("layer{stage}.{i}")));
        }
        points
    }

    /// `layerS` is the end of stage S; `conv1` is the stem.
    fn resolve_alias(&self, name: &str) -> Option<usize> {
        match name {
            "conv1" => Some(0),
            "layer1" => Some(self.n),
            "layer2" => Some(2 * self.n),
            "layer3" => Some(3 * self.n),
            _ => None,
        }
    }

    fn forward(&self, input: Tensor<4>) -> Tensor<2> {
        let f = self
            .blocks
            .iter()
            .fold(self.stem(input), |f, b| b.forward(f));
        self.head(f)
    }

    fn forward_to(&self, input: Tensor<4>, point: &SplitPoint) -> Tensor<4> {
        self.blocks[..point.index]
            .iter()
            .fold(self.stem(input), |f, b| b.forward(f))
    }

    fn forward_from(&self, feature: Tensor<4>, point: &SplitPoint) -> Tensor<2> {
        let f = self.blocks[point.index..]
            .iter()
            .fold(feature, |f, b| b.forward(f));
        self.head(f)
    }
}

/// The release (and the common PyTorch CIFAR ResNets) name the stages `layer1..3`; here they are
/// one list (`blocks.4` is `layer2.1` for ResNet-20).
impl PytorchImport for CifarResNet {
    fn import_name(&self) -> String {
        format!("resnet{}", self.depth())
    }

    fn pytorch_key(&self, path: &str) -> String {
        pytorch_key(self.n, path)
    }

    /// Reads either layout: the release's `sequential_model.N` ([`release_key`], what
    /// the `export` module writes, with its buffers: the normalisation must hold CIFAR-10's
    /// statistics, `w` is ignored) or the `layerS.I` one of [`PytorchImport::pytorch_key`].
    fn load_pytorch_partial(self, dict: &StateDict) -> (Self, ImportReport) {
        let (name, n) = (self.import_name(), self.n);
        if dict.entry(RELEASE_PROBE).is_none() {
            return load_state_dict_partial(self, &name, dict, |p| pytorch_key(n, p));
        }
        let buffers = self.release_buffers();
        let (model, mut report) = load_state_dict_partial(self, &name, dict, |p| release_key(n, p));
        report.accept_buffers(dict, &buffers);
        (model, report)
    }
}

impl CifarResNet {
    /// The tensors of the release's model that are no parameters here: the input normalisation
    /// (`sequential_model.0`, advertorch's `NormalizeByChannelMeanStd`, applied here as
    /// constants) and `w`, the nine per-point weights of the learnable variant
    /// (resnet_s.py L113-114, `init_weight` 1), which afan keeps outside the model
    /// (`afan_core::learnable`): written as the release initialises them.
    pub fn release_buffers(&self) -> Vec<PytorchBuffer> {
        let constant = |key: &str, values: [f32; 3]| PytorchBuffer {
            key: key.to_string(),
            values: values.to_vec(),
            shape: vec![3],
            fixed: true,
        };
        vec![
            constant("sequential_model.0.mean", CIFAR_MEAN),
            constant("sequential_model.0.std", CIFAR_STD),
            PytorchBuffer {
                key: "w".into(),
                values: vec![1.0; 9],
                shape: vec![9],
                fixed: false,
            },
        ]
    }

    /// Blocks per stage (`n` of depth `6n + 2`).
    pub fn blocks_per_stage(&self) -> usize {
        self.n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    #[test]
    fn split_round_trip_equals_forward_at_every_point() {
        let dev = afan_core::device::test_device();
        for depth in [20, 32] {
            let model = CifarResNet::new(depth, 10, &dev);
            let x = Tensor::<4>::random([2, 3, 8, 8], Distribution::Uniform(0.0, 1.0), &dev);
            let full = model.forward(x.clone()).into_data();
            assert_eq!(model.split_points().len(), 1 + 3 * (depth - 2) / 6);
            for name in model.split_points() {
                let p = model.split_point(&name).unwrap();
                let out = model.forward_from(model.forward_to(x.clone(), &p), &p);
                out.into_data().assert_eq(&full, true);
            }
        }
    }

    #[test]
    fn shapes_parameters_and_stage_aliases() {
        let dev = Device::flex();
        let model = CifarResNet::new(20, 100, &dev);
        // ResNet-20 has 269,722 trainable parameters for 10 classes (He et al.: 0.27M); 100 classes
        // add 90 * 65 fc parameters, and Burn's count includes the 2 * 688 running statistics.
        let params = model.num_params();
        assert_eq!(params, 269_722 + 90 * 65 + 2 * 688);
        let x = Tensor::<4>::zeros([1, 3, 32, 32], &dev);
        let expect = [
            ("stem", [1, 16, 32, 32]),
            ("layer1", [1, 16, 32, 32]),
            ("layer2", [1, 32, 16, 16]),
            ("layer3", [1, 64, 8, 8]),
        ];
        for (name, shape) in expect {
            let p = model.split_point(name).unwrap();
            assert_eq!(model.forward_to(x.clone(), &p).dims(), shape, "{name}");
        }
        assert_eq!(model.split_point("layer2").unwrap().name, "layer2.2");
        assert!(model.split_point("layer4").is_err());
    }

    #[test]
    fn option_a_shortcut_subsamples_and_zero_pads_channels() {
        let dev = Device::flex();
        let block = BlockA::new(2, 4, 2, &dev);
        let x: Vec<f32> = (0..2 * 4 * 4).map(|v| v as f32).collect();
        let x = Tensor::<4>::from_data(TensorData::new(x, [1, 2, 4, 4]), &dev);
        let out = block.shortcut(x);
        let mut expected = vec![0.0f32; 4];
        expected.extend([0.0, 2.0, 8.0, 10.0, 16.0, 18.0, 24.0, 26.0]);
        expected.extend([0.0; 4]);
        out.into_data().assert_approx_eq::<f32>(
            &TensorData::new(expected, [1, 4, 2, 2]),
            Tolerance::default(),
        );
    }
}
