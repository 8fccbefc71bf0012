//! The max pool of [`super::kernel`] as a Burn backend extension: a `Flex` implementation that
//! runs the kernels (with Burn's op for what they do not take) and an `Autodiff` one that keeps
//! the picks as the backward's state. Other backends never reach it: [`super::max_pool2d`]
//! routes them to Burn's `max_pool2d`.

use super::kernel::{Pool2d, max_pool2d_backward, max_pool2d_forward};
use crate::flex::{contiguous, dims4, flex_tensor};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::{FloatTensorOps, IntTensorOps, ModuleOps};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, FloatDType, IntDType, Shape, TensorData};

/// 2-d max pooling of an NCHW tensor: window, step and symmetric padding per axis.
#[backend_extension(Flex, Autodiff)]
pub trait FastMaxPool: Backend {
    /// PyTorch's `F.max_pool2d(x, kernel, stride, padding)`.
    fn afan_max_pool2d(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self>;
}

/// What the backward pass of [`FastMaxPool`] needs on a concrete backend.
pub trait FastMaxPoolBackward: FastMaxPool {
    /// The pool and each output's pick (the flat position in its input plane).
    fn afan_max_pool2d_with_indices(
        x: FloatTensor<Self>,
        pool: Pool2d,
    ) -> (FloatTensor<Self>, IntTensor<Self>);

    /// The input gradient (`[N, C, H, W]` = `dims`) from the output's and the picks.
    fn afan_max_pool2d_backward(
        grad: FloatTensor<Self>,
        indices: IntTensor<Self>,
        dims: [usize; 4],
    ) -> FloatTensor<Self>;
}

/// The `f32` data of `x` where the kernels take it (an `f32` tensor, a pool they handle).
fn f32_input<'a>(x: &'a FlexTensor, pool: &Pool2d) -> Option<&'a [f32]> {
    let [_, _, h, w] = dims4(x);
    (x.dtype() == DType::F32 && pool.applies([h, w]))
        .then(|| x.as_slice::<f32>())
        .flatten()
}

/// The pool of `x` and, when `indices` (always on Burn's path), each output's pick.
fn forward(x: FlexTensor, pool: Pool2d, indices: bool) -> (FlexTensor, Option<FlexTensor>) {
    let x = contiguous(x);
    let [n, c, h, w] = dims4(&x);
    let Some(xs) = f32_input(&x, &pool) else {
        // Not reached through `max_pool2d` (f32 and handled pools only): Burn's op.
        let (kernel, stride, padding) = (pool.kernel, pool.stride, pool.padding);
        let out =
            Flex::max_pool2d_with_indices(x, kernel, stride, padding, [1, 1], false, IntDType::I64);
        return (out.output, Some(out.indices));
    };
    let [oh, ow] = pool.out_hw([h, w]);
    let (y, idx) = max_pool2d_forward(xs, [n, c, h, w], &pool, indices);
    let shape = [n, c, oh, ow];
    let idx = idx.map(|idx| FlexTensor::from_data(TensorData::new(idx, Shape::from(shape))));
    (flex_tensor(y, shape), idx)
}

impl FastMaxPool for Flex {
    fn afan_max_pool2d(
        x: FlexTensor,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FlexTensor {
        let pool = Pool2d {
            kernel,
            stride,
            padding,
        };
        forward(x, pool, false).0
    }
}

impl FastMaxPoolBackward for Flex {
    fn afan_max_pool2d_with_indices(x: FlexTensor, pool: Pool2d) -> (FlexTensor, FlexTensor) {
        let (y, idx) = forward(x, pool, true);
        (y, idx.expect("indices asked for"))
    }

    fn afan_max_pool2d_backward(
        grad: FlexTensor,
        indices: FlexTensor,
        dims: [usize; 4],
    ) -> FlexTensor {
        let dtype = grad.dtype();
        if dtype != DType::F32 || indices.dtype() != DType::I64 {
            // Not reached through `max_pool2d` (f32 only): the same kernel in f32 and i64.
            let grad = Flex::float_cast(grad, FloatDType::F32);
            let indices = Flex::int_cast(indices, IntDType::I64);
            let dx = Self::afan_max_pool2d_backward(grad, indices, dims);
            return Flex::float_cast(dx, FloatDType::from(dtype));
        }
        let (grad, indices) = (contiguous(grad), contiguous(indices));
        let dy = grad.as_slice::<f32>().expect("contiguous f32");
        let idx = indices.as_slice::<i64>().expect("contiguous i64");
        flex_tensor(max_pool2d_backward(dy, idx, dims), dims)
    }
}

#[derive(Debug)]
struct FastMaxPoolOp;

impl<B: FastMaxPoolBackward> Backward<B, 1> for FastMaxPoolOp {
    type State = (IntTensor<B>, [usize; 4]);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node {
            let (indices, dims) = ops.state;
            grads.register::<B>(node.id, B::afan_max_pool2d_backward(grad, indices, dims));
        }
    }
}

impl<B: FastMaxPoolBackward, C: CheckpointStrategy> FastMaxPool for Autodiff<B, C> {
    fn afan_max_pool2d(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        let pool = Pool2d {
            kernel,
            stride,
            padding,
        };
        match FastMaxPoolOp
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let shape = x.shape();
                let dims = [shape[0], shape[1], shape[2], shape[3]];
                let (y, idx) = B::afan_max_pool2d_with_indices(x.into_primitive(), pool);
                prep.finish((idx, dims), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::afan_max_pool2d(
                x.into_primitive(),
                kernel,
                stride,
                padding,
            )),
        }
    }
}
