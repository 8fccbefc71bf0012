//! The ReLU6 of [`super::kernel`] as a Burn backend extension: a `Flex` implementation that runs
//! the kernels and an `Autodiff` one that records the op with its output as the backward's state.
//! Other backends never reach it: [`super::relu6`] routes them to Burn's `relu6`.

use super::kernel::{relu6_backward, relu6_forward};
use crate::flex::contiguous;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, FloatDType, Scalar, TensorData};

/// ReLU6, `min(max(x, 0), 6)`, of a tensor of any shape.
#[backend_extension(Flex, Autodiff)]
pub trait FastRelu6: Backend {
    /// PyTorch's `F.relu6(x)` (`F.hardtanh(x, 0, 6)`).
    fn afan_relu6(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The backward pass of [`FastRelu6`] on a concrete backend.
pub trait FastRelu6Backward: FastRelu6 {
    /// The input's gradient from the output's and the op's output `y` (or its input: the mask
    /// `0 < y < 6` is the same).
    fn afan_relu6_backward(grad: FloatTensor<Self>, y: FloatTensor<Self>) -> FloatTensor<Self>;
}

fn f32_tensor(values: Vec<f32>, like: &FlexTensor) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, like.shape()))
}

impl FastRelu6 for Flex {
    fn afan_relu6(x: FlexTensor) -> FlexTensor {
        if x.dtype() != DType::F32 {
            return Flex::float_clamp(x, Scalar::from(0.0), Scalar::from(6.0));
        }
        let x = contiguous(x);
        let y = relu6_forward(x.as_slice::<f32>().expect("contiguous f32"));
        f32_tensor(y, &x)
    }
}

impl FastRelu6Backward for Flex {
    fn afan_relu6_backward(grad: FlexTensor, y: FlexTensor) -> FlexTensor {
        let dtype = grad.dtype();
        if dtype != DType::F32 || y.dtype() != DType::F32 {
            // Not reached through `relu6` (f32 only): the same kernel in f32.
            let f32 = |t: FlexTensor| Flex::float_cast(t, FloatDType::F32);
            let dx = Self::afan_relu6_backward(f32(grad), f32(y));
            return Flex::float_cast(dx, FloatDType::from(dtype));
        }
        let (grad, y) = (contiguous(grad), contiguous(y));
        let dx = relu6_backward(
            grad.as_slice::<f32>().expect("contiguous f32"),
            y.as_slice::<f32>().expect("contiguous f32"),
        );
        f32_tensor(dx, &grad)
    }
}

#[derive(Debug)]
struct FastRelu6Op;

impl<B: FastRelu6Backward> Backward<B, 1> for FastRelu6Op {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        if let Some(node) = node {
            grads.register::<B>(node.id, B::afan_relu6_backward(grad, ops.state));
        }
    }
}

impl<B: FastRelu6Backward, C: CheckpointStrategy> FastRelu6 for Autodiff<B, C> {
    fn afan_relu6(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match FastRelu6Op
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::afan_relu6(x.into_primitive());
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::afan_relu6(x.into_primitive())),
        }
    }
}
