//! Which PyTorch module each afan model exports to: the import's key tables, read the other way.

use super::PytorchExport;
use crate::cifar_resnet::{CifarResNet, release_key as cifar_release_key};
use crate::deeplab::{DeepLabV3Plus, release_key as deeplab_release_key};
use crate::detection::faster_rcnn::FasterRcnn;
use crate::detection::release_keys::release_key as detection_release_key;
use crate::efficientnet::EfficientNet;
use crate::import::{PytorchBuffer, PytorchImport};
use crate::input_norm::Normalized;
use crate::mobilenet_v2::MobileNetV2;
use crate::registry::Classifier;
use crate::resnet::ResNet;
use afan_core::SplitModel;

/// torchvision's models: every parameter under the key the import reads.
macro_rules! torchvision {
    ($($model:ty),*) => {$(
        impl PytorchExport for $model {
            fn export_name(&self) -> String {
                self.import_name()
            }
            fn export_key(&self, path: &str) -> Option<String> {
                Some(self.pytorch_key(path))
            }
        }
    )*};
}

torchvision!(ResNet, EfficientNet, MobileNetV2);

/// The wrapped network's keys (the normalisation is a constant, not saved).
impl<M: PytorchExport + burn::module::ModuleDisplay> PytorchExport for Normalized<M> {
    fn export_name(&self) -> String {
        self.net.export_name()
    }
    fn export_key(&self, path: &str) -> Option<String> {
        self.net
            .export_key(path.strip_prefix("net.").unwrap_or(path))
    }
    fn export_buffers(&self) -> Vec<PytorchBuffer> {
        self.net.export_buffers()
    }
}

/// The release's `resnet_s.py` module (`sequential_model.N`), which normalises its input and
/// carries the learnable variant's `w`: see [`CifarResNet::release_buffers`].
impl PytorchExport for CifarResNet {
    fn export_name(&self) -> String {
        self.import_name()
    }
    fn export_key(&self, path: &str) -> Option<String> {
        Some(cifar_release_key(self.blocks_per_stage(), path))
    }
    fn export_buffers(&self) -> Vec<PytorchBuffer> {
        self.release_buffers()
    }
}

/// The variant's module (Burn paths start with the variant's name).
impl PytorchExport for Classifier {
    fn export_name(&self) -> String {
        self.model_name()
    }
    fn export_key(&self, path: &str) -> Option<String> {
        let inner = path.split_once('.').map_or(path, |(_, rest)| rest);
        match self {
            Classifier::Cifar(m) => m.export_key(inner),
            Classifier::ResNet(m) => m.export_key(inner),
            Classifier::EfficientNet(m) => m.export_key(inner),
            Classifier::MobileNetV2(m) => m.export_key(inner),
        }
    }
    fn export_buffers(&self) -> Vec<PytorchBuffer> {
        match self {
            Classifier::Cifar(m) => m.export_buffers(),
            Classifier::ResNet(m) => m.export_buffers(),
            Classifier::EfficientNet(m) => m.export_buffers(),
            Classifier::MobileNetV2(m) => m.export_buffers(),
        }
    }
}

/// The release's module (see [`crate::deeplab::release_key`] and
/// [`DeepLabV3Plus::release_buffers`]), without the one-output `fc` the ResNet backbone keeps
/// here to stay a whole `ResNet` (the release's has none).
impl PytorchExport for DeepLabV3Plus {
    fn export_name(&self) -> String {
        self.model_name()
    }
    fn export_key(&self, path: &str) -> Option<String> {
        let key = deeplab_release_key(path);
        (!DeepLabV3Plus::release_lacks(&key)).then_some(key)
    }
    fn export_buffers(&self) -> Vec<PytorchBuffer> {
        self.release_buffers()
    }
}

/// The names [`FasterRcnn::load_release`] reads (`Detection/model.py`'s, see
/// [`crate::detection::release_keys`]), without the one-output stand-in `fc` of the backbone.
/// This is the importer's set, not the release module's whole state dict: that one also holds
/// copies (`features.layer4.*` of `detection.hidden.*`, `_bn_modules.*` of every batch norm),
/// the ImageNet `fc` and the `normal` constants, which a strict PyTorch load would ask for.
impl PytorchExport for FasterRcnn {
    fn export_name(&self) -> String {
        format!("faster_rcnn_c4_{}", self.config.backbone)
    }
    fn export_key(&self, path: &str) -> Option<String> {
        let key = detection_release_key(path);
        (!key.starts_with("features.fc.")).then_some(key)
    }
}
