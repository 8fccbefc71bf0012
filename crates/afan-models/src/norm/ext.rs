//! The kernels of [`super::kernel`] and [`super::backward`] as a Burn backend extension: the
//! trait, its `Flex` implementation (forward and backward pass; the `Autodiff` one, which records
//! the op, is in `super::autodiff`). Other backends and other dtypes never reach it:
//! [`super::BatchNorm2d`] routes them to `super::fallback`.

use super::backward::{self, NormGrad};
use super::kernel::{self, Activation, Planes};
use crate::flex::{contiguous, dims4, flex_tensor};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, backend_extension};
use burn::tensor::DType;

/// Batch norm over `[N, C, H, W]`, then an [`Activation`] (none, ReLU or ReLU6); the `_add` forms
/// add a residual before the activation. (Four methods rather than an `Option` residual, which the
/// extension macro does not route.)
#[backend_extension(Flex, Autodiff)]
pub trait FusedNorm: Backend {
    /// With the batch's statistics: the output, the batch mean and the biased batch variance.
    fn afan_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// [`FusedNorm::afan_norm_train`] with `residual` added before the activation.
    fn afan_norm_train_add(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// With given (running) statistics `mean` and `var`.
    fn afan_norm_eval(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
    ) -> FloatTensor<Self>;

    /// [`FusedNorm::afan_norm_eval`] with `residual` added before the activation.
    #[allow(clippy::too_many_arguments)]
    fn afan_norm_eval_add(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
    ) -> FloatTensor<Self>;
}

/// What the backward pass of [`FusedNorm`] keeps from the forward, besides `x`.
#[derive(Clone, Debug)]
pub struct NormSaved<T> {
    /// The activation that followed and the output, when one did (the output masks its
    /// gradient).
    pub activated: Option<(Activation, T)>,
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
    activation: Activation,
) -> FlexTensor {
    let (x, residual) = (contiguous(x), residual.map(contiguous));
    let p = planes(&x);
    let inv_std = kernel::inv_std(f32_data(var), epsilon);
    let [scale, shift] = kernel::affine(f32_data(gamma), f32_data(beta), f32_data(mean), &inv_std);
    let residual = residual.as_ref().map(f32_data);
    in_place_or_copy(x, |y| {
        kernel::normalize_in_place(p, y, [&scale, &shift], residual, activation)
    })
}

fn flex_train(
    x: FlexTensor,
    [gamma, beta]: [FlexTensor; 2],
    residual: Option<FlexTensor>,
    epsilon: f64,
    activation: Activation,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let x = contiguous(x);
    let (mean, var) = kernel::batch_stats(planes(&x), f32_data(&x));
    let c = mean.len();
    let (mean, var) = (flex_tensor(mean, [c]), flex_tensor(var, [c]));
    let (gamma, beta) = (contiguous(gamma), contiguous(beta));
    let y = forward(
        x,
        [&gamma, &beta, &mean, &var],
        residual,
        epsilon,
        activation,
    );
    (y, mean, var)
}

fn flex_eval(
    x: FlexTensor,
    params: [FlexTensor; 4],
    residual: Option<FlexTensor>,
    epsilon: f64,
    activation: Activation,
) -> FlexTensor {
    let [gamma, beta, mean, var] = params.map(contiguous);
    forward(
        x,
        [&gamma, &beta, &mean, &var],
        residual,
        epsilon,
        activation,
    )
}

impl FusedNorm for Flex {
    fn afan_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        activation: Activation,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        flex_train(x, [gamma, beta], None, epsilon, activation)
    }

    fn afan_norm_train_add(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        residual: FlexTensor,
        epsilon: f64,
        activation: Activation,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        flex_train(x, [gamma, beta], Some(residual), epsilon, activation)
    }

    fn afan_norm_eval(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        var: FlexTensor,
        epsilon: f64,
        activation: Activation,
    ) -> FlexTensor {
        flex_eval(x, [gamma, beta, mean, var], None, epsilon, activation)
    }

    fn afan_norm_eval_add(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        mean: FlexTensor,
        var: FlexTensor,
        residual: FlexTensor,
        epsilon: f64,
        activation: Activation,
    ) -> FlexTensor {
        flex_eval(
            x,
            [gamma, beta, mean, var],
            Some(residual),
            epsilon,
            activation,
        )
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
        let activated = saved.activated.map(|(a, out)| (a, contiguous(out)));
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
            activated: activated.as_ref().map(|(a, out)| (*a, f32_data(out))),
            gamma: f32_data(&gamma),
            mean: f32_data(&mean),
            inv_std: &inv_std,
            batch_stats: saved.batch_stats,
        };
        let [need_x, need_gamma, need_beta, need_residual] = need;
        let need_sums = need_gamma || need_beta || (need_x && saved.batch_stats);
        let sums = backward::grad_sums(&args, f32_data(&grad), [need_sums, need_residual]);
        let (shape, c) = (dims4(&x), args.planes.channels);
        // Without an activation the residual's gradient is the output's, shared rather than copied
        // (and then the input gradient cannot take over the output gradient's buffer).
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
