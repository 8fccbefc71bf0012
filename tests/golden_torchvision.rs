//! torchvision ResNet-18, ResNet-50 and EfficientNet-B0 against PyTorch: a state dict with
//! torchvision's keys loads into afan's model, and the features at every stage and the logits
//! agree.
//!
//! `tests/fixtures/torchvision_resnet.safetensors` was written by
//! `xtask/reference/golden_torchvision.py` (torchvision in float64, eval mode). It holds the inputs,
//! the outputs, and the list of torchvision's state-dict keys with their shapes; the weights are
//! regenerated here by `support/hash_weights.rs`, the bit-exact twin of the script's generator.

use afan_core::SplitModel;
use afan_models::{
    EfficientNet, EfficientNetVariant, ImportError, PytorchImport, ResNet, ResNetDepth, StateDict,
};
use burn::module::Module;
use std::collections::BTreeMap;
use std::path::Path;

use crate::golden::{assert_close, host, tensor};
use crate::hash_weights;

fn fixture_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/torchvision_resnet.safetensors")
}

/// torchvision's keys and shapes for `model`, as the script recorded them.
fn torchvision_keys(model: &str) -> Vec<(String, Vec<usize>)> {
    let bytes = std::fs::read(fixture_path()).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let keys = &meta.metadata().as_ref().unwrap()["keys"];
    let all: BTreeMap<String, Vec<(String, Vec<usize>)>> = serde_json::from_str(keys).unwrap();
    all[model].clone()
}

/// The state dict torchvision's model had in the script, rebuilt from the key list.
fn state_dict(model: &str) -> StateDict {
    let mut dict = StateDict::default();
    for (key, shape) in torchvision_keys(model) {
        let values = hash_weights::value(&key, &shape);
        dict.insert(key, values, shape, "float32");
    }
    dict
}

fn check(name: &str) {
    let device = afan_core::device::test_device();
    let fixture = StateDict::from_safetensors(&fixture_path()).unwrap();
    let depth: ResNetDepth = name.parse().unwrap();
    let model = ResNet::new(depth, 1000, &device)
        .load_pytorch(&state_dict(name))
        .unwrap_or_else(|e| panic!("{e}"))
        .valid();
    let x = tensor::<4>(&fixture, &format!("{name}.input"), &device);
    let mut f = model.stem(x);
    for layer in 1..=4 {
        f = model.layer(layer, f);
        let want = fixture.get(&format!("{name}.layer{layer}")).unwrap().0;
        assert_close(
            &format!("{name} layer{layer}"),
            &host(f.clone()),
            want,
            1e-5,
        );
    }
    let logits = model.head(f);
    let want = fixture.get(&format!("{name}.logits")).unwrap().0;
    assert_close(&format!("{name} logits"), &host(logits), want, 1e-5);
}

#[test]
fn efficientnet_b0_matches_torchvision() {
    let name = "efficientnet_b0";
    let device = afan_core::device::test_device();
    let fixture = StateDict::from_safetensors(&fixture_path()).unwrap();
    let model = EfficientNet::new(EfficientNetVariant::B(0), 1000, &device)
        .load_pytorch(&state_dict(name))
        .unwrap_or_else(|e| panic!("{e}"))
        .valid();
    let x = tensor::<4>(&fixture, &format!("{name}.input"), &device);
    for point in model.split_points() {
        let f = model.forward_to(x.clone(), &model.split_point(&point).unwrap());
        let want = fixture.get(&format!("{name}.{point}")).unwrap().0;
        assert_close(&format!("{name} {point}"), &host(f), want, 1e-5);
    }
    let want = fixture.get(&format!("{name}.logits")).unwrap().0;
    assert_close(
        &format!("{name} logits"),
        &host(model.forward(x)),
        want,
        1e-5,
    );
}

/// The size of torchvision's state dicts (1000 classes; parameters 5,288,548 / 12,233,232 /
/// 66,347,960 plus the batch-norm running statistics, which Burn's `num_params` counts too),
/// which fixes every width and depth of the compound scaling.
#[test]
fn efficientnet_sizes_match_torchvision() {
    let device = afan_core::device::test_device();
    for (v, want) in [(0, 5_330_564), (3, 12_320_528), (7, 66_658_680)] {
        let model = EfficientNet::new(EfficientNetVariant::B(v), 1000, &device);
        assert_eq!(model.num_params(), want, "efficientnet_b{v}");
    }
}

#[test]
fn resnet18_matches_torchvision() {
    check("resnet18");
}

#[test]
fn resnet50_matches_torchvision() {
    check("resnet50");
}

/// A state dict that does not fit is refused with every problem named, not partly loaded.
#[test]
fn mismatched_state_dicts_are_reported_by_key() {
    let device = afan_core::device::test_device();
    let mut dict = state_dict("resnet18");
    let fc = dict.entry("fc.weight").unwrap().clone();
    dict.insert(
        "fc.weight".into(),
        fc.values[..512 * 10].to_vec(),
        vec![10, 512],
        "float32",
    );
    let conv = dict.entry("layer1.0.conv1.weight").unwrap().clone();
    dict.insert(
        "layer1.0.conv1.weight".into(),
        conv.values,
        conv.shape,
        "int64",
    );
    dict.insert("head.extra".into(), vec![0.0], vec![1], "float32");
    let dict = dict.strip_prefix(""); // a copy, as a caller would hold it
    let missing_bias = {
        let mut d = StateDict::default();
        for k in dict.keys().filter(|k| *k != "layer4.1.bn2.bias") {
            let e = dict.entry(k).unwrap().clone();
            d.insert(k.to_string(), e.values, e.shape, e.dtype);
        }
        d
    };
    let err = ResNet::new(ResNetDepth::R18, 1000, &device)
        .load_pytorch(&missing_bias)
        .unwrap_err();
    let ImportError::Mismatch {
        missing,
        unexpected,
        shapes,
        dtypes,
        ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(missing, &["layer4.1.bn2.bias"]);
    assert_eq!(unexpected, &["head.extra"]);
    assert_eq!(
        shapes,
        &[("fc.weight".to_string(), vec![1000, 512], vec![10, 512])]
    );
    assert_eq!(dtypes, &[("layer1.0.conv1.weight".to_string(), "int64")]);
    let text = err.to_string();
    assert!(
        text.contains("resnet18") && text.contains("int64"),
        "{text}"
    );
}
