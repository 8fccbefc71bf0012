//! One A-FAN training step of CIFAR ResNet-20 against PyTorch.
//!
//! `tests/fixtures/cifar_resnet20_afan.safetensors` was written by
//! `xtask/reference/golden_cifar.py` (PyTorch, in float64): weights, a batch, and everything the
//! release's step computes from them. Here the same step runs through `afan-models` and
//! `afan-core` in f32 and every intermediate is compared: relative 1e-5 (1e-4 for gradients and
//! parameters after a step) of each element's size plus a tenth of the tensor's largest, since f32
//! against f64 can only agree absolutely near zero.

use afan_core::{
    AfanConfig, CleanPass, GradientRouting, MomentStats, SplitModel, SplitPoint, afan_objective,
    attack_copy, cross_entropy, feature_pgd, materialize, moment_exchange, strength_points,
};
use afan_models::{CifarResNet, PytorchImport, StateDict};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Int, Tensor};
use std::path::Path;

use crate::golden::{assert_close, assert_sign_steps_close, host, tensor};

fn fixture() -> StateDict {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/cifar_resnet20_afan.safetensors");
    StateDict::from_safetensors(&path).unwrap()
}

fn model(dict: &StateDict, device: &Device) -> CifarResNet {
    let m = CifarResNet::new(20, 10, device)
        .load_pytorch(&dict.strip_prefix("model."))
        .unwrap();
    materialize(m)
}

/// Why the A-FAN tests below do not run on wgpu: Burn 0.22.1's wgpu backend computes wrong
/// gradients for a sub-network applied to two inputs (A-FAN's tail), and the attack's sign steps
/// flip with them (`conv1.weight`'s gradient off by 240% on lavapipe).
const WGPU_GRADIENTS: &str = "wrong gradients on Burn's wgpu backend (two passes through the tail)";

#[test]
fn eval_logits_match_pytorch() {
    let dict = fixture();
    let dev = afan_core::device::test_device();
    let m = model(&dict, &dev);
    let logits = m.forward(tensor::<4>(&dict, "x", &dev));
    assert_close(
        "eval logits",
        &host(logits),
        dict.get("logits_eval").unwrap().0,
        1e-5,
    );
}

#[test]
fn baseline_gradients_match_pytorch() {
    let dict = fixture();
    let dev = afan_core::device::test_device().autodiff();
    let m = model(&dict, &dev);
    let y: Tensor<1, Int> = tensor::<1>(&dict, "y", &dev).int();
    let loss = cross_entropy(m.forward(tensor::<4>(&dict, "x", &dev)), y);
    let grads = GradientsParams::from_grads(loss.backward(), &m);
    assert_eq!(check(&dict, &m, &grads, "plaingrad."), 59);
}

fn setup(
    dict: &StateDict,
) -> (
    CifarResNet,
    Tensor<4>,
    Tensor<1, Int>,
    AfanConfig,
    SplitPoint,
) {
    let dev = afan_core::device::test_device().autodiff();
    let m = model(dict, &dev);
    let x = tensor::<4>(dict, "x", &dev);
    let y: Tensor<1, Int> = tensor::<1>(dict, "y", &dev).int();
    // afan's routing before issue 17, which this fixture re-states: the augmented point on the
    // live feature, moments exchanged, the clean pass first (the release's classification step is
    // tests/golden_release_classification.rs).
    let mut cfg = AfanConfig {
        mask: "1".parse().unwrap(),
        routing: GradientRouting::HeadAndTail,
        clean_pass: CleanPass::First,
        ..AfanConfig::default()
    };
    cfg.pgd.steps = 3;
    let point = m.split_point("layer1").unwrap();
    (m, x, y, cfg, point)
}

/// Compares every tensor of `m` the prefix selects with the fixture (see [`Check`]) and returns
/// how many were compared.
pub(crate) fn check(
    dict: &StateDict,
    m: &CifarResNet,
    grads: &GradientsParams,
    prefix: &'static str,
) -> usize {
    let mut check = Check {
        dict,
        model: m,
        grads,
        prefix,
        path: vec![],
        checked: 0,
    };
    m.visit(&mut check);
    check.checked
}

#[test]
fn afan_forward_attack_and_losses_match_pytorch() {
    if afan_core::device::skip_on_wgpu(WGPU_GRADIENTS) {
        return;
    }
    let dict = fixture();
    let (m, x, y, cfg, point) = setup(&dict);
    let feature = m.forward_to(x.clone(), &point);
    assert_close(
        "layer1 feature",
        &host(feature.clone()),
        dict.get("feature_layer1").unwrap().0,
        1e-5,
    );
    let attacker = attack_copy(&m, cfg.attack_bn);
    let pgd = feature_pgd(feature.clone(), &cfg.pgd, |f| {
        cross_entropy(attacker.forward_from(f, &point), y.clone())
    });
    assert_sign_steps_close(
        "adversarial feature",
        &host(pgd.adversarial.clone()),
        dict.get("pgd_adversarial").unwrap().0,
        dict.get("pgd_grad0").unwrap().0,
        0.5 / 255.0,
    );
    let mixed = moment_exchange(
        feature,
        pgd.adversarial,
        MomentStats::Positional,
        cfg.moment_epsilon,
    );
    assert_close(
        "moment-exchanged point",
        &host(mixed),
        dict.get("mixed").unwrap().0,
        1e-5,
    );

    // The whole objective, from a fresh model (the attack above moved the running statistics).
    let (m, x, y, cfg, point) = setup(&dict);
    let attacker = attack_copy(&m, cfg.attack_bn);
    let out = afan_objective(&m, &attacker, x, &point, &cfg, |o| {
        cross_entropy(o.clone(), y.clone())
    });
    let scalar = |t: Tensor<1>| host(t)[0];
    let want = |k: &str| dict.get(k).unwrap().0[0];
    assert_close(
        "clean loss",
        &[scalar(out.point_losses[0].clone())],
        &[want("loss_clean")],
        1e-5,
    );
    assert_close(
        "adversarial loss",
        &[scalar(out.point_losses[1].clone())],
        &[want("loss_adv")],
        1e-5,
    );
    assert_close("combined loss", &[scalar(out.loss)], &[want("loss")], 1e-5);
}

/// The backward pass and the SGD step of A-FAN, fed PyTorch's adversarial feature: the strength
/// points, the moment exchange and the loss weights of afan-core, differentiated by Burn.
#[test]
fn afan_gradients_and_sgd_step_match_pytorch_given_its_attack() {
    if afan_core::device::skip_on_wgpu(WGPU_GRADIENTS) {
        return;
    }
    let dict = fixture();
    let (m, x, y, cfg, point) = setup(&dict);
    let feature = m.forward_to(x, &point);
    let adversarial = tensor::<4>(&dict, "pgd_adversarial", &feature.device());
    let points = strength_points(feature.clone(), adversarial, cfg.strengths);
    let losses: Vec<Tensor<1>> = points
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let f = if cfg.mask.applies_to(i) {
                moment_exchange(feature.clone(), f, cfg.stats, cfg.moment_epsilon)
            } else {
                f
            };
            cross_entropy(m.forward_from(f, &point), y.clone())
        })
        .collect();
    let loss = cfg.loss_weights().combine(&losses, &[]);
    let grads = GradientsParams::from_grads(loss.backward(), &m);
    assert_eq!(
        check(&dict, &m, &grads, "grad."),
        59,
        "every parameter's gradient compared"
    );

    let m = release_sgd().step(0.1, m, grads);
    assert_eq!(check(&dict, &m, &GradientsParams::new(), "sgd."), 59);
}

/// The whole A-FAN step through `afan_objective`, afan's own attack included.
///
/// A ReLU network's gradient jumps where a pre-activation crosses zero. afan's attack lands on
/// exact multiples of the step in f32, PyTorch's in f64; the two agree within 1e-5, but with two of
/// the seeds tried (20, 23) one tail unit of one sample sat within that distance of zero, landed on
/// the other side, and moved ~3% of the gradient (adding 1e-5 noise to the attack moved it back
/// for 4 of 5 noise draws). Seed 21 had a last-block unit 1.5e-7 from zero, which the fused batch
/// norm's rounding put on the other side. The fixture's seed (24) has no such unit (with the fused
/// and the composed batch norm alike); the test above, fed PyTorch's attack, does not depend on it.
#[test]
fn afan_objective_gradients_match_pytorch() {
    if afan_core::device::skip_on_wgpu(WGPU_GRADIENTS) {
        return;
    }
    let dict = fixture();
    let (m, x, y, cfg, point) = setup(&dict);
    let attacker = attack_copy(&m, cfg.attack_bn);
    let out = afan_objective(&m, &attacker, x, &point, &cfg, |o| {
        cross_entropy(o.clone(), y.clone())
    });
    let grads = GradientsParams::from_grads(out.loss.backward(), &m);
    assert_eq!(check(&dict, &m, &grads, "grad."), 59);
}

/// Running statistics after one head pass, three attack passes (batch norm in training mode, as in
/// the release) and two training passes. `valid()` folds in the pending updates (Burn's
/// `RunningState` applies an update at the next read), as evaluation and checkpoints do.
#[test]
fn running_statistics_after_an_afan_step_match_pytorch() {
    let dict = fixture();
    let (m, x, y, cfg, point) = setup(&dict);
    let attacker = attack_copy(&m, cfg.attack_bn);
    afan_objective(&m, &attacker, x, &point, &cfg, |o| {
        cross_entropy(o.clone(), y.clone())
    });
    let synced = m.valid();
    assert_eq!(
        check(&dict, &synced, &GradientsParams::new(), "after."),
        2 * 19
    );
}

/// The release's optimizer (`Classification/main_perturb.py` L72-74: PyTorch's SGD, momentum 0.9
/// without dampening, weight decay 5e-4 added to the gradient).
pub(crate) fn release_sgd() -> burn::optim::ModuleOptimizer {
    SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
        }))
        .with_weight_decay(Some(WeightDecayConfig { penalty: 5e-4 }))
        .init()
}

/// Compares a model's parameters (`sgd.`), their gradients (`grad.`) or its running statistics
/// (`after.`) with the fixture, key by key.
struct Check<'a> {
    dict: &'a StateDict,
    model: &'a CifarResNet,
    grads: &'a GradientsParams,
    prefix: &'static str,
    path: Vec<String>,
    checked: usize,
}

impl ModuleVisitor for Check<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let key = self.model.pytorch_key(&self.path.join("."));
        let running = key.contains("running_");
        if running != (self.prefix == "after.") {
            return;
        }
        let value = if self.prefix.ends_with("grad.") {
            self.grads
                .get::<D>(param.id)
                .unwrap_or_else(|| panic!("no gradient for {key}"))
        } else {
            param.val()
        };
        let value = if D == 2 {
            host(value.transpose())
        } else {
            host(value)
        };
        let (want, _) = self
            .dict
            .get(&format!("{}{key}", self.prefix))
            .unwrap_or_else(|| panic!("fixture lacks {key}"));
        assert_close(&format!("{}{key}", self.prefix), &value, want, 1e-4);
        self.checked += 1;
    }
}
