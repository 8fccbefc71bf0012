//! The kernels of [`super::kernel`] as a Burn backend extension: a `Flex` implementation that runs
//! them, and an `Autodiff` implementation that records the whole batch norm (+ residual add)
//! (+ ReLU) as one operation whose backward pass is [`kernel::normalize_backward`]. Other backends
//! and other dtypes never reach it: [`super::BatchNorm2d`] routes them to [`super::fallback`].

use super::backward::{self, NormGrad};
use super::kernel::{self, Planes};
use crate::flex::{contiguous, dims4, flex_tensor};
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension};
use burn::tensor::DType;

/// Batch norm over `[N, C, H, W]`, then optionally a ReLU; the `_add` forms add a residual before
/// the ReLU. (Four methods rather than an `Option` residual, which the extension macro does not
/// route.)
#[backend_extension(Flex, Autodiff)]
pub trait FusedNorm: Backend {
    /// With the batch's statistics: the output, the batch mean and the biased batch variance.
    fn afan_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// [`FusedNorm::afan_norm_train`] with `residual` added before the ReLU.
    fn afan_norm_train_add(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// With given (running) statistics `mean` and `var`.
    fn afan_norm_eval(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> FloatTensor<Self>;

    /// [`FusedNorm::afan_norm_eval`] with `residual` added before the ReLU.
    #[allow(clippy::too_many_arguments)]
    fn afan_norm_eval_add(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> FloatTensor<Self>;
}

/// What the backward pass of [`FusedNorm`] keeps from the forward, besides `x`.
#[derive(Clone, Debug)]
pub struct NormSaved<T> {
    /// The output, when a ReLU followed (its sign is the ReLU's gradient mask).
    pub relu_out: Option<T>,
    /// Per-channel scale.
    pub gamma: T,
    /// The statistics the forward normalised with.
    pub mean: T,
    /// See `mean`.
    pub var: T,
    /// Variance floor.
    pub epsilon: f64,
    /// Whether `mean`/`var` are the batch's own (train mode), so `x`'s gradient flows through them.
    pub batch_stats: bool,
}

/// The backward pass of [`FusedNorm`] on a concrete backend.
pub trait FusedNormBackward: FusedNorm {
    /// Gradients of `[x, gamma, beta, residual]`, each only where `need` asks for it.
    fn afan_norm_backward(
        x: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        saved: NormSaved<FloatTensor<Self>>,
        need: [bool; 4],
    ) -> [Option<FloatTensor<Self>>; 4];
}

/// The `f32` data of a flex tensor (made contiguous first).
fn f32_data(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("afan's batch norm runs on contiguous f32 data; BatchNorm2d routes others to Burn")
}

fn planes(x: &FlexTensor) -> Planes {
    let [batch, channels, h, w] = dims4(x);
    Planes {
        batch,
        channels,
        pixels: h * w,
    }
}

/// Runs `f` on `t`'s `f32` data in place when `t` owns it alone (an activation or gradient nothing
/// else holds: no buffer to allocate), else on a copy.
fn in_place_or_copy(mut t: FlexTensor, f: impl FnOnce(&mut [f32])) -> FlexTensor {
    let t_len = dims4(&t).iter().product::<usize>();
    if let Some(data) = t.try_storage_mut::<f32>().filter(|d| d.len() == t_len) {
        f(data);
        return t;
    }
    let mut data = f32_data(&t).to_vec();
    f(&mut data);
    flex_tensor(data, dims4(&t))
}

fn forward(
    x: FlexTensor,
    [gamma, beta, mean, var]: [&FlexTensor; 4],
    residual: Option<FlexTensor>,
    epsilon: f64,
    relu: bool,
) -> FlexTensor {
    let (x, residual) = (contiguous(x), residual.map(contiguous));
    let p = planes(&x);
    let inv_std = kernel::inv_std(f32_data(var), epsilon);
    let [scale, shift] = kernel::affine(f32_data(gamma), f32_data(beta), f32_data(mean), &inv_std);
    let residual = residual.as_ref().map(f32_data);
    in_place_or_copy(x, |y| {
        kernel::normalize_in_place(p, y, [&scale, &shift], residual, relu)
    })
}

fn flex_train(
    x: FlexTensor,
    [gamma, beta]: [FlexTensor; 2],
    residual: Option<FlexTensor>,
    epsilon: f64,
    relu: bool,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let x = contiguous(x);
    let (mean, var) = kernel::batch_stats(planes(&x), f32_data(&x));
    let c = mean.len();
    let (mean, var) = (flex_tensor(mean, [c]), flex_tensor(var, [c]));
    let (gamma, beta) = (contiguous(gamma), contiguous(beta));
    let y = forward(x, [&gamma, &beta, &mean, &var], residual, epsilon, relu);
    (y, mean, var)
}

fn flex_eval(
    x: FlexTensor,
    params: [FlexTensor; 4],
    residual: Option<FlexTensor>,
    epsilon: f64,
    relu: bool,
) -> FlexTensor {
    let [gamma, beta, mean, var] = params.map(contiguous);
    forward(x, [&gamma, &beta, &mean, &var], residual, epsilon, relu)
}

impl FusedNorm for Flex {
    fn afan_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        relu: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        flex_train(x, [gamma, beta], None, epsilon, relu)
    }

    fn afan_norm_train_add(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        residual: FlexTensor,
        epsilon: f64,
        relu: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        flex_train(x, [gamma, beta], Some(residual), epsilon, relu)
    }

    fn afan_norm_eval(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        var: FlexTensor,
        epsilon: f64,
        relu: bool,
    ) -> FlexTensor {
        flex_eval(x, [gamma, beta, mean, var], None, epsilon, relu)
    }

    fn afan_norm_eval_add(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        var: FlexTensor,
        residual: FlexTensor,
        epsilon: f64,
        relu: bool,
    ) -> FlexTensor {
        flex_eval(x, [gamma, beta, mean, var], Some(residual), epsilon, relu)
    }
}

impl FusedNormBackward for Flex {
    fn afan_norm_backward(
        x: FlexTensor,
        grad: FlexTensor,
        saved: NormSaved<FlexTensor>,
        need: [bool; 4],
    ) -> [Option<FlexTensor>; 4] {
        let (x, grad) = (contiguous(x), contiguous(grad));
        let relu_out = saved.relu_out.map(contiguous);
        let [gamma, mean, var] = [saved.gamma, saved.mean, saved.var].map(contiguous);
        assert_eq!(
            grad.dtype(),
            DType::F32,
            "afan's batch norm: f32 gradients only"
        );
        let inv_std = kernel::inv_std(f32_data(&var), saved.epsilon);
        let args = NormGrad {
            planes: planes(&x),
            x: f32_data(&x),
            relu_out: relu_out.as_ref().map(f32_data),
            gamma: f32_data(&gamma),
            mean: f32_data(&mean),
            inv_std: &inv_std,
            batch_stats: saved.batch_stats,
        };
        let [need_x, need_gamma, need_beta, need_residual] = need;
        let need_sums = need_gamma || need_beta || (need_x && saved.batch_stats);
        let sums = backward::grad_sums(&args, f32_data(&grad), [need_sums, need_residual]);
        let (shape, c) = (dims4(&x), args.planes.channels);
        // Without a ReLU the residual's gradient is the output's, shared rather than copied (and
        // then the input gradient cannot take over the output gradient's buffer).
        let shared = (need_residual && sums.masked.is_none()).then(|| grad.clone());
        let dx = need_x
            .then(|| in_place_or_copy(grad, |g| backward::input_grad_in_place(&args, &sums, g)));
        [
            dx,
            need_gamma.then(|| flex_tensor(sums.gamma_grad(&args), [c])),
            need_beta.then(|| flex_tensor(sums.beta_grad(), [c])),
            sums.masked.map(|g| flex_tensor(g, shape)).or(shared),
        ]
    }
}

/// The recorded operation; `N` is 3 (`x`, `gamma`, `beta`) or 4 (with the residual).
#[derive(Debug)]
struct FusedNormOp<const N: usize>;

impl<B: FusedNormBackward, const N: usize> Backward<B, N> for FusedNormOp<N> {
    type State = (NodeId, NormSaved<B::FloatTensorPrimitive>);

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, saved) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let mut need = [false; 4];
        for (n, parent) in need.iter_mut().zip(&ops.parents) {
            *n = parent.is_some();
        }
        let computed = B::afan_norm_backward(x, grad, saved, need);
        for (parent, g) in ops.parents.into_iter().zip(computed) {
            if let (Some(node), Some(g)) = (parent, g) {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// Runs `forward` on the inner backend and records it (if anything needs a gradient) as one
/// [`FusedNormOp`] over `inputs` (`x` first). `forward` returns the output and the statistics it
/// normalised with.
fn record<B, C, const N: usize>(
    inputs: [&FloatTensor<Autodiff<B, C>>; N],
    relu: bool,
    epsilon: f64,
    batch_stats: bool,
    forward: impl FnOnce() -> (
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
    ),
) -> (
    FloatTensor<Autodiff<B, C>>,
    B::FloatTensorPrimitive,
    B::FloatTensorPrimitive,
)
where
    B: FusedNormBackward,
    C: CheckpointStrategy,
{
    let gamma = inputs[1].primitive().clone();
    match FusedNormOp::<N>
        .prepare::<C>(inputs.map(|t| t.node()))
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(inputs[0]);
            let (out, mean, var) = forward();
            let saved = NormSaved {
                relu_out: relu.then(|| out.clone()),
                gamma,
                mean: mean.clone(),
                var: var.clone(),
                epsilon,
                batch_stats,
            };
            (prep.finish((x_state, saved), out), mean, var)
        }
        OpsKind::UnTracked(prep) => {
            let (out, mean, var) = forward();
            (prep.finish(out), mean, var)
        }
    }
}

type AdTensor<B, C> = FloatTensor<Autodiff<B, C>>;

/// `record` for the three- or four-input form.
fn record_any<B, C>(
    [x, gamma, beta]: [&AdTensor<B, C>; 3],
    residual: Option<&AdTensor<B, C>>,
    [relu, batch_stats]: [bool; 2],
    epsilon: f64,
    forward: impl FnOnce() -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>),
) -> (AdTensor<B, C>, FloatTensor<B>, FloatTensor<B>)
where
    B: FusedNormBackward,
    C: CheckpointStrategy,
{
    match residual {
        Some(r) => record::<B, C, 4>([x, gamma, beta, r], relu, epsilon, batch_stats, forward),
        None => record::<B, C, 3>([x, gamma, beta], relu, epsilon, batch_stats, forward),
    }
}

/// Train mode on autodiff: the inner backend's fused op, recorded; the statistics untracked.
fn autodiff_train<B: FusedNormBackward, C: CheckpointStrategy>(
    x: AdTensor<B, C>,
    [gamma, beta]: [AdTensor<B, C>; 2],
    residual: Option<AdTensor<B, C>>,
    epsilon: f64,
    relu: bool,
) -> (AdTensor<B, C>, AdTensor<B, C>, AdTensor<B, C>) {
    let forward = || {
        let (x, g, b) = (
            x.primitive().clone(),
            gamma.primitive().clone(),
            beta.primitive().clone(),
        );
        match &residual {
            Some(r) => B::afan_norm_train_add(x, g, b, r.primitive().clone(), epsilon, relu),
            None => B::afan_norm_train(x, g, b, epsilon, relu),
        }
    };
    let inputs = [&x, &gamma, &beta];
    let (out, mean, var) =
        record_any::<B, C>(inputs, residual.as_ref(), [relu, true], epsilon, forward);
    (out, AdTensor::<B, C>::new(mean), AdTensor::<B, C>::new(var))
}

/// Eval mode on autodiff: the running statistics are constants.
fn autodiff_eval<B: FusedNormBackward, C: CheckpointStrategy>(
    x: AdTensor<B, C>,
    [gamma, beta, mean, var]: [AdTensor<B, C>; 4],
    residual: Option<AdTensor<B, C>>,
    epsilon: f64,
    relu: bool,
) -> AdTensor<B, C> {
    let (mean, var) = (mean.into_primitive(), var.into_primitive());
    let forward = || {
        let (x, g, b) = (
            x.primitive().clone(),
            gamma.primitive().clone(),
            beta.primitive().clone(),
        );
        let (m, v) = (mean.clone(), var.clone());
        let out = match &residual {
            Some(r) => B::afan_norm_eval_add(x, g, b, m, v, r.primitive().clone(), epsilon, relu),
            None => B::afan_norm_eval(x, g, b, m, v, epsilon, relu),
        };
        (out, mean, var)
    };
    let inputs = [&x, &gamma, &beta];
    record_any::<B, C>(inputs, residual.as_ref(), [relu, false], epsilon, forward).0
}

impl<B: FusedNormBackward, C: CheckpointStrategy> FusedNorm for Autodiff<B, C> {
    fn afan_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        autodiff_train::<B, C>(x, [gamma, beta], None, epsilon, relu)
    }

    fn afan_norm_train_add(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        autodiff_train::<B, C>(x, [gamma, beta], Some(residual), epsilon, relu)
    }

    fn afan_norm_eval(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> FloatTensor<Self> {
        autodiff_eval::<B, C>(x, [gamma, beta, mean, var], None, epsilon, relu)
    }

    fn afan_norm_eval_add(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        epsilon: f64,
        relu: bool,
    ) -> FloatTensor<Self> {
        autodiff_eval::<B, C>(x, [gamma, beta, mean, var], Some(residual), epsilon, relu)
    }
}
