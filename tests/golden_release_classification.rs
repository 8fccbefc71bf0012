//! afan's release classification preset against the release's own training step.
//!
//! `tests/fixtures/release_classification_step.safetensors` was written by
//! `xtask/reference/release_step_classification.py`, a line-by-line re-statement (float64) of
//! `Classification/main_perturb.py`'s `train()` with `attack_algo.py`'s `PGD` on ResNet-20 (4
//! images of 8x8): the detached feature after stage 1, five sign steps of 0.5/255 through the
//! tail, `(CE(tail(f_adv)) + CE(model(x))) / 2`, every gradient, the running statistics after the
//! step (two head passes, five attack passes, the adversarial then the clean pass, all in training
//! mode) and the SGD update at the warm-up's learning rate. The weights are not in the fixture:
//! both sides draw them from `hash_weights` by name. Tolerances are those of `golden_cifar.rs`;
//! the script picks the first batch whose step is insensitive to f32 rounding (see its
//! `well_conditioned`).
//!
//! `release_classification_learnable_step.safetensors` (from
//! `xtask/reference/release_step_classification_learnable.py`) does the same for
//! `Classification/main_learnable.py`: four points of ResNet-20 standing in for the release's
//! nine of ResNet-56, their weights' gradient, SGD step and plane projection.

use afan_core::{
    AfanConfig, AfanOutput, AttackBatchNorm, LearnableConfig, LearnableOutput, PointWeights,
    SplitModel, SplitPoint, WeightProjection, afan_objective, attack_copy, cross_entropy,
    learnable_objective, materialize,
};
use afan_models::{CifarResNet, PytorchImport, StateDict};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cifar::{check, release_sgd};
use crate::golden::{assert_close, assert_steps_close, host, tensor};
use crate::hash_weights;

const STEP: &str = "release_classification_step";
const LEARNABLE: &str = "release_classification_learnable_step";

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/fixtures/{name}.safetensors"))
}

fn fixture(name: &str) -> StateDict {
    StateDict::from_safetensors(&fixture_path(name)).unwrap()
}

/// A metadata entry of a fixture, as the script wrote it (JSON).
fn metadata<T: serde::de::DeserializeOwned>(name: &str, key: &str) -> T {
    let bytes = std::fs::read(fixture_path(name)).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    serde_json::from_str(&meta.metadata().as_ref().unwrap()[key]).unwrap()
}

/// The initial weights and running statistics, rebuilt from the key list the script recorded.
fn initial_state(name: &str) -> StateDict {
    let keys: BTreeMap<String, Vec<usize>> = metadata(name, "keys");
    let mut dict = StateDict::default();
    for (key, shape) in keys {
        let values = hash_weights::value(&key, &shape);
        dict.insert(key, values, shape, "float32");
    }
    dict
}

/// A fresh ResNet-20 with the fixture's initial state, and the autodiff test device it is on.
fn fresh_model(name: &str) -> (CifarResNet, Device) {
    let dev: Device = afan_core::device::test_device().autodiff();
    let model = CifarResNet::new(20, 10, &dev)
        .load_pytorch(&initial_state(name))
        .unwrap();
    (materialize(model), dev)
}

/// A fresh model, the batch and the release preset's step through `afan_objective`.
struct Step {
    model: CifarResNet,
    out: AfanOutput<Tensor<2>>,
}

fn run(dict: &StateDict) -> Step {
    let (model, dev) = fresh_model(STEP);
    let x = tensor::<4>(dict, "x", &dev);
    let y: Tensor<1, Int> = tensor::<1>(dict, "y", &dev).int();
    let config = AfanConfig::release_classification();
    config.validate().unwrap();
    let point = model.split_point(&config.split).unwrap();
    let attacker = attack_copy(&model, config.attack_bn);
    let out = afan_objective(&model, &attacker, x, &point, &config, |o| {
        cross_entropy(o.clone(), y.clone())
    });
    Step { model, out }
}

#[test]
fn release_feature_attack_and_losses_match_the_release() {
    let dict = fixture(STEP);
    let (model, dev) = fresh_model(STEP);
    let point = model.split_point("layer1").unwrap();
    let feature = model.forward_to(tensor::<4>(&dict, "x", &dev), &point);
    assert_close(
        "detached feature",
        &host(feature),
        dict.get("feature").unwrap().0,
        1e-5,
    );

    let Step { out, .. } = run(&dict);
    assert_steps_close(
        "adversarial feature",
        &host(out.pgd.adversarial.clone()),
        dict.get("adversarial").unwrap().0,
        0.5 / 255.0,
    );
    let scalar = |t: &Tensor<1>| host(t.clone())[0];
    let want = |k: &str| dict.get(k).unwrap().0[0];
    assert_close(
        "clean loss",
        &[scalar(&out.point_losses[0])],
        &[want("loss_clean")],
        1e-5,
    );
    assert_close(
        "adversarial loss",
        &[scalar(&out.point_losses[1])],
        &[want("loss_adv")],
        1e-5,
    );
    assert_close("loss", &[scalar(&out.loss)], &[want("loss")], 1e-5);
}

/// Every parameter's gradient: the adversarial loss trains only the tail (stage 2, 3, fc), the
/// clean loss everything.
#[test]
fn release_gradients_match_the_release() {
    let dict = fixture(STEP);
    let Step { model, out } = run(&dict);
    let grads = GradientsParams::from_grads(out.loss.backward(), &model);
    assert_eq!(check(&dict, &model, &grads, "grad."), 59);
}

/// The running statistics after the step: stage 1 updated twice (the release's detached head
/// pass, then its clean pass), the tail seven times in the release's order (five attack passes,
/// the adversarial, the clean). `valid()` folds in the pending updates.
#[test]
fn release_running_statistics_match_the_release() {
    let dict = fixture(STEP);
    let Step { model, .. } = run(&dict);
    assert_eq!(
        check(&dict, &model.valid(), &GradientsParams::new(), "after."),
        2 * 19
    );
}

/// The SGD step at the warm-up's learning rate (iteration 3 of a 10-iteration epoch 0:
/// `3 * 0.1 / 9`, `main_perturb.py` `warmup_lr`).
#[test]
fn release_sgd_step_matches_the_release() {
    let dict = fixture(STEP);
    let lr = f64::from(dict.get("lr").unwrap().0[0]);
    assert!((lr - 3.0 * 0.1 / 9.0).abs() < 1e-7, "{lr}");
    let Step { model, out } = run(&dict);
    let grads = GradientsParams::from_grads(out.loss.backward(), &model);
    let model = release_sgd().step(lr, model, grads);
    assert_eq!(check(&dict, &model, &GradientsParams::new(), "sgd."), 59);
}

/// A fresh model, the batch and one step of the learnable variant with the script's points and
/// the release's settings (`main_learnable.py` defaults; `init_weight` 1/9).
struct LearnableStep {
    model: CifarResNet,
    out: LearnableOutput<Tensor<2>>,
    leaf: Tensor<1>,
    weights: PointWeights,
    config: LearnableConfig,
}

fn run_learnable(dict: &StateDict) -> LearnableStep {
    let (model, dev) = fresh_model(LEARNABLE);
    let x = tensor::<4>(dict, "x", &dev);
    let y: Tensor<1, Int> = tensor::<1>(dict, "y", &dev).int();
    let config = LearnableConfig {
        splits: metadata(LEARNABLE, "points"),
        init_weight: Some(1.0 / 9.0),
        ..LearnableConfig::default()
    };
    config.validate().unwrap();
    let points: Vec<SplitPoint> = config
        .splits
        .iter()
        .map(|p| model.split_point(p).unwrap())
        .collect();
    let weights = config.initial_weights();
    let leaf = weights.leaf(&dev);
    let attacker = attack_copy(&model, AttackBatchNorm::Train);
    let out = learnable_objective(&model, &attacker, x, &points, &leaf, &config, |o| {
        cross_entropy(o.clone(), y.clone())
    });
    LearnableStep {
        model,
        out,
        leaf,
        weights,
        config,
    }
}

fn values(dict: &StateDict, key: &str) -> Vec<f32> {
    dict.get(key).unwrap().0.to_vec()
}

/// The losses, the weights' gradient (the L1 term's sign plus each point's share), their SGD step
/// and the release's plane projection.
#[test]
fn learnable_losses_and_weight_step_match_the_release() {
    let dict = fixture(LEARNABLE);
    let LearnableStep {
        model,
        out,
        leaf,
        mut weights,
        config,
    } = run_learnable(&dict);
    let losses: Vec<f32> = out
        .point_losses
        .iter()
        .map(|l| host(l.clone())[0])
        .collect();
    assert_close(
        "clean loss",
        &losses[..1],
        &values(&dict, "loss_clean"),
        1e-5,
    );
    assert_close(
        "point losses",
        &losses[1..],
        &values(&dict, "loss_points"),
        1e-5,
    );
    assert_close(
        "loss",
        &host(out.loss.clone()),
        &values(&dict, "loss"),
        1e-5,
    );

    let grads = out.loss.backward();
    let w_grad = host(leaf.grad(&grads).unwrap());
    assert_close("weights' gradient", &w_grad, &values(&dict, "w_grad"), 1e-4);
    weights.step_from(&leaf, &grads, &config);
    let w: Vec<f32> = weights.values.iter().map(|&v| v as f32).collect();
    assert_close("weights after the step", &w, &values(&dict, "w"), 1e-4);
    assert!((weights.values.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    // The network's gradients are still there for its own optimizer.
    let g = GradientsParams::from_grads(grads, &model);
    assert_eq!(g.len(), 59);
}

/// The simplex projection of the release's updated weights: on the simplex, and the plane's
/// answer whenever that has no negative weight (as here, one step from 1/9 each).
#[test]
fn learnable_simplex_projection_of_the_release_step_is_feasible() {
    let dict = fixture(LEARNABLE);
    let sgd: Vec<f64> = values(&dict, "w_sgd")
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    let (mut plane, mut simplex) = (sgd.clone(), sgd.clone());
    WeightProjection::Plane.apply(&mut plane);
    WeightProjection::Simplex.apply(&mut simplex);
    let plane32: Vec<f32> = plane.iter().map(|&v| v as f32).collect();
    assert_close("plane projection", &plane32, &values(&dict, "w"), 1e-5);
    assert!(simplex.iter().all(|&v| v >= 0.0));
    assert!((simplex.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    if plane.iter().all(|&v| v >= 0.0) {
        assert!(
            plane
                .iter()
                .zip(&simplex)
                .all(|(a, b)| (a - b).abs() < 1e-12)
        );
    }
}

/// Every network gradient: each point trains the layers after it, the clean loss all of them.
#[test]
fn learnable_gradients_match_the_release() {
    let dict = fixture(LEARNABLE);
    let LearnableStep { model, out, .. } = run_learnable(&dict);
    let grads = GradientsParams::from_grads(out.loss.backward(), &model);
    assert_eq!(check(&dict, &model, &grads, "grad."), 59);
}

/// The running statistics after the variant's passes: per point a head pass and three attack
/// passes, then the points' tail passes, then the clean pass.
#[test]
fn learnable_running_statistics_match_the_release() {
    let dict = fixture(LEARNABLE);
    let LearnableStep { model, .. } = run_learnable(&dict);
    assert_eq!(
        check(&dict, &model.valid(), &GradientsParams::new(), "after."),
        2 * 19
    );
}
