//! Which layers the augmented features train, and in which order the training passes run.
//!
//! The release computes the feature at the split point, *detaches* it, attacks it, and trains on
//! the augmented features built from that detached tensor: their losses reach only the layers
//! after the split. The layers before it learn from the clean loss alone, which comes from a
//! separate full forward (`Classification/main_perturb.py` L173 and L195-197;
//! `Detection/train_aug_final.py` L81-85; `Segmentation/main_aug_final.py` L162-168). afan before
//! issue 17 built the augmented points on the live feature, so their losses also trained the head;
//! that stays available as [`GradientRouting::HeadAndTail`].

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// Where the losses of the augmented features send gradient.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GradientRouting {
    /// The release: the feature is detached before the attack and every augmented point trains
    /// only the layers after the split; the clean loss trains the whole network.
    #[default]
    TailOnly,
    /// afan's behaviour before issue 17: the augmented points are the live feature plus a
    /// constant perturbation (or the live feature re-normalized to adversarial moments), so their
    /// losses also pass gradient into the head, as a pixel perturbation does in adversarial
    /// training.
    HeadAndTail,
}

impl GradientRouting {
    /// The feature the strength points and the moment exchange are built from: detached under
    /// [`TailOnly`](Self::TailOnly), the live feature under [`HeadAndTail`](Self::HeadAndTail).
    pub fn route(self, feature: Tensor<4>) -> Tensor<4> {
        match self {
            GradientRouting::TailOnly => feature.detach(),
            GradientRouting::HeadAndTail => feature,
        }
    }
}

/// When the clean feature goes through the tail, relative to the augmented points.
///
/// The losses and gradients do not depend on it; batch norm's running statistics do, because
/// momentum updates do not commute (`r ← (1-m) r + m s` applied for `s_a` then `s_b` is not the
/// same as for `s_b` then `s_a`). The release runs the clean pass last in classification
/// (`Classification/main_perturb.py` L195-196: `output_adv` before `output_clean`) and first in
/// detection (`Detection/train_aug_final.py` L135-146) and segmentation
/// (`Segmentation/main_aug_final.py` L210-213).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanPass {
    /// Before the augmented points (detection, segmentation, and afan before issue 17).
    First,
    /// After the augmented points (the release's classification step).
    #[default]
    Last,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{device, tensor4};

    #[test]
    fn tail_only_cuts_the_graph_and_head_and_tail_keeps_it() {
        let dev = device().autodiff();
        // A head's output: tracked, not a leaf (detaching a leaf that requires a gradient keeps
        // the flag on the new leaf).
        let leaf = tensor4(&dev, [1, 1, 1, 2], &[1.0, 2.0]).require_grad();
        let f = leaf.clone().mul_scalar(2.0);
        for (routing, reaches) in [
            (GradientRouting::TailOnly, false),
            (GradientRouting::HeadAndTail, true),
        ] {
            let routed = routing.route(f.clone());
            assert_eq!(routed.is_tracked(), reaches, "{routing:?}");
            let grads = (routed.sum() + leaf.clone().sum().mul_scalar(0.0)).backward();
            let g = leaf.grad(&grads).unwrap().into_data();
            let g = g.try_to_vec::<f32>().unwrap();
            assert_eq!(g, if reaches { [2.0, 2.0] } else { [0.0, 0.0] });
        }
    }

    #[test]
    fn serde_names_are_the_agreed_ones() {
        #[derive(Serialize, Deserialize)]
        struct W {
            r: GradientRouting,
            c: CleanPass,
        }
        let w: W = toml::from_str("r = \"head_and_tail\"\nc = \"first\"").unwrap();
        assert_eq!((w.r, w.c), (GradientRouting::HeadAndTail, CleanPass::First));
        let s = toml::to_string(&W {
            r: GradientRouting::TailOnly,
            c: CleanPass::Last,
        })
        .unwrap();
        assert!(s.contains("\"tail_only\"") && s.contains("\"last\""), "{s}");
    }
}
