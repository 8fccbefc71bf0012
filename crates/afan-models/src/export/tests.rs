//! Export → import round trips for every model family (bitwise, in memory and through both
//! file formats read back by the import's readers), the key names PyTorch expects, and the
//! file rules (atomic, no silent overwrite, no diverged model).

use super::perturb::perturb;
use super::*;
use crate::cifar_resnet::CifarResNet;
use crate::deeplab::{DeepLabBackbone, DeepLabConfig, DeepLabV3Plus};
use crate::detection::faster_rcnn::{FasterRcnn, FasterRcnnConfig};
use crate::import::{ImportError, PytorchImport};
use crate::registry::{Classifier, ClassifierKind};
use afan_core::SplitModel;
use burn::tensor::{Device, Distribution, Tensor};

fn device() -> Device {
    afan_core::device::test_device()
}

/// Same keys, shapes, dtypes and bit patterns.
fn assert_same(got: &StateDict, want: &StateDict, what: &str) {
    let (g, w): (Vec<&str>, Vec<&str>) = (got.keys().collect(), want.keys().collect());
    assert_eq!(g, w, "{what}: keys");
    for key in w {
        let (a, b) = (got.entry(key).unwrap(), want.entry(key).unwrap());
        assert_eq!((&a.shape, a.dtype), (&b.shape, b.dtype), "{what}: `{key}`");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(bits(&a.values) == bits(&b.values), "{what}: `{key}` values");
    }
}

/// `model` exported, read back from memory and from a file of each format, and loaded into
/// `fresh` (a model of the same architecture with other values) by `load`: each time the loaded
/// model exports the same state dict, bit for bit. Returns the state dict.
fn round_trip<M: PytorchExport + Clone>(
    model: &M,
    fresh: &M,
    load: impl Fn(M, &StateDict) -> Result<M, ImportError>,
    through_files: bool,
) -> StateDict {
    let want = model.to_state_dict().unwrap();
    let before = fresh.to_state_dict().unwrap();
    assert!(
        want.keys().any(|k| want.entry(k) != before.entry(k)),
        "the fresh model already equals the exported one: the test could not fail"
    );
    let back = load(fresh.clone(), &want).unwrap();
    assert_same(&back.to_state_dict().unwrap(), &want, "in memory");
    if through_files {
        let dir = tempfile::tempdir().unwrap();
        for format in ExportFormat::ALL {
            let path = dir.path().join(format!("model.{format}"));
            let summary = model.export(&path, ExportOptions::new(format)).unwrap();
            assert_eq!(summary.tensors, want.len());
            assert_eq!(summary.bytes, std::fs::metadata(&path).unwrap().len());
            let read = StateDict::from_file(&path).unwrap();
            assert_same(&read, &want, &format!("{format} file"));
            let back = load(fresh.clone(), &read).unwrap();
            assert_same(
                &back.to_state_dict().unwrap(),
                &want,
                &format!("{format} load"),
            );
        }
    }
    want
}

fn classifier(kind: &str, classes: usize, seed: u64) -> Classifier {
    let kind: ClassifierKind = kind.parse().unwrap();
    perturb(kind.build(classes, &device()), seed)
}

/// torchvision's ResNet, EfficientNet and MobileNetV2 and the release's CIFAR ResNet, through
/// the registry's `Classifier` as the engine holds them; the reloaded model computes the same
/// logits.
#[test]
fn classifiers_round_trip_bitwise_through_both_formats() {
    for kind in ["resnet20", "resnet18", "efficientnet_b0", "mobilenet_v2"] {
        let (model, fresh) = (classifier(kind, 7, 1), classifier(kind, 7, 2));
        round_trip(&model, &fresh, Classifier::load_pytorch, true);
        let dict = model.to_state_dict().unwrap();
        let back = fresh.load_pytorch(&dict).unwrap();
        let x = Tensor::<4>::random([1, 3, 32, 32], Distribution::Default, &device());
        // Equal parameters, equal logits up to rounding: a model built from a file and one
        // built in memory need not take the same kernel paths (the parameters' bits are
        // what `round_trip` compares).
        let logits = |m: &Classifier| -> Vec<f32> {
            m.forward(x.clone())
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap()
        };
        let (got, want) = (logits(&back), logits(&model));
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        assert!(
            diff <= 1e-6 * scale,
            "{kind}: logits differ by {diff} (max |logit| {scale})"
        );
    }
}

/// The key sets PyTorch's modules have, with `num_batches_tracked` (counts from
/// `len(module.state_dict())`: torchvision 0.2x `resnet18()`, `efficientnet_b0()`,
/// `mobilenet_v2()`; the release's `resnet_s.py` ResNet-20, re-stated in
/// `xtask/reference/release_classification_model.py`).
#[test]
fn keys_are_the_pytorch_modules() {
    for (kind, count, keys) in [
        (
            "resnet18",
            122,
            &[
                "conv1.weight",
                "bn1.num_batches_tracked",
                "layer2.0.downsample.0.weight",
                "layer2.0.downsample.1.running_var",
                "fc.weight",
            ][..],
        ),
        (
            "resnet20",
            119,
            &[
                "sequential_model.0.mean",
                "sequential_model.1.weight",
                "sequential_model.2.num_batches_tracked",
                "sequential_model.6.conv2.weight",
                "sequential_model.15.weight",
                "w",
            ][..],
        ),
        (
            "efficientnet_b0",
            360,
            &[
                "features.0.0.weight",
                "features.1.0.block.1.fc1.weight",
                "features.8.1.num_batches_tracked",
                "classifier.1.weight",
            ][..],
        ),
        (
            "mobilenet_v2",
            314,
            &[
                "features.0.1.running_mean",
                "features.1.conv.2.num_batches_tracked",
                "features.18.0.weight",
                "classifier.1.bias",
            ][..],
        ),
    ] {
        let dict = classifier(kind, 10, 3).to_state_dict().unwrap();
        assert_eq!(dict.len(), count, "{kind}");
        for key in keys {
            assert!(dict.entry(key).is_some(), "{kind}: no `{key}`");
        }
        let fc = if kind == "resnet20" {
            "sequential_model.15.weight"
        } else if kind == "resnet18" {
            "fc.weight"
        } else {
            "classifier.1.weight"
        };
        // PyTorch's `[out, in]`.
        assert_eq!(dict.entry(fc).unwrap().shape[0], 10, "{kind}");
        // Every batch norm's counter: a 0-d int64 0, as a fresh PyTorch module's.
        let counters: Vec<_> = keys
            .iter()
            .filter(|k| k.ends_with("num_batches_tracked"))
            .collect();
        assert!(!counters.is_empty(), "{kind}");
        for key in counters {
            let e = dict.entry(key).unwrap();
            assert_eq!(
                (e.dtype, e.shape.len(), e.values[0]),
                ("int64", 0, 0.0),
                "{key}"
            );
        }
    }
}

/// DeepLabV3+ with the release's names: the MobileNetV2 layout through both files, the ResNet
/// one (with `backbone.normal` and without the unused `fc`) in memory.
#[test]
fn deeplab_round_trips_with_the_release_names() {
    let config = |backbone| DeepLabConfig {
        backbone,
        num_classes: 3,
        output_stride: 16,
        aspp_channels: 8,
    };
    let small = config(DeepLabBackbone::MobilenetV2 { width_mult: 0.25 });
    let (model, fresh) = (
        perturb(small.init(&device()), 4),
        perturb(small.init(&device()), 5),
    );
    let dict = round_trip(&model, &fresh, DeepLabV3Plus::load_release, true);
    assert!(
        dict.entry("backbone.low_level_features.0.0.weight")
            .is_some()
    );
    assert!(
        dict.entry("backbone.high_level_features.17.conv.3.num_batches_tracked")
            .is_some()
    );
    assert!(dict.keys().all(|k| !k.contains("normal")));

    let resnet = config(DeepLabBackbone::Resnet50);
    let (model, fresh) = (
        perturb(resnet.init(&device()), 6),
        perturb(resnet.init(&device()), 7),
    );
    let dict = round_trip(&model, &fresh, DeepLabV3Plus::load_release, false);
    assert!(dict.keys().all(|k| !k.starts_with("backbone.fc.")));
    assert_eq!(
        dict.get("backbone.normal.std").unwrap().0,
        crate::resnet::IMAGENET_STD
    );
    assert!(
        dict.entry("classifier.aspp.convs.4.2.num_batches_tracked")
            .is_some()
    );
    // A release file normalising with other statistics is refused by name.
    let mut other = dict.clone();
    other.insert(
        "backbone.normal.mean".into(),
        vec![0.5; 3],
        vec![3],
        "float32",
    );
    let err = fresh.load_release(&other).unwrap_err().to_string();
    assert!(err.contains("`backbone.normal.mean` must hold"), "{err}");
}

/// Faster R-CNN C4 with the names its release importer reads, through both files; the
/// backbone's stand-in `fc` is not written, every batch norm has its counter.
#[test]
fn faster_rcnn_round_trips_with_the_release_names() {
    let mut config = FasterRcnnConfig::voc();
    config.backbone = "resnet18".into();
    config.num_classes = 2;
    config.rpn.mid_channels = 16;
    let build = |seed| perturb(config.init(&device()).unwrap(), seed);
    let (model, fresh) = (build(10), build(11));
    let dict = round_trip(&model, &fresh, FasterRcnn::load_release, true);
    assert!(dict.keys().all(|k| !k.starts_with("features.fc.")));
    for key in [
        "features.conv1.weight",
        "features.layer3.1.bn2.num_batches_tracked",
        "detection.hidden.0.downsample.1.running_mean",
        "rpn._features.0.weight",
        "rpn._anchor_objectness.bias",
        "detection._proposal_class.weight",
        "detection._proposal_transformer.bias",
    ] {
        assert!(dict.entry(key).is_some(), "no `{key}`");
    }
    // PyTorch's `[out, in]`: 3 classes with the background, from layer4's 512 channels.
    assert_eq!(
        dict.entry("detection._proposal_class.weight")
            .unwrap()
            .shape,
        [3, 512]
    );
}

/// The CIFAR ResNet reads the release's layout (what it exports) and still reads the
/// `layerS.I` one; a release file's normalisation must be CIFAR-10's, its `w` is ignored.
#[test]
fn cifar_resnet_reads_both_layouts() {
    let dev = device();
    let model = perturb(CifarResNet::new(20, 10, &dev), 8);
    let release = model.to_state_dict().unwrap();
    let mut layers = StateDict::default();
    for path in crate::import::param_paths(&model) {
        let (values, shape) = release.get(&cifar_release_key(&path)).unwrap();
        let (values, shape) = (values.to_vec(), shape.to_vec());
        layers.insert(model.pytorch_key(&path), values, shape, "float32");
    }
    let fresh = || CifarResNet::new(20, 10, &dev);
    for dict in [&release, &layers] {
        let back = fresh().load_pytorch(dict).unwrap();
        assert_same(&back.to_state_dict().unwrap(), &release, "layout");
    }
    let mut w = release.clone();
    w.insert("w".into(), vec![0.25; 9], vec![9], "float32");
    assert!(fresh().load_pytorch(&w).is_ok());
    let mut std = release.clone();
    std.insert(
        "sequential_model.0.std".into(),
        vec![1.0; 3],
        vec![3],
        "float32",
    );
    let err = fresh().load_pytorch(&std).unwrap_err().to_string();
    assert!(err.contains("`sequential_model.0.std` must hold"), "{err}");
}

fn cifar_release_key(path: &str) -> String {
    crate::cifar_resnet::release_key(3, path)
}

/// An existing file is kept unless overwriting is asked for; nothing is left behind by a
/// refused or failed write.
#[test]
fn existing_files_are_replaced_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, b"precious").unwrap();
    let model = classifier("resnet20", 10, 9);
    let options = ExportOptions::new(ExportFormat::Safetensors);
    let err = model.export(&path, options).unwrap_err();
    assert!(matches!(err, ExportError::Exists { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    model.export(&path, options.overwrite(true)).unwrap();
    assert!(StateDict::from_file(&path).is_ok());
    let missing = dir.path().join("no/such/folder/model.pth");
    let err = model
        .export(&missing, ExportOptions::new(ExportFormat::Pth))
        .unwrap_err();
    assert!(matches!(err, ExportError::Io { .. }), "{err}");
    assert!(err.to_string().contains("no/such/folder"), "{err}");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["model.safetensors"], "temporary files left behind");
}

/// A model with a NaN is not exported, and the error names the tensor.
#[test]
fn a_diverged_model_is_refused_by_name() {
    let dev = device();
    /// Poisons the one tensor at `fc.bias`.
    struct NanBias(Vec<String>);
    impl burn::module::ModuleMapper for NanBias {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<D>>,
        ) -> burn::module::Param<Tensor<D>> {
            if self.0.join(".") != "fc.bias" {
                return param;
            }
            param.map(|t| t.mul_scalar(f32::NAN))
        }
    }
    let model = CifarResNet::new(20, 10, &dev).map(&mut NanBias(Vec::new()));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan.pth");
    let err = model
        .export(&path, ExportOptions::new(ExportFormat::Pth))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`sequential_model.15.bias`") && err.contains("NaN"),
        "{err}"
    );
    assert!(!path.exists());
}

#[test]
fn formats_parse_and_print() {
    for format in ExportFormat::ALL {
        assert_eq!(format.to_string().parse::<ExportFormat>().unwrap(), format);
    }
    assert_eq!("PT".parse::<ExportFormat>().unwrap(), ExportFormat::Pth);
    let err = "onnx".parse::<ExportFormat>().unwrap_err().to_string();
    assert!(err.contains("onnx") && err.contains("safetensors"), "{err}");
}

/// Dtypes the writers cannot write are refused before a file is made.
#[test]
fn only_float32_and_int64_are_written() {
    let mut dict = StateDict::default();
    dict.insert("half".into(), vec![1.0], vec![1], "float16");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.safetensors");
    let err = write_state_dict(&dict, &path, ExportOptions::new(ExportFormat::Safetensors))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`half`") && err.contains("float16"), "{err}");
    assert!(!path.exists());
}
