//! The resize of [`super::kernel`] as a Burn backend extension: a `Flex` implementation that runs
//! the kernels and an `Autodiff` one that records the op (its backward needs only the shapes: the
//! resize is linear). Other backends never reach it: [`super::resize_bilinear`] routes them to
//! Burn's `interpolate`.

use super::kernel::{Resize, bilinear_backward, bilinear_forward};
use crate::flex::{contiguous, dims4, flex_tensor};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{DType, Shape, TensorData};

/// Bilinear resize of `[N, C, H, W]` to `[N, C, size[0], size[1]]`.
#[backend_extension(Flex, Autodiff)]
pub trait FastResize: Backend {
    /// PyTorch's `F.interpolate(x, size, mode="bilinear", align_corners)`.
    fn afan_resize_bilinear(
        x: FloatTensor<Self>,
        size: [usize; 2],
        align_corners: bool,
    ) -> FloatTensor<Self>;
}

/// The backward pass of [`FastResize`] on a concrete backend.
pub trait FastResizeBackward: FastResize {
    /// The input's gradient (of shape `input`) from the output's.
    fn afan_resize_bilinear_backward(
        grad: FloatTensor<Self>,
        input: [usize; 4],
        align_corners: bool,
    ) -> FloatTensor<Self>;
}

fn options(size: [usize; 2], align_corners: bool) -> InterpolateOptions {
    InterpolateOptions::new(InterpolateMode::Bilinear)
        .with_align_corners(align_corners)
        .with_output_size(size)
}

impl FastResize for Flex {
    fn afan_resize_bilinear(x: FlexTensor, size: [usize; 2], align_corners: bool) -> FlexTensor {
        let x = contiguous(x);
        let [n, c, h, w] = dims4(&x);
        match x
            .as_slice::<f32>()
            .filter(|_| x.dtype() == DType::F32 && h * w > 0)
        {
            Some(xs) => {
                let r = Resize {
                    planes: n * c,
                    input: [h, w],
                    output: size,
                    align_corners,
                };
                flex_tensor(bilinear_forward(&r, xs), [n, c, size[0], size[1]])
            }
            None => Flex::interpolate(x, size, options(size, align_corners)),
        }
    }
}

impl FastResizeBackward for Flex {
    fn afan_resize_bilinear_backward(
        grad: FlexTensor,
        input: [usize; 4],
        align_corners: bool,
    ) -> FlexTensor {
        let grad = contiguous(grad);
        let [n, c, h, w] = input;
        let [_, _, oh, ow] = dims4(&grad);
        if grad.dtype() == DType::F32
            && h * w > 0
            && let Some(dy) = grad.as_slice::<f32>()
        {
            let r = Resize {
                planes: n * c,
                input: [h, w],
                output: [oh, ow],
                align_corners,
            };
            return flex_tensor(bilinear_backward(&r, dy), input);
        }
        // Burn's backward takes the input only for its shape and dtype.
        let x = FlexTensor::from_data(TensorData::full_dtype(
            Shape::from(input),
            0.0,
            grad.dtype(),
        ));
        Flex::interpolate_backward(x, grad, [oh, ow], options([oh, ow], align_corners))
    }
}

#[derive(Debug)]
struct FastResizeOp;

impl<B: FastResizeBackward> Backward<B, 1> for FastResizeOp {
    type State = ([usize; 4], bool);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (input, align_corners) = ops.state;
        if let Some(node) = node {
            let dx = B::afan_resize_bilinear_backward(grad, input, align_corners);
            grads.register::<B>(node.id, dx);
        }
    }
}

impl<B: FastResizeBackward, C: CheckpointStrategy> FastResize for Autodiff<B, C> {
    fn afan_resize_bilinear(
        x: FloatTensor<Self>,
        size: [usize; 2],
        align_corners: bool,
    ) -> FloatTensor<Self> {
        let shape = x.primitive().shape();
        let input = [shape[0], shape[1], shape[2], shape[3]];
        match FastResizeOp
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::afan_resize_bilinear(x.into_primitive(), size, align_corners);
                prep.finish((input, align_corners), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::afan_resize_bilinear(
                x.into_primitive(),
                size,
                align_corners,
            )),
        }
    }
}
