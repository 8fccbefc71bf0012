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

use afan_core::{
    AfanConfig, AfanOutput, SplitModel, afan_objective, attack_copy, cross_entropy, materialize,
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

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/release_classification_step.safetensors")
}

fn fixture() -> StateDict {
    StateDict::from_safetensors(&fixture_path()).unwrap()
}

/// The initial weights and running statistics, rebuilt from the key list the script recorded.
fn initial_state() -> StateDict {
    let bytes = std::fs::read(fixture_path()).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let keys = &meta.metadata().as_ref().unwrap()["keys"];
    let keys: BTreeMap<String, Vec<usize>> = serde_json::from_str(keys).unwrap();
    let mut dict = StateDict::default();
    for (key, shape) in keys {
        let values = hash_weights::value(&key, &shape);
        dict.insert(key, values, shape, "float32");
    }
    dict
}

/// A fresh model, the batch and the release preset's step through `afan_objective`.
struct Step {
    model: CifarResNet,
    out: AfanOutput<Tensor<2>>,
}

fn run(dict: &StateDict) -> Step {
    let dev: Device = afan_core::device::test_device().autodiff();
    let model = CifarResNet::new(20, 10, &dev)
        .load_pytorch(&initial_state())
        .unwrap();
    let model = materialize(model);
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
    let dict = fixture();
    let dev = afan_core::device::test_device().autodiff();
    let model = materialize(
        CifarResNet::new(20, 10, &dev)
            .load_pytorch(&initial_state())
            .unwrap(),
    );
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
    let dict = fixture();
    let Step { model, out } = run(&dict);
    let grads = GradientsParams::from_grads(out.loss.backward(), &model);
    assert_eq!(check(&dict, &model, &grads, "grad."), 59);
}

/// The running statistics after the step: stage 1 updated twice (the release's detached head
/// pass, then its clean pass), the tail seven times in the release's order (five attack passes,
/// the adversarial, the clean). `valid()` folds in the pending updates.
#[test]
fn release_running_statistics_match_the_release() {
    let dict = fixture();
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
    let dict = fixture();
    let lr = f64::from(dict.get("lr").unwrap().0[0]);
    assert!((lr - 3.0 * 0.1 / 9.0).abs() < 1e-7, "{lr}");
    let Step { model, out } = run(&dict);
    let grads = GradientsParams::from_grads(out.loss.backward(), &model);
    let model = release_sgd().step(lr, model, grads);
    assert_eq!(check(&dict, &model, &GradientsParams::new(), "sgd."), 59);
}
