//! The autodiff side of [`FusedNorm`]: the whole batch norm (+ residual add) (+ activation) is
//! recorded as one operation, whose backward pass is the inner backend's [`FusedNormBackward`] (the
//! kernels of [`super::backward`] on flex). The batch statistics it returns are untracked: only the
//! running statistics read them.

use super::ext::{FusedNorm, FusedNormBackward, NormSaved};
use super::kernel::Activation;
use burn::backend::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;

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
    activation: Activation,
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
                activated: (activation != Activation::None).then(|| (activation, out.clone())),
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
    (activation, batch_stats): (Activation, bool),
    epsilon: f64,
    forward: impl FnOnce() -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>),
) -> (AdTensor<B, C>, FloatTensor<B>, FloatTensor<B>)
where
    B: FusedNormBackward,
    C: CheckpointStrategy,
{
    match residual {
        Some(r) => record::<B, C, 4>(
            [x, gamma, beta, r],
            activation,
            epsilon,
            batch_stats,
            forward,
        ),
        None => record::<B, C, 3>([x, gamma, beta], activation, epsilon, batch_stats, forward),
    }
}

/// Train mode on autodiff: the inner backend's fused op, recorded; the statistics untracked.
fn autodiff_train<B: FusedNormBackward, C: CheckpointStrategy>(
    x: AdTensor<B, C>,
    [gamma, beta]: [AdTensor<B, C>; 2],
    residual: Option<AdTensor<B, C>>,
    epsilon: f64,
    activation: Activation,
) -> (AdTensor<B, C>, AdTensor<B, C>, AdTensor<B, C>) {
    let forward = || {
        let (x, g, b) = (
            x.primitive().clone(),
            gamma.primitive().clone(),
            beta.primitive().clone(),
        );
        match &residual {
            Some(r) => B::afan_norm_train_add(x, g, b, r.primitive().clone(), epsilon, activation),
            None => B::afan_norm_train(x, g, b, epsilon, activation),
        }
    };
    let inputs = [&x, &gamma, &beta];
    let (out, mean, var) = record_any::<B, C>(
        inputs,
        residual.as_ref(),
        (activation, true),
        epsilon,
        forward,
    );
    (out, AdTensor::<B, C>::new(mean), AdTensor::<B, C>::new(var))
}

/// Eval mode on autodiff: the running statistics are constants.
fn autodiff_eval<B: FusedNormBackward, C: CheckpointStrategy>(
    x: AdTensor<B, C>,
    [gamma, beta, mean, var]: [AdTensor<B, C>; 4],
    residual: Option<AdTensor<B, C>>,
    epsilon: f64,
    activation: Activation,
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
            Some(r) => {
                B::afan_norm_eval_add(x, g, b, m, v, r.primitive().clone(), epsilon, activation)
            }
            None => B::afan_norm_eval(x, g, b, m, v, epsilon, activation),
        };
        (out, mean, var)
    };
    let inputs = [&x, &gamma, &beta];
    record_any::<B, C>(
        inputs,
        residual.as_ref(),
        (activation, false),
        epsilon,
        forward,
    )
    .0
}

impl<B: FusedNormBackward, C: CheckpointStrategy> FusedNorm for Autodiff<B, C> {
    fn afan_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        autodiff_train::<B, C>(x, [gamma, beta], None, epsilon, activation)
    }

    fn afan_norm_train_add(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        autodiff_train::<B, C>(x, [gamma, beta], Some(residual), epsilon, activation)
    }

    fn afan_norm_eval(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
    ) -> FloatTensor<Self> {
        autodiff_eval::<B, C>(x, [gamma, beta, mean, var], None, epsilon, activation)
    }

    fn afan_norm_eval_add(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
    ) -> FloatTensor<Self> {
        autodiff_eval::<B, C>(
            x,
            [gamma, beta, mean, var],
            Some(residual),
            epsilon,
            activation,
        )
    }
}
