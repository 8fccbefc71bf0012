//! Classifiers by name, behind one type, so the command line and checkpoints can name a model
//! with a string and the rest of the code stays generic.
//!
//! Every classifier takes RGB in [0, 1] (see [`crate::input_norm`]).

use crate::cifar_resnet::CifarResNet;
use crate::efficientnet::{EfficientNet, EfficientNetVariant};
use crate::import::{ImportError, ImportReport, PytorchImport};
use crate::input_norm::{InputNorm, Normalized};
use crate::mobilenet_v2::MobileNetV2;
use crate::resnet::{ResNet, ResNetDepth};
use crate::state_dict::StateDict;
use afan_core::{SplitModel, SplitPoint};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use std::fmt;
use std::str::FromStr;

/// Every classifier afan can build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ClassifierKind {
    /// CIFAR ResNet of depth 6n+2 (20, 32, 44, 56, 110), option-A shortcuts.
    CifarResNet(usize),
    /// torchvision's ImageNet ResNet (18, 34, 50, 101, 152).
    ResNet(ResNetDepth),
    /// torchvision's EfficientNet (B0 .. B7).
    EfficientNet(EfficientNetVariant),
    /// torchvision's MobileNetV2 (width 1.0).
    MobileNetV2,
}

/// A model name that is not in the registry.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("unknown model `{name}`; known models: {}", ClassifierKind::names().join(", "))]
pub struct UnknownModel {
    /// The name as given.
    pub name: String,
}

/// How an image file becomes a model input: the defaults each model family was trained with.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Preprocess {
    /// Shorter side after resizing (aspect ratio kept).
    pub resize: u32,
    /// Side of the centre crop taken after resizing.
    pub crop: u32,
}

const CIFAR_DEPTHS: [usize; 5] = [20, 32, 44, 56, 110];
const CIFAR_NAMES: [&str; 5] = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"];

impl ClassifierKind {
    /// The canonical names, for messages and `--help`.
    pub fn names() -> Vec<&'static str> {
        CIFAR_NAMES
            .into_iter()
            .chain(ResNetDepth::names())
            .collect()
    }

    /// Builds the model with freshly initialised, materialized parameters.
    pub fn build(self, num_classes: usize, device: &Device) -> Classifier {
        let model = match self {
            ClassifierKind::CifarResNet(depth) => {
                Classifier::Cifar(CifarResNet::new(depth, num_classes, device))
            }
            ClassifierKind::ResNet(depth) => Classifier::ResNet(Normalized::new(
                ResNet::new(depth, num_classes, device),
                InputNorm::IMAGENET,
            )),
            ClassifierKind::EfficientNet(v) => Classifier::EfficientNet(Normalized::new(
                EfficientNet::new(v, num_classes, device),
                InputNorm::IMAGENET,
            )),
            ClassifierKind::MobileNetV2 => Classifier::MobileNetV2(Normalized::new(
                MobileNetV2::classifier(num_classes, 1.0, device),
                InputNorm::IMAGENET,
            )),
        };
        afan_core::objective::materialize(model)
    }

    /// The image size the family is trained at: CIFAR's 32 px, or ImageNet's resize 256 and
    /// centre crop 224.
    pub fn preprocess(self) -> Preprocess {
        match self {
            ClassifierKind::CifarResNet(_) => Preprocess {
                resize: 32,
                crop: 32,
            },
            ClassifierKind::ResNet(_) | ClassifierKind::MobileNetV2 => Preprocess {
                resize: 256,
                crop: 224,
            },
            ClassifierKind::EfficientNet(v) => {
                let (resize, crop) = v.eval_size();
                Preprocess { resize, crop }
            }
        }
    }
}

impl FromStr for ClassifierKind {
    type Err = UnknownModel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = CIFAR_NAMES.iter().position(|n| *n == lower) {
            return Ok(Self::CifarResNet(CIFAR_DEPTHS[i]));
        }
        if let Some(v) = EfficientNetVariant::parse(&lower) {
            return Ok(Self::EfficientNet(v));
        }
        if lower == "mobilenet_v2" || lower == "mobilenetv2" {
            return Ok(Self::MobileNetV2);
        }
        lower
            .parse::<ResNetDepth>()
            .map(Self::ResNet)
            .map_err(|_| UnknownModel {
                name: s.to_string(),
            })
    }
}

impl fmt::Display for ClassifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClassifierKind::CifarResNet(d) => write!(f, "resnet{d}"),
            ClassifierKind::ResNet(d) => f.write_str(d.name()),
            ClassifierKind::EfficientNet(v) => f.write_str(&v.name()),
            ClassifierKind::MobileNetV2 => f.write_str("mobilenet_v2"),
        }
    }
}

impl TryFrom<String> for ClassifierKind {
    type Error = UnknownModel;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ClassifierKind> for String {
    fn from(k: ClassifierKind) -> String {
        k.to_string()
    }
}

/// One of the registry's classifiers.
// The variants differ in size by their layer lists; a model is built a handful of times per run,
// so boxing would only add indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Classifier {
    /// A CIFAR ResNet (normalizes its input itself).
    Cifar(CifarResNet),
    /// A torchvision ResNet behind ImageNet normalization.
    ResNet(Normalized<ResNet>),
    /// A torchvision EfficientNet behind ImageNet normalization.
    EfficientNet(Normalized<EfficientNet>),
    /// A torchvision MobileNetV2 behind ImageNet normalization.
    MobileNetV2(Normalized<MobileNetV2>),
}

/// Runs `$body` with `$m` bound to the variant's model, whatever the variant.
macro_rules! each {
    ($self:expr, $m:ident => $body:expr) => {
        match $self {
            Classifier::Cifar($m) => $body,
            Classifier::ResNet($m) => $body,
            Classifier::EfficientNet($m) => $body,
            Classifier::MobileNetV2($m) => $body,
        }
    };
}

impl Classifier {
    /// Loads a PyTorch state dict with the model's own key names (torchvision's, or the CIFAR
    /// release's); see [`PytorchImport`].
    pub fn load_pytorch(self, dict: &StateDict) -> Result<Self, ImportError> {
        Ok(match self {
            Classifier::Cifar(m) => Classifier::Cifar(m.load_pytorch(dict)?),
            Classifier::ResNet(m) => Classifier::ResNet(m.load_pytorch(dict)?),
            Classifier::EfficientNet(m) => Classifier::EfficientNet(m.load_pytorch(dict)?),
            Classifier::MobileNetV2(m) => Classifier::MobileNetV2(m.load_pytorch(dict)?),
        })
    }

    /// Loads what fits of a PyTorch state dict and reports the rest (see
    /// [`PytorchImport::load_pytorch_partial`]).
    pub fn load_pytorch_partial(self, dict: &StateDict) -> (Self, ImportReport) {
        match self {
            Classifier::Cifar(m) => {
                let (m, r) = m.load_pytorch_partial(dict);
                (Classifier::Cifar(m), r)
            }
            Classifier::ResNet(m) => {
                let (m, r) = m.load_pytorch_partial(dict);
                (Classifier::ResNet(m), r)
            }
            Classifier::EfficientNet(m) => {
                let (m, r) = m.load_pytorch_partial(dict);
                (Classifier::EfficientNet(m), r)
            }
            Classifier::MobileNetV2(m) => {
                let (m, r) = m.load_pytorch_partial(dict);
                (Classifier::MobileNetV2(m), r)
            }
        }
    }

    /// The normalization applied before the network, for models that normalize outside it
    /// (`None` for CIFAR ResNets, which carry theirs inside).
    pub fn input_norm_mut(&mut self) -> Option<&mut InputNorm> {
        match self {
            Classifier::Cifar(_) => None,
            Classifier::ResNet(m) => Some(&mut m.norm),
            Classifier::EfficientNet(m) => Some(&mut m.norm),
            Classifier::MobileNetV2(m) => Some(&mut m.norm),
        }
    }

    /// The state-dict key of the parameter at Burn path `path`.
    pub fn pytorch_key(&self, path: &str) -> String {
        let inner = path.split_once('.').map_or(path, |(_, rest)| rest);
        each!(self, m => m.pytorch_key(inner))
    }
}

impl SplitModel for Classifier {
    type Input = Tensor<4>;
    type Output = Tensor<2>;

    fn model_name(&self) -> String {
        each!(self, m => m.model_name())
    }
    fn split_points(&self) -> Vec<String> {
        each!(self, m => m.split_points())
    }
    fn resolve_alias(&self, name: &str) -> Option<usize> {
        each!(self, m => m.resolve_alias(name))
    }
    fn forward(&self, input: Tensor<4>) -> Tensor<2> {
        each!(self, m => m.forward(input))
    }
    fn forward_to(&self, input: Tensor<4>, point: &SplitPoint) -> Tensor<4> {
        each!(self, m => m.forward_to(input, point))
    }
    fn forward_from(&self, feature: Tensor<4>, point: &SplitPoint) -> Tensor<2> {
        each!(self, m => m.forward_from(feature, point))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_listed() {
        for name in ClassifierKind::names() {
            assert_eq!(name.parse::<ClassifierKind>().unwrap().to_string(), name);
        }
        let err = "resnet21"
            .parse::<ClassifierKind>()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("resnet21") && err.contains("resnet56") && err.contains("resnet152"),
            "{err}"
        );
    }

    /// EfficientNet and MobileNetV2 through the registry: named, normalized, and cut exactly at
    /// every point.
    #[test]
    fn efficientnet_and_mobilenet_round_trip_at_every_split_point() {
        for (name, points) in [("efficientnet_b0", 9), ("mobilenet_v2", 18)] {
            let device = afan_core::device::test_device();
            let kind: ClassifierKind = name.parse().unwrap();
            assert_eq!(kind.to_string(), name);
            let size = kind.preprocess();
            assert_eq!((size.resize, size.crop), (256, 224));
            let model = kind.build(5, &device);
            let x =
                Tensor::<4>::random([2, 3, 32, 32], burn::tensor::Distribution::Default, &device);
            let whole = model.forward(x.clone()).into_data();
            assert_eq!(model.split_points().len(), points);
            for point in model.split_points() {
                let p = model.split_point(&point).unwrap();
                let cut = model.forward_from(model.forward_to(x.clone(), &p), &p);
                assert_eq!(cut.into_data(), whole, "{name} {point}");
            }
        }
    }

    /// Burn paths name the enum variant first; the key map removes it.
    #[test]
    fn classifier_paths_map_to_torchvision_keys() {
        let device = afan_core::device::test_device();
        let model = ClassifierKind::ResNet(ResNetDepth::R18).build(10, &device);
        let keys: Vec<String> = crate::import::param_paths(&model)
            .iter()
            .map(|p| model.pytorch_key(p))
            .collect();
        assert_eq!(keys[0], "conv1.weight");
        assert!(
            keys.contains(&"layer2.0.downsample.0.weight".to_string()),
            "{keys:?}"
        );
        assert_eq!(keys.last().unwrap(), "fc.bias");
    }

    /// A torchvision model is fed [0, 1] images like every classifier: the wrapper normalizes
    /// with ImageNet's statistics before the first conv, at every split point too.
    #[test]
    fn torchvision_models_normalize_their_input() {
        let device = afan_core::device::test_device();
        let Classifier::ResNet(model) = ClassifierKind::ResNet(ResNetDepth::R18).build(3, &device)
        else {
            panic!("not a ResNet");
        };
        let x = Tensor::<4>::random([1, 3, 32, 32], burn::tensor::Distribution::Default, &device);
        let want = model.net.forward(InputNorm::IMAGENET.apply(x.clone()));
        let got = SplitModel::forward(&model, x.clone());
        got.into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Default::default());
        let point = model.split_point("layer2").unwrap();
        let f = model.forward_to(x.clone(), &point);
        let want = model
            .net
            .forward_to(InputNorm::IMAGENET.apply(x.clone()), &point);
        f.into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Default::default());
        let unnormalized = model.net.forward_to(x.clone(), &point);
        let gap = (model.forward_to(x, &point) - unnormalized)
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(gap > 1e-3, "the wrapper changed nothing ({gap})");
    }
}
