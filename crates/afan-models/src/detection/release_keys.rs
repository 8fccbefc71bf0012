//! The release's state-dict names of the detector's parameters (`Detection/model.py`: `Model`
//! holds the backbone as `features`, `layer4` as `detection.hidden`, the RPN's layers as
//! `rpn._features.0`, `rpn._anchor_objectness`, `rpn._anchor_transformer`, the predictors as
//! `detection._proposal_class` and `detection._proposal_transformer`).
//!
//! With [`crate::import::load_state_dict_partial`] this reads a release checkpoint's
//! `state_dict` (its extra copies — `features.layer4.*`, `features.fc.*`, `_bn_modules.*`,
//! `features.normal.*` — stay unused), and the golden tests name parameters the way the
//! release's re-statement does.

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
