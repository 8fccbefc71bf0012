//! `afan train --task detect --weights`: a torchvision ResNet-18 state dict becomes the
//! detector's backbone (stem, `layer1`..`layer3`) and RoI head (`layer4`), checked value by value
//! in the trained checkpoint; a file that is no such state dict is one clear error.
//!
//! The state dict has torchvision's keys and shapes (recorded by
//! `xtask/reference/golden_torchvision.py` in `tests/fixtures/torchvision_resnet.safetensors`)
//! and values from `support/hash_weights.rs`, so every tensor is distinct and known here.

use afan_models::{BatchNorm2d, FasterRcnn, FasterRcnnConfig};
use burn::module::Module;
use burn::tensor::{Bytes, Device, Tensor};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

#[path = "support/cli.rs"]
mod cli;
#[path = "support/detection_data.rs"]
mod detection_data;
#[path = "support/hash_weights.rs"]
mod hash_weights;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// torchvision's ResNet-18 keys and shapes.
fn resnet18_keys() -> Vec<(String, Vec<usize>)> {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/torchvision_resnet.safetensors");
    let bytes = std::fs::read(fixture).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let keys = &meta.metadata().as_ref().unwrap()["keys"];
    let all: BTreeMap<String, Vec<(String, Vec<usize>)>> = serde_json::from_str(keys).unwrap();
    all["resnet18"].clone()
}

/// The hash-rule state dict as torchvision would save it, in a safetensors file.
fn write_resnet18(path: &Path) {
    let data: Vec<(String, Vec<u8>, Vec<usize>)> = resnet18_keys()
        .into_iter()
        .map(|(k, shape)| {
            let v = hash_weights::value(&k, &shape);
            (k, bytemuck::cast_slice(&v).to_vec(), shape)
        })
        .collect();
    let views = data.iter().map(|(k, b, shape)| {
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b);
        (k.clone(), view.unwrap())
    });
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// The detector saved in a detection checkpoint, rebuilt from the configuration stored with it.
fn load_detector(ckpt: &Path) -> FasterRcnn {
    let mut archive = tar::Archive::new(std::fs::File::open(ckpt).unwrap());
    let mut entries: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        entries.insert(name, data);
    }
    // The run's configuration travels inside the checkpoint.
    let text = std::str::from_utf8(&entries["config.toml"]).unwrap();
    let config: toml::Table = toml::from_str(text).unwrap();
    let config: FasterRcnnConfig = config["detector"].clone().try_into().unwrap();
    let record = burn::store::ModuleRecord::from_bytes(Bytes::from_bytes_vec(
        entries.remove("model.bpk").unwrap(),
    ))
    .unwrap();
    config.init(&Device::default()).unwrap().load_record(record)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Largest difference between a tensor and the state dict's `key`.
fn distance<const D: usize>(t: Tensor<D>, key: &str) -> f32 {
    let shape: Vec<usize> = t.dims().to_vec();
    let want = hash_weights::value(key, &shape);
    let got = values(t);
    assert_eq!(got.len(), want.len(), "{key}");
    got.iter()
        .zip(&want)
        .fold(0.0, |m, (a, b)| m.max((a - b).abs()))
}

fn bn_distance(bn: &BatchNorm2d, prefix: &str) -> f32 {
    [
        distance(bn.weight.val(), &format!("{prefix}.weight")),
        distance(bn.bias.val(), &format!("{prefix}.bias")),
        distance(bn.running_mean.value(), &format!("{prefix}.running_mean")),
        distance(bn.running_var.value(), &format!("{prefix}.running_var")),
    ]
    .into_iter()
    .fold(0.0, f32::max)
}

#[test]
fn backbone_weights_end_up_in_the_detector() {
    let dir = tempfile::tempdir().unwrap();
    let (devkit, config) = detection_data::tiny_devkit(dir.path(), 2, 1);
    let weights = dir.path().join("resnet18.safetensors");
    write_resnet18(&weights);
    let run = dir.path().join("run");
    let common = [
        "train",
        "--task",
        "detect",
        "--config",
        s(&config),
        "--data",
        s(&devkit),
    ];
    // The release's frozen stem and layer1 (no update at all); elsewhere a rate so small that
    // one step moves no weight by more than 1e-6.
    let mut args = common.to_vec();
    args.extend([
        "--weights",
        s(&weights),
        "--set",
        "detector.frozen_stages=2",
        "--lr",
        "1e-9",
        "--iterations",
        "1",
        "--out",
        s(&run),
        "--quiet",
    ]);
    let (_, stderr) = cli::succeed(&args);
    assert!(stderr.contains("backbone weights from"), "{stderr}");
    assert!(
        !stderr.contains("warning"),
        "a complete load warns of nothing: {stderr}"
    );

    let model = load_detector(&run.join("last.ckpt"));
    let b = &model.backbone;
    assert_eq!(distance(b.conv1.weight.val(), "conv1.weight"), 0.0);
    assert_eq!(bn_distance(&b.bn1, "bn1"), 0.0);
    assert_eq!(
        distance(b.layer1[1].conv2.weight.val(), "layer1.1.conv2.weight"),
        0.0
    );
    assert!(distance(b.layer2[0].conv1.weight.val(), "layer2.0.conv1.weight") < 1e-6);
    let down = b.layer3[0].downsample.as_ref().unwrap();
    assert!(distance(down.conv.weight.val(), "layer3.0.downsample.0.weight") < 1e-6);
    // Frozen batch norm keeps the file's statistics and affine parameters.
    assert!(bn_distance(&down.bn, "layer3.0.downsample.1") < 1e-6);
    // layer4 is the RoI head's.
    let l4 = &model.roi_head.layer4;
    assert!(distance(l4[1].conv2.weight.val(), "layer4.1.conv2.weight") < 1e-6);
    assert!(bn_distance(&l4[0].bn1, "layer4.0.bn1") < 1e-6);

    // Without --weights the same run starts elsewhere: the comparison above can fail.
    let plain = dir.path().join("plain");
    let mut args = common.to_vec();
    args.extend(["--iterations", "1", "--out", s(&plain), "--quiet"]);
    cli::succeed(&args);
    let model = load_detector(&plain.join("last.ckpt"));
    assert!(distance(model.backbone.conv1.weight.val(), "conv1.weight") > 1e-2);
}

#[test]
fn weights_that_are_not_a_resnet18_state_dict_are_one_error() {
    let dir = tempfile::tempdir().unwrap();
    let (devkit, config) = detection_data::tiny_devkit(dir.path(), 2, 1);
    let train = |weights: &PathBuf, out: &str| {
        cli::fail(&[
            "train",
            "--task",
            "detect",
            "--config",
            s(&config),
            "--data",
            s(&devkit),
            "--weights",
            s(weights),
            "--out",
            s(&dir.path().join(out)),
        ])
    };
    let garbage = dir.path().join("notes.safetensors");
    std::fs::write(&garbage, "not a state dict").unwrap();
    let e = train(&garbage, "r1");
    assert!(e.contains("notes.safetensors"), "{e}");
    // The CIFAR ResNet-20 of the golden fixture: no tensor has a ResNet-18 shape.
    let cifar = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/cifar_resnet20_afan.safetensors");
    let e = train(&cifar, "r2");
    assert!(
        e.contains("cifar_resnet20_afan.safetensors") && e.contains("resnet18"),
        "{e}"
    );
    let missing = dir.path().join("nowhere.pth");
    let e = train(&missing, "r3");
    assert!(e.contains("nowhere.pth"), "{e}");
}
