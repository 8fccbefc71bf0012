//! The release's state-dict names of the detector's parameters (`Detection/model.py`: `Model`
//! holds the backbone as `features`, `layer4` as `detection.hidden`, the RPN's layers as
//! `rpn._features.0`, `rpn._anchor_objectness`, `rpn._anchor_transformer`, the predictors as
//! `detection._proposal_class` and `detection._proposal_transformer`).
//!
//! [`FasterRcnn::load_release`] reads a release checkpoint's `state_dict` with it, and the golden
//! tests name parameters the way the release's re-statement does.

use super::faster_rcnn::FasterRcnn;
use crate::import::{ImportError, load_state_dict_partial};
use crate::state_dict::StateDict;

/// Keys of a release checkpoint that are copies or leftovers, not parameters of their own:
/// `features` is the whole torchvision ResNet, so its `layer4` (registered again as
/// `detection.hidden`) and `fc` are there; `_bn_modules` lists the batch norms once more
/// (`model.py` L27-28); `features.normal` holds the input normalisation, which afan applies to
/// the images before the model.
const RELEASE_EXTRA: [&str; 4] = [
    "features.layer4.",
    "features.fc.",
    "_bn_modules.",
    "features.normal.",
];

impl FasterRcnn {
    /// Loads a release checkpoint's `state_dict` (`Detection/model.py` `Model.save`) strictly:
    /// every parameter must be there and fit; only the copies and leftovers of
    /// `RELEASE_EXTRA` may be left over, and only the stand-in `fc` may be missing.
    pub fn load_release(self, dict: &StateDict) -> Result<Self, ImportError> {
        let (model, mut report) =
            load_state_dict_partial(self, "faster_rcnn_c4", dict, release_key);
        report.missing.retain(|k| !k.starts_with("features.fc."));
        report
            .unexpected
            .retain(|k| !RELEASE_EXTRA.iter().any(|p| k.starts_with(p)));
        report.into_result().map(|()| model)
    }
}

/// The release key of the detector parameter at Burn path `path` (`roi_head.layer4.0.conv1.weight`
/// is `detection.hidden.0.conv1.weight`).
pub fn release_key(path: &str) -> String {
    let torchvision = path
        .replace(".downsample.conv.", ".downsample.0.")
        .replace(".downsample.bn.", ".downsample.1.");
    const RENAMES: [(&str, &str); 7] = [
        ("backbone.", "features."),
        ("roi_head.layer4.", "detection.hidden."),
        ("roi_head.cls_score.", "detection._proposal_class."),
        ("roi_head.bbox_pred.", "detection._proposal_transformer."),
        ("rpn.conv.", "rpn._features.0."),
        ("rpn.cls_logits.", "rpn._anchor_objectness."),
        ("rpn.bbox_pred.", "rpn._anchor_transformer."),
    ];
    RENAMES
        .iter()
        .find_map(|(ours, theirs)| {
            torchvision
                .strip_prefix(ours)
                .map(|rest| format!("{theirs}{rest}"))
        })
        .unwrap_or(torchvision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_the_release_names() {
        for (path, key) in [
            (
                "backbone.layer2.0.downsample.conv.weight",
                "features.layer2.0.downsample.0.weight",
            ),
            ("backbone.bn1.running_var", "features.bn1.running_var"),
            (
                "roi_head.layer4.0.downsample.bn.bias",
                "detection.hidden.0.downsample.1.bias",
            ),
            (
                "roi_head.cls_score.weight",
                "detection._proposal_class.weight",
            ),
            (
                "roi_head.bbox_pred.bias",
                "detection._proposal_transformer.bias",
            ),
            ("rpn.conv.weight", "rpn._features.0.weight"),
            ("rpn.cls_logits.bias", "rpn._anchor_objectness.bias"),
            ("rpn.bbox_pred.weight", "rpn._anchor_transformer.weight"),
        ] {
            assert_eq!(release_key(path), key);
        }
    }
}
