//! ImageNet weights for the backbone, from torchvision state dicts (`resnet50`, `resnet101`,
//! `mobilenet_v2`), as the release starts from. The classification heads of those dicts (`fc`;
//! `features.18` and `classifier`) have no place in DeepLabV3+, so they are loaded into a
//! throw-away head and dropped; every other key must match exactly.

use super::DeepLabV3Plus;
use crate::import::{ImportError, StateDict, load_state_dict};
use crate::mobilenet_v2::MobileNetV2;
use burn::nn::LinearConfig;

/// torchvision's `downsample.0/1` for this crate's `downsample.conv/bn`.
pub fn resnet_key(path: &str) -> String {
    path.replace("downsample.conv.", "downsample.0.")
        .replace("downsample.bn.", "downsample.1.")
}

impl DeepLabV3Plus {
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
