//! The cross-entropy of [`super::kernel`] as a Burn backend extension: a `Flex` implementation
//! that runs the kernels and an `Autodiff` one that records the op with the logits and their
//! log-sum-exps as the backward's state. Other backends never reach it:
//! [`super::pixel_cross_entropy`] routes them to Burn's ops.

use super::kernel::{PixelLogits, cross_entropy_backward, cross_entropy_forward};
use crate::flex::{contiguous, flex_tensor};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::TensorData;
use std::sync::Arc;

/// The mean cross-entropy of `[N, K, H, W]` logits against per-pixel labels.
#[backend_extension(Flex, Autodiff)]
pub trait FastCrossEntropy: Backend {
    /// `F.cross_entropy(logits, labels, ignore_index=ignore)` (the mean over labelled pixels;
    /// 0 when none is), `labels` `N*H*W` classes or `ignore`; a `[1]` tensor.
    fn afan_pixel_cross_entropy(
        logits: FloatTensor<Self>,
        labels: Arc<[i64]>,
        ignore: i64,
    ) -> FloatTensor<Self>;
}

/// The forward with its saved log-sum-exps, and the backward, on a concrete backend.
pub trait FastCrossEntropyBackward: FastCrossEntropy {
    /// The loss (`[1]`) and each pixel's log-sum-exp over the classes (`[N, H*W]`).
    fn afan_pixel_cross_entropy_saved(
        logits: FloatTensor<Self>,
        labels: &[i64],
        ignore: i64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The logits' gradient from the loss's (`[1]`).
    fn afan_pixel_cross_entropy_backward(
        grad: FloatTensor<Self>,
        logits: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        labels: &[i64],
        ignore: i64,
    ) -> FloatTensor<Self>;
}

fn shape_of(logits: &FlexTensor) -> PixelLogits {
    let shape = logits.shape();
    PixelLogits {
        images: shape[0],
        classes: shape[1],
        pixels: shape[2..].iter().product(),
    }
}

fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("afan's cross-entropy takes contiguous f32 tensors")
}

impl FastCrossEntropy for Flex {
    fn afan_pixel_cross_entropy(logits: FlexTensor, labels: Arc<[i64]>, ignore: i64) -> FlexTensor {
        Self::afan_pixel_cross_entropy_saved(logits, &labels, ignore).0
    }
}

impl FastCrossEntropyBackward for Flex {
    fn afan_pixel_cross_entropy_saved(
        logits: FlexTensor,
        labels: &[i64],
        ignore: i64,
    ) -> (FlexTensor, FlexTensor) {
        let logits = contiguous(logits);
        let shape = shape_of(&logits);
        let out = cross_entropy_forward(shape, f32s(&logits), labels, ignore);
        (
            flex_tensor(vec![out.loss], [1]),
            flex_tensor(out.lse, [shape.images, shape.pixels]),
        )
    }

    fn afan_pixel_cross_entropy_backward(
        grad: FlexTensor,
        logits: FlexTensor,
        lse: FlexTensor,
        labels: &[i64],
        ignore: i64,
    ) -> FlexTensor {
        let (grad, logits, lse) = (contiguous(grad), contiguous(logits), contiguous(lse));
        let shape = shape_of(&logits);
        let dx = cross_entropy_backward(
            shape,
            f32s(&grad)[0],
            f32s(&logits),
            f32s(&lse),
            labels,
            ignore,
        );
        FlexTensor::from_data(TensorData::new(dx, logits.shape()))
    }
}

#[derive(Debug)]
struct CrossEntropyOp;

impl<B: FastCrossEntropyBackward> Backward<B, 1> for CrossEntropyOp {
    /// The logits, their log-sum-exps, the labels and the ignored label.
    type State = (FloatTensor<B>, FloatTensor<B>, Arc<[i64]>, i64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (logits, lse, labels, ignore) = ops.state;
        if let Some(node) = node {
            let dx = B::afan_pixel_cross_entropy_backward(grad, logits, lse, &labels, ignore);
            grads.register::<B>(node.id, dx);
        }
    }
}

impl<B: FastCrossEntropyBackward, C: CheckpointStrategy> FastCrossEntropy for Autodiff<B, C> {
    fn afan_pixel_cross_entropy(
        logits: FloatTensor<Self>,
        labels: Arc<[i64]>,
        ignore: i64,
    ) -> FloatTensor<Self> {
        match CrossEntropyOp
            .prepare::<C>([logits.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let x = logits.into_primitive();
                let (loss, lse) = B::afan_pixel_cross_entropy_saved(x.clone(), &labels, ignore);
                prep.finish((x, lse, labels, ignore), loss)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::afan_pixel_cross_entropy(
                logits.into_primitive(),
                labels,
                ignore,
            )),
        }
    }
}
