//! The input contract of afan's classifiers: RGB in [0, 1]. Networks trained on normalized
//! inputs (torchvision's, with ImageNet's mean and std) get the normalization here, as the first
//! step of the model, so data loaders, the trainer, `afan infer` and embedding applications feed
//! every model the same way and cannot pair weights with the wrong statistics.

use crate::import::PytorchImport;
use afan_core::{SplitModel, SplitPoint};
use burn::module::Module;
use burn::tensor::Tensor;

/// Per-channel mean and std subtracted from and divided into the [0, 1] input.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InputNorm {
    /// Channel means (R, G, B).
    pub mean: [f32; 3],
    /// Channel standard deviations (R, G, B).
    pub std: [f32; 3],
}

impl InputNorm {
    /// torchvision's ImageNet statistics, which its pretrained weights expect.
    pub const IMAGENET: InputNorm = InputNorm {
        mean: crate::resnet::IMAGENET_MEAN,
        std: crate::resnet::IMAGENET_STD,
    };

    /// `(x - mean) / std` per channel of an `[B, 3, H, W]` batch.
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        // The constants take the input's dtype: mixed-precision training runs in f16/bf16.
        let dtype = x.dtype();
        let mean = Tensor::<1>::from_floats(self.mean, &device).cast(dtype);
        let std = Tensor::<1>::from_floats(self.std, &device).cast(dtype);
        (x - mean.reshape([1, 3, 1, 1])) / std.reshape([1, 3, 1, 1])
    }
}

/// A network that expects normalized input, behind the [0, 1] contract.
#[derive(Module, Debug)]
pub struct Normalized<M: Module> {
    /// The network; its parameter paths are those of torchvision under `net.`.
    pub net: M,
    /// The statistics applied before `net` (not a parameter: never trained, never saved).
    #[module(skip)]
    pub norm: InputNorm,
}

impl<M: Module> Normalized<M> {
    /// Wraps `net` with `norm`.
    pub fn new(net: M, norm: InputNorm) -> Self {
        Self { net, norm }
    }
}

impl<M> SplitModel for Normalized<M>
where
    M: Module + SplitModel<Input = Tensor<4>>,
{
    type Input = Tensor<4>;
    type Output = M::Output;

    fn model_name(&self) -> String {
        self.net.model_name()
    }
    fn split_points(&self) -> Vec<String> {
        self.net.split_points()
    }
    fn resolve_alias(&self, name: &str) -> Option<usize> {
        self.net.resolve_alias(name)
    }
    fn forward(&self, input: Tensor<4>) -> M::Output {
        self.net.forward(self.norm.apply(input))
    }
    fn forward_to(&self, input: Tensor<4>, point: &SplitPoint) -> Tensor<4> {
        self.net.forward_to(self.norm.apply(input), point)
    }
    fn forward_from(&self, feature: Tensor<4>, point: &SplitPoint) -> M::Output {
        self.net.forward_from(feature, point)
    }
}

impl<M: PytorchImport + burn::module::ModuleDisplay> PytorchImport for Normalized<M> {
    fn import_name(&self) -> String {
        self.net.import_name()
    }
    fn pytorch_key(&self, path: &str) -> String {
        self.net
            .pytorch_key(path.strip_prefix("net.").unwrap_or(path))
    }
}
