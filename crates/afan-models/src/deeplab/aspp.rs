//! Atrous spatial pyramid pooling (Chen et al. 2017), as the release builds it: a 1x1 branch,
//! three dilated 3x3 branches and an image-pooling branch, 256 channels each, concatenated and
//! projected back to 256 channels with dropout 0.1.

use crate::layers::{ConvBn, ConvInit, conv_ext};
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor};

/// Channels of every ASPP branch and of its output in the release (and the default here).
pub const ASPP_CHANNELS: usize = 256;

/// ASPP with the release's layout (`convs.0` .. `convs.4`, `project`).
#[derive(Module, Debug)]
pub struct Aspp {
    /// The 1x1 branch and the three atrous 3x3 branches (conv, BN, ReLU each).
    pub branches: Vec<ConvBn>,
    /// Image pooling: global average, 1x1 conv, BN, ReLU, broadcast back.
    pub pooling: ConvBn,
    /// 1x1 projection of the five concatenated branches, BN, ReLU.
    pub project: ConvBn,
    /// Dropout 0.1 after the projection (active only in training on an autodiff device).
    pub dropout: Dropout,
    /// Channels of each branch and of the output.
    pub channels: usize,
}

impl Aspp {
    /// ASPP from `in_ch` to `c` channels (release: 256) with atrous `rates` (6/12/18 at output
    /// stride 16, 12/24/36 at 8).
    pub fn new(in_ch: usize, c: usize, rates: [usize; 3], device: &Device) -> Self {
        let init = ConvInit::KaimingNormalFanIn;
        let conv_bn =
            |i, o, k, d| ConvBn::new(conv_ext([i, o], k, [1, d, 1], init, device), o, device);
        let mut branches = vec![conv_bn(in_ch, c, 1, 1)];
        branches.extend(rates.map(|r| conv_bn(in_ch, c, 3, r)));
        Self {
            branches,
            pooling: conv_bn(in_ch, c, 1, 1),
            project: conv_bn(5 * c, c, 1, 1),
            dropout: DropoutConfig::new(0.1).init(),
            channels: c,
        }
    }

    /// `[B, in_ch, h, w]` to `[B, 256, h, w]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        crate::dropout::apply(&self.dropout, self.forward_undropped(x))
    }

    /// [`Self::forward`] before its dropout: a pass shared by several of the release's passes
    /// draws each of them its own mask from it (see [`super::afan`]).
    pub fn forward_undropped(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, _, h, w] = x.dims();
        let mut outs: Vec<Tensor<4>> = self
            .branches
            .iter()
            .map(|branch| branch.forward_relu(x.clone()))
            .collect();
        // Bilinear upsampling of a 1x1 map is a broadcast; expanding gives the same values exactly.
        let pooled = self.pooling.forward_relu(adaptive_avg_pool2d(x, [1, 1]));
        outs.push(pooled.expand([b, self.channels, h, w]));
        self.project.forward_relu(Tensor::cat(outs, 1))
    }
}
