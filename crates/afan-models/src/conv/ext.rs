//! The convolution of [`super::kernel`] as a Burn backend extension: a `Flex` implementation that
//! runs the kernels, and an `Autodiff` implementation whose backward pass runs the fused
//! input/weight-gradient kernel. Other backends never reach it: [`super::Conv2d`] routes them to
//! Burn's `conv2d`.

use super::flipped::{Key, flipped_or};
use super::kernel::{ConvGeom, conv2d_backward_flipping, conv2d_forward};
use super::layout::flip_transpose;
use crate::flex::{contiguous, dims4, flex_tensor};
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension};
use burn::tensor::DType;
use burn::tensor::ops::ConvOptions;
use std::sync::Arc;

/// A bias-free 2-d convolution with symmetric zero padding (grouped and dilated too).
#[backend_extension(Flex, Autodiff)]
pub trait FastConv: Backend {
    /// `x [N, C, H, W]` convolved with `weight [K, C / groups, kh, kw]`.
    fn afan_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
    ) -> FloatTensor<Self>;
}

/// The backward pass of [`FastConv::afan_conv2d`] on a concrete backend.
pub trait FastConvBackward: FastConv {
    /// Gradients with respect to `x` and `weight`, each only if asked for.
    fn afan_conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: ConvOptions<2>,
        need: [bool; 2],
    ) -> (Option<FloatTensor<Self>>, Option<FloatTensor<Self>>);
}

fn options(
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> ConvOptions<2> {
    ConvOptions::new(stride, padding, dilation, groups)
}

/// The geometry and `f32` data of `x` and `weight`, or `None` where the kernels do not apply
/// (another dtype, a layout that is not plain contiguous).
fn f32_inputs<'a>(
    x: &'a FlexTensor,
    weight: &'a FlexTensor,
    options: &ConvOptions<2>,
) -> Option<(ConvGeom, &'a [f32], &'a [f32])> {
    if x.dtype() != DType::F32 || weight.dtype() != DType::F32 {
        return None;
    }
    let ([n, c, h, w], [k, wc, kh, kw]) = (dims4(x), dims4(weight));
    let groups = options.groups;
    let grouped = groups > 0 && c % groups == 0 && k % groups == 0 && wc * groups == c;
    if !grouped || options.is_asymmetric() || options.dilation.contains(&0) {
        return None;
    }
    let geom = ConvGeom {
        batch: n,
        in_ch: c,
        in_hw: [h, w],
        out_ch: k,
        kernel: [kh, kw],
        stride: options.stride,
        padding: options.padding.map(|(p, _)| p),
        dilation: options.dilation,
        groups,
    };
    geom.fits().then_some(())?;
    Some((geom, x.as_slice::<f32>()?, weight.as_slice::<f32>()?))
}

/// The flipped, transposed weight of `weight` (contiguous, its values `ws`), from this thread's
/// scope if one is open ([`super::flipped`]): the cache entry holds a clone of `weight`, so the
/// buffer its key names stays alive and unchanged while cached.
fn cached_flip(weight: &FlexTensor, g: &ConvGeom, ws: &[f32]) -> Arc<Vec<f32>> {
    let key = Key {
        addr: weight.bytes().as_ptr() as usize,
        range: weight.layout().contiguous_offsets().unwrap_or_default(),
        dims: dims4(weight),
    };
    let owner = || Box::new(weight.clone()) as Box<dyn std::any::Any>;
    flipped_or(key, owner, || flip_transpose(g, ws))
}

impl FastConv for Flex {
    fn afan_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
    ) -> FlexTensor {
        let options = options(stride, padding, dilation, groups);
        let (x, weight) = (contiguous(x), contiguous(weight));
        match f32_inputs(&x, &weight, &options) {
            Some((g, xs, ws)) => {
                let [oh, ow] = g.out_hw();
                flex_tensor(conv2d_forward(&g, xs, ws), [g.batch, g.out_ch, oh, ow])
            }
            None => Flex::conv2d(x, weight, None, options),
        }
    }
}

impl FastConvBackward for Flex {
    fn afan_conv2d_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        options: ConvOptions<2>,
        need: [bool; 2],
    ) -> (Option<FlexTensor>, Option<FlexTensor>) {
        // A weight made contiguous here is a fresh buffer each pass: not worth caching.
        let held = weight.is_contiguous() && weight.layout().start_offset() == 0;
        let (x, weight, grad) = (contiguous(x), contiguous(weight), contiguous(grad));
        if grad.dtype() == DType::F32
            && let Some((g, xs, ws)) = f32_inputs(&x, &weight, &options)
            && let Some(dy) = grad.as_slice::<f32>()
        {
            let flipped = || {
                if held {
                    cached_flip(&weight, &g, ws)
                } else {
                    Arc::new(flip_transpose(&g, ws))
                }
            };
            let (dx, dw) = conv2d_backward_flipping(&g, xs, ws, dy, need, flipped);
            let [n, c, h, w] = dims4(&x);
            return (
                dx.map(|dx| flex_tensor(dx, [n, c, h, w])),
                dw.map(|dw| flex_tensor(dw, dims4(&weight))),
            );
        }
        let dx = need[0].then(|| {
            Flex::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone())
        });
        let dw = need[1].then(|| Flex::conv2d_weight_backward(x, weight, grad, options));
        (dx, dw)
    }
}

#[derive(Debug)]
struct FastConvOp;

impl<B: FastConvBackward> Backward<B, 2> for FastConvOp {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, w_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let w = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(w_state);
        let need = [node_x.is_some(), node_w.is_some()];
        let (dx, dw) = B::afan_conv2d_backward(x, w, grad, options, need);
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<B>(node.id, dx);
        }
        if let (Some(node), Some(dw)) = (node_w, dw) {
            grads.register::<B>(node.id, dw);
        }
    }
}

impl<B: FastConvBackward, C: CheckpointStrategy> FastConv for Autodiff<B, C> {
    fn afan_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
    ) -> FloatTensor<Self> {
        let options = options(stride, padding, dilation, groups);
        let prep = FastConvOp
            .prepare::<C>([x.node(), weight.node()])
            .compute_bound()
            .stateful();
        match prep {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let w_state = prep.checkpoint(&weight);
                let out = B::afan_conv2d(
                    x.into_primitive(),
                    weight.into_primitive(),
                    stride,
                    padding,
                    dilation,
                    groups,
                );
                prep.finish((x_state, w_state, options), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::afan_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                stride,
                padding,
                dilation,
                groups,
            )),
        }
    }
}
