//! The release's `utils.set_bn_momentum(model.backbone, momentum=0.01)`
//! (`Segmentation/main_aug_final.py` L75, `utils/utils.py` L26-29): the backbone's batch norms
//! average their running statistics ten times slower than PyTorch's default 0.1; the head's keep
//! 0.1.
//!
//! A walk over the two backbones' batch norms: the momentum is a plain number of
//! [`BatchNorm2d`], which Burn's module mappers (parameters only) do not reach.

use super::DeepLabV3Plus;
use crate::mobilenet_v2::MobileNetV2;
use crate::norm::BatchNorm2d;
use crate::resnet::{Block, ResNet};

/// The backbone batch-norm momentum of the release's segmentation runs.
pub const RELEASE_BACKBONE_BN_MOMENTUM: f64 = 0.01;

impl DeepLabV3Plus {
    /// Sets the momentum of every batch norm of the backbone (not of ASPP or the decoder).
    pub fn with_backbone_bn_momentum(mut self, momentum: f64) -> Self {
        let mut set = |bn: &mut BatchNorm2d| bn.momentum = momentum;
        if let Some(r) = &mut self.resnet {
            resnet_norms(r, &mut set);
        }
        if let Some(m) = &mut self.mobilenet {
            mobilenet_norms(m, &mut set);
        }
        self
    }

    /// The momentum of each backbone batch norm, in module order (for tests and reports).
    pub fn backbone_bn_momenta(&self) -> Vec<f64> {
        let mut out = Vec::new();
        let mut clone = self.clone();
        let mut get = |bn: &mut BatchNorm2d| out.push(bn.momentum);
        if let Some(r) = &mut clone.resnet {
            resnet_norms(r, &mut get);
        }
        if let Some(m) = &mut clone.mobilenet {
            mobilenet_norms(m, &mut get);
        }
        out
    }
}

fn resnet_norms(r: &mut ResNet, f: &mut impl FnMut(&mut BatchNorm2d)) {
    f(&mut r.bn1);
    let blocks: [&mut Vec<Block>; 4] = [&mut r.layer1, &mut r.layer2, &mut r.layer3, &mut r.layer4];
    for block in blocks.into_iter().flatten() {
        f(&mut block.bn1);
        f(&mut block.bn2);
        if let Some(bn) = &mut block.bn3 {
            f(bn);
        }
        if let Some(d) = &mut block.downsample {
            f(&mut d.bn);
        }
    }
}

fn mobilenet_norms(m: &mut MobileNetV2, f: &mut impl FnMut(&mut BatchNorm2d)) {
    f(&mut m.stem.bn);
    for b in &mut m.blocks {
        if let Some(e) = &mut b.expand {
            f(&mut e.bn);
        }
        f(&mut b.depthwise.bn);
        f(&mut b.project.bn);
    }
    if let Some(l) = &mut m.last {
        f(&mut l.bn);
    }
}
