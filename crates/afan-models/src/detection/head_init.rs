//! How the layers a detector adds to its backbone start: the RPN convs and the two predictors.

use serde::{Deserialize, Serialize};

/// The initialisation of the layers a detector adds to its backbone (RPN convs, predictors).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadInit {
    /// PyTorch's defaults, `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` weights and biases: the release
    /// builds `nn.Conv2d` / `nn.Linear` and never re-initialises them
    /// (`rpn/region_proposal_network.py` L19-36, `model.py` L235-236).
    #[default]
    Pytorch,
    /// Small normals and zero biases (N(0, 0.01) RPN and logits, N(0, 0.001) deltas;
    /// py-faster-rcnn's `normal_init`, afan before issue 17).
    Normal,
}
