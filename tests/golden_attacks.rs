//! The attack variants and augmentation pieces of A-FAN against PyTorch, on CIFAR ResNet-20 cut
//! after `layer2`: K = 1, 3, 5 sign steps of 0.5/255, K = 3 of 1.5/255, K = 5 of 1.5/255 with the
//! L-inf projection, the 5 strength points, and moment exchange with positional and with batch
//! statistics. Fixture: `xtask/reference/golden_cifar_attacks.py` (float64), on the weights of
//! `cifar_resnet20_afan.safetensors`.

use afan_core::{
    FeaturePgdConfig, MomentStats, Projection, SplitModel, attack_copy, cross_entropy, feature_pgd,
    materialize, moment_exchange, strength_points,
};
use afan_models::{CifarResNet, PytorchImport, StateDict};
use burn::tensor::{Int, Tensor};
use std::path::Path;

use crate::golden::{assert_close, assert_sign_steps_close, host, tensor};

fn fixture(name: &str) -> StateDict {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    StateDict::from_safetensors(&path).unwrap()
}

struct Case {
    model: CifarResNet,
    feature: Tensor<4>,
    y: Tensor<1, Int>,
    golden: StateDict,
}

/// The model in train mode on an autodiff device (the release attacks with batch statistics),
/// and the clean feature after `layer2`, checked first.
fn case() -> Case {
    let dev = afan_core::device::test_device().autodiff();
    let weights = fixture("cifar_resnet20_afan.safetensors").strip_prefix("model.");
    let model = materialize(
        CifarResNet::new(20, 10, &dev)
            .load_pytorch(&weights)
            .unwrap(),
    );
    let golden = fixture("cifar_resnet20_attacks.safetensors");
    let point = model.split_point("layer2").unwrap();
    let feature = model
        .forward_to(tensor::<4>(&golden, "x", &dev), &point)
        .detach();
    assert_close(
        "layer2 feature",
        &host(feature.clone()),
        golden.get("feature_layer2").unwrap().0,
        1e-5,
    );
    let y = tensor::<1>(&golden, "y", &dev).int();
    Case {
        model,
        feature,
        y,
        golden,
    }
}

fn attack(c: &Case, config: &FeaturePgdConfig) -> Tensor<4> {
    let point = c.model.split_point("layer2").unwrap();
    let attacker = attack_copy(&c.model, Default::default());
    feature_pgd(c.feature.clone(), config, |f| {
        cross_entropy(attacker.forward_from(f, &point), c.y.clone())
    })
    .adversarial
}

#[test]
fn pgd_steps_sizes_and_projection_match_pytorch() {
    let c = case();
    let grad0 = c.golden.get("pgd_grad0").unwrap().0;
    for (steps, step_size, projection, key) in [
        (1, 0.5, Projection::None, "pgd_k1_g0.5"),
        (3, 0.5, Projection::None, "pgd_k3_g0.5"),
        (5, 0.5, Projection::None, "pgd_k5_g0.5"),
        (3, 1.5, Projection::None, "pgd_k3_g1.5"),
        (5, 1.5, Projection::Linf, "pgd_k5_g1.5_linf2"),
    ] {
        let config = FeaturePgdConfig {
            steps,
            step_size,
            epsilon: 2.0,
            random_start: false,
            projection,
        };
        let got = host(attack(&c, &config));
        let want = c.golden.get(key).unwrap().0;
        assert_sign_steps_close(key, &got, want, grad0, step_size as f32 / 255.0);
    }
}

#[test]
fn strength_points_and_moment_exchange_match_pytorch() {
    let c = case();
    // PyTorch's adversarial feature, so this test checks the augmentation, not the attack.
    let adv = tensor::<4>(&c.golden, "pgd_k3_g0.5", &c.feature.device());
    let points = strength_points(c.feature.clone(), adv.clone(), 5);
    assert_eq!(points.len(), 5);
    assert_close(
        "strength 0",
        &host(points[0].clone()),
        &host(c.feature.clone()),
        1e-6,
    );
    assert_close(
        "strength 4",
        &host(points[4].clone()),
        &host(adv.clone()),
        1e-6,
    );
    for (i, point) in points.iter().enumerate().take(4).skip(1) {
        let key = format!("strength_{i}");
        assert_close(
            &key,
            &host(point.clone()),
            c.golden.get(&key).unwrap().0,
            1e-5,
        );
    }
    for (stats, key) in [
        (MomentStats::Positional, "exchange_positional"),
        (MomentStats::Batch, "exchange_batch"),
    ] {
        let mixed = moment_exchange(c.feature.clone(), adv.clone(), stats, 1e-5);
        assert_close(key, &host(mixed), c.golden.get(key).unwrap().0, 1e-5);
    }
}
