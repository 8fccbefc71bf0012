//! ImageNet weights for the backbone, from torchvision state dicts (`resnet50`, `resnet101`,
//! `mobilenet_v2`), as the release starts from. The classification heads of those dicts (`fc`;
//! `features.18` and `classifier`) have no place in DeepLabV3+, so they are loaded into a
//! throw-away head and dropped; every other key must match exactly.

use super::DeepLabV3Plus;
use crate::import::{ImportError, PytorchBuffer, load_state_dict, load_state_dict_partial};
use crate::mobilenet_v2::MobileNetV2;
use crate::state_dict::StateDict;
use burn::nn::LinearConfig;

/// The key of a parameter in a checkpoint of the release (VainF/DeepLabV3Plus-Pytorch
/// `model_state`): `backbone.*` (torchvision names; MobileNetV2's `features.N` split into
/// `low_level_features.N` for N < 4 and `high_level_features.N`) and `classifier.*` for the head.
/// A ResNet model also has a (never used) `resnet.fc`, which such checkpoints lack:
/// [`DeepLabV3Plus::load_release`] accepts its absence and nothing else.
pub fn release_key(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("mobilenet.") {
        let key = MobileNetV2::pytorch_key(rest);
        let Some((index, tail)) = key
            .strip_prefix("features.")
            .and_then(|k| k.split_once('.'))
        else {
            return format!("backbone.{key}");
        };
        let part = match index.parse::<usize>() {
            Ok(n) if n < 4 => "low_level_features",
            _ => "high_level_features",
        };
        return format!("backbone.{part}.{index}.{tail}");
    }
    if let Some(rest) = path.strip_prefix("resnet.") {
        return format!("backbone.{}", resnet_key(rest));
    }
    let Some(rest) = path.strip_prefix("head.") else {
        return path.to_string();
    };
    // (Burn path prefix, release prefix) pairs; conv/bn of a ConvBn are `.0`/`.1` of a Sequential.
    let conv_bn = |p: &str, to: &str| {
        p.strip_prefix("conv.")
            .map(|r| format!("{to}.0.{r}"))
            .or_else(|| p.strip_prefix("bn.").map(|r| format!("{to}.1.{r}")))
    };
    let mapped = if let Some(p) = rest.strip_prefix("project.") {
        conv_bn(p, "classifier.project")
    } else if let Some(p) = rest.strip_prefix("aspp.branches.") {
        p.split_once('.')
            .and_then(|(i, p)| conv_bn(p, &format!("classifier.aspp.convs.{i}")))
    } else if let Some(p) = rest.strip_prefix("aspp.pooling.") {
        // ASPPPooling is (avgpool, conv, bn, relu): its conv is `.1`, its BN `.2`.
        p.strip_prefix("conv.")
            .map(|r| format!("classifier.aspp.convs.4.1.{r}"))
            .or_else(|| {
                p.strip_prefix("bn.")
                    .map(|r| format!("classifier.aspp.convs.4.2.{r}"))
            })
    } else if let Some(p) = rest.strip_prefix("aspp.project.") {
        conv_bn(p, "classifier.aspp.project")
    } else if let Some(p) = rest.strip_prefix("fuse.") {
        conv_bn(p, "classifier.classifier")
    } else {
        rest.strip_prefix("classifier.")
            .map(|r| format!("classifier.classifier.3.{r}"))
    };
    mapped.unwrap_or_else(|| path.to_string())
}

/// torchvision's `downsample.0/1` for this crate's `downsample.conv/bn`.
pub fn resnet_key(path: &str) -> String {
    path.replace("downsample.conv.", "downsample.0.")
        .replace("downsample.bn.", "downsample.1.")
}

/// The release key of the ResNet classification layer this crate's backbone keeps (its
/// `ResNet` is shared with classification) but the release's `IntermediateLayerGetter` drops.
const RELEASE_UNUSED_FC: &str = "backbone.fc.";

impl DeepLabV3Plus {
    /// Loads a whole release checkpoint (VainF/DeepLabV3Plus-Pytorch `model_state`, keys as
    /// [`release_key`] names them) strictly: every key must be there and fit, and none may be
    /// left over, except the ResNet `fc`, which the release never had (it keeps its
    /// initialisation; DeepLabV3+ never runs it). The release's input normalisation
    /// ([`DeepLabV3Plus::release_buffers`]) may be there and must hold ImageNet's statistics.
    pub fn load_release(self, dict: &StateDict) -> Result<Self, ImportError> {
        let buffers = self.release_buffers();
        let (model, mut report) = load_state_dict_partial(self, "deeplabv3plus", dict, release_key);
        report.missing.retain(|k| !Self::release_lacks(k));
        report.accept_buffers(dict, &buffers);
        report.into_result().map(|()| model)
    }

    /// Whether the release's model lacks the parameter of key `key` (the ResNet `fc`): it is not
    /// exported, and not required on import.
    pub(crate) fn release_lacks(key: &str) -> bool {
        key.starts_with(RELEASE_UNUSED_FC)
    }

    /// The tensors of the release's model that are no parameters here: with a ResNet backbone,
    /// its input normalisation (`Segmentation/network/backbone/resnet.py` L129-130,
    /// `backbone.normal`, ImageNet's mean and std), which afan's segmentation data applies to
    /// the images instead. (The MobileNetV2 layout, VainF's, has none.)
    pub fn release_buffers(&self) -> Vec<PytorchBuffer> {
        if self.resnet.is_none() {
            return Vec::new();
        }
        let constant = |key: &str, values: [f32; 3]| PytorchBuffer {
            key: key.to_string(),
            values: values.to_vec(),
            shape: vec![3],
            fixed: true,
        };
        vec![
            constant("backbone.normal.mean", crate::resnet::IMAGENET_MEAN),
            constant("backbone.normal.std", crate::resnet::IMAGENET_STD),
        ]
    }

    /// Loads a torchvision ImageNet state dict into the backbone (dilation is kept: it changes no
    /// parameter). The ASPP and decoder keep their initialisation.
    pub fn load_backbone(mut self, dict: &StateDict) -> Result<Self, ImportError> {
        if let Some(mut resnet) = self.resnet.take() {
            let device = resnet.fc.weight.device();
            let width = resnet.out_channels(4);
            let classes = dict.get("fc.bias").map_or(1000, |(v, _)| v.len());
            let small_fc = std::mem::replace(
                &mut resnet.fc,
                LinearConfig::new(width, classes).init(&device),
            );
            let mut loaded = load_state_dict(resnet, "resnet backbone", dict, resnet_key)?;
            loaded.fc = small_fc;
            self.resnet = Some(loaded);
        }
        if let Some(mut mobilenet) = self.mobilenet.take() {
            let device = mobilenet.stem.conv.weight.device();
            let width = mobilenet.channels(17) as f64 / 320.0;
            let classes = dict.get("classifier.1.bias").map_or(1000, |(v, _)| v.len());
            let head = MobileNetV2::classifier(classes, width, &device);
            (mobilenet.last, mobilenet.classifier) = (head.last, head.classifier);
            let mut loaded = load_state_dict(
                mobilenet,
                "mobilenet_v2 backbone",
                dict,
                MobileNetV2::pytorch_key,
            )?;
            (loaded.last, loaded.classifier) = (None, None);
            self.mobilenet = Some(loaded);
        }
        Ok(self)
    }
}
