//! RoIAlign of [`super::kernel`] as a Burn backend extension: a `Flex` implementation that runs
//! the gather and scatter kernels, and an `Autodiff` one that records the op. RoIAlign is linear
//! in the features, so the backward pass keeps only the sampling points and the feature shape,
//! not the features. Other backends never reach it: [`super::RoiPoolConfig::forward`] builds
//! their weight matrix from the same sampling points.

use super::kernel::{RoiSamples, roi_align_backward, roi_align_forward};
use crate::flex::{contiguous, dims4, flex_tensor};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::DType;
use std::sync::Arc;

/// RoIAlign of `[B, C, H, W]` features at precomputed sampling points, to `[R, C, PH, PW]`.
#[backend_extension(Flex, Autodiff)]
pub trait FastRoiAlign: Backend {
    /// Pools every region of `samples` from `features`.
    fn afan_roi_align(features: FloatTensor<Self>, samples: Arc<RoiSamples>) -> FloatTensor<Self>;
}

/// The backward pass of [`FastRoiAlign`] on a concrete backend.
pub trait FastRoiAlignBackward: FastRoiAlign {
    /// The features' gradient `[B, C, H, W]` from the output's, for `channels` channels.
    fn afan_roi_align_backward(
        grad: FloatTensor<Self>,
        samples: Arc<RoiSamples>,
        channels: usize,
    ) -> FloatTensor<Self>;
}

fn f32_data(t: &FlexTensor) -> &[f32] {
    assert_eq!(
        t.dtype(),
        DType::F32,
        "afan's RoIAlign kernel takes f32 features"
    );
    t.as_slice::<f32>().expect("contiguous f32 data")
}

impl FastRoiAlign for Flex {
    fn afan_roi_align(features: FlexTensor, samples: Arc<RoiSamples>) -> FlexTensor {
        let features = contiguous(features);
        let [_, c, _, _] = dims4(&features);
        let [ph, pw] = samples.output_size;
        let out = roi_align_forward(&samples, f32_data(&features), c);
        flex_tensor(out, [samples.len(), c, ph, pw])
    }
}

impl FastRoiAlignBackward for Flex {
    fn afan_roi_align_backward(
        grad: FlexTensor,
        samples: Arc<RoiSamples>,
        channels: usize,
    ) -> FlexTensor {
        let grad = contiguous(grad);
        let [b, h, w] = samples.feature;
        let dx = roi_align_backward(&samples, f32_data(&grad), channels);
        flex_tensor(dx, [b, channels, h, w])
    }
}

#[derive(Debug)]
struct FastRoiAlignOp;

impl<B: FastRoiAlignBackward> Backward<B, 1> for FastRoiAlignOp {
    type State = (Arc<RoiSamples>, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (samples, channels) = ops.state;
        if let Some(node) = node {
            let dx = B::afan_roi_align_backward(grad, samples, channels);
            grads.register::<B>(node.id, dx);
        }
    }
}

impl<B: FastRoiAlignBackward, C: CheckpointStrategy> FastRoiAlign for Autodiff<B, C> {
    fn afan_roi_align(features: FloatTensor<Self>, samples: Arc<RoiSamples>) -> FloatTensor<Self> {
        let channels = features.primitive().shape()[1];
        match FastRoiAlignOp
            .prepare::<C>([features.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::afan_roi_align(features.into_primitive(), samples.clone());
                prep.finish((samples, channels), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::afan_roi_align(features.into_primitive(), samples))
            }
        }
    }
}
