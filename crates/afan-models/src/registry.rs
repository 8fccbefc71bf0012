//! Classifiers by name, behind one type, so the command line and checkpoints can name a model
//! with a string and the rest of the code stays generic.

use crate::cifar_resnet::CifarResNet;
use afan_core::{SplitModel, SplitPoint};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use std::fmt;
use std::str::FromStr;

/// Every classifier afan can build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ClassifierKind {
    /// CIFAR ResNet of depth 6n+2 (20, 32, 44, 56, 110).
    CifarResNet(usize),
}

/// A model name that is not in the registry.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("unknown model `{name}`; known models: {}", ClassifierKind::names().join(", "))]
pub struct UnknownModel {
    /// The name as given.
    pub name: String,
}

impl ClassifierKind {
    /// The canonical names, for messages and `--help`.
    pub fn names() -> Vec<&'static str> {
        vec!["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
    }

    /// Builds the model with freshly initialised, materialized parameters.
    pub fn build(self, num_classes: usize, device: &Device) -> Classifier {
        let model = match self {
            ClassifierKind::CifarResNet(depth) => {
                Classifier::Cifar(CifarResNet::new(depth, num_classes, device))
            }
        };
        afan_core::objective::materialize(model)
    }
}

impl FromStr for ClassifierKind {
    type Err = UnknownModel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "resnet20" => Ok(Self::CifarResNet(20)),
            "resnet32" => Ok(Self::CifarResNet(32)),
            "resnet44" => Ok(Self::CifarResNet(44)),
            "resnet56" => Ok(Self::CifarResNet(56)),
            "resnet110" => Ok(Self::CifarResNet(110)),
            _ => Err(UnknownModel {
                name: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for ClassifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClassifierKind::CifarResNet(d) => write!(f, "resnet{d}"),
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
#[derive(Module, Debug)]
pub enum Classifier {
    /// A CIFAR ResNet.
    Cifar(CifarResNet),
}

impl SplitModel for Classifier {
    type Input = Tensor<4>;
    type Output = Tensor<2>;

    fn model_name(&self) -> String {
        match self {
            Classifier::Cifar(m) => m.model_name(),
        }
    }
    fn split_points(&self) -> Vec<String> {
        match self {
            Classifier::Cifar(m) => m.split_points(),
        }
    }
    fn resolve_alias(&self, name: &str) -> Option<usize> {
        match self {
            Classifier::Cifar(m) => m.resolve_alias(name),
        }
    }
    fn forward(&self, input: Tensor<4>) -> Tensor<2> {
        match self {
            Classifier::Cifar(m) => m.forward(input),
        }
    }
    fn forward_to(&self, input: Tensor<4>, point: &SplitPoint) -> Tensor<4> {
        match self {
            Classifier::Cifar(m) => m.forward_to(input, point),
        }
    }
    fn forward_from(&self, feature: Tensor<4>, point: &SplitPoint) -> Tensor<2> {
        match self {
            Classifier::Cifar(m) => m.forward_from(feature, point),
        }
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
            err.contains("resnet21") && err.contains("resnet56"),
            "{err}"
        );
    }
}
