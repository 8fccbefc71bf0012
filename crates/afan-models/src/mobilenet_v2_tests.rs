//! MobileNetV2 against torchvision: parameter count, state-dict keys and shapes, output strides.

use super::*;
use burn::module::ModuleVisitor;

fn device() -> Device {
    afan_core::device::test_device()
}

/// `(burn path, shape)` of every float tensor, running statistics included.
#[derive(Default)]
struct Keys {
    path: Vec<String>,
    keys: Vec<(String, Vec<usize>)>,
}

impl ModuleVisitor for Keys {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.keys
            .push((self.path.join("."), param.lazy_shape().to_vec()));
    }
}

#[test]
fn keys_shapes_and_parameter_count_match_torchvision() {
    let net = MobileNetV2::classifier(1000, 1.0, &device());
    let mut v = Keys::default();
    net.visit(&mut v);
    let ours: Vec<String> = v
        .keys
        .iter()
        .map(|(path, shape)| {
            // Burn's linear weight is [in, out]; PyTorch's [out, in].
            let mut shape = shape.clone();
            if path == "classifier.weight" {
                shape.reverse();
            }
            let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
            format!("{} {}", MobileNetV2::pytorch_key(path), dims.join("x"))
        })
        .collect();
    // xtask/reference/mobilenet_v2_keys.py, from torchvision's state_dict().
    let fixture = include_str!("../tests/fixtures/mobilenet_v2_keys.txt");
    let mut theirs: Vec<String> = fixture
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let mut sorted = ours.clone();
    sorted.sort();
    theirs.sort();
    assert_eq!(sorted, theirs);
    let params: usize = v
        .keys
        .iter()
        .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    assert_eq!(
        params, 3_504_872,
        "torchvision mobilenet_v2(num_classes=1000)"
    );
}

#[test]
fn classifier_runs_and_widths_follow_make_divisible() {
    assert_eq!(make_divisible(32.0 * 0.25), 8);
    assert_eq!(make_divisible(96.0 * 0.1), 16); // 8 would be more than 10% below 9.6
    assert_eq!(make_divisible(1280.0), 1280);
    let net = MobileNetV2::classifier(7, 0.25, &device());
    assert_eq!(net.channels(17), 80);
    let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Default, &device());
    assert_eq!(net.forward(x).dims(), [2, 7]);
}

#[test]
fn output_stride_dilates_instead_of_striding() {
    let x = Tensor::<4>::random([1, 3, 64, 64], Distribution::Default, &device());
    for (os, deep) in [(32, 2), (16, 4), (8, 8)] {
        let net = MobileNetV2::backbone(0.25, os, &device());
        let low = net.features(x.clone(), 0, 3);
        assert_eq!(
            low.dims(),
            [1, 8, 16, 16],
            "features.3 is the stride-4 feature"
        );
        let out = net.features(low, 4, 17);
        assert_eq!(out.dims(), [1, 80, deep, deep], "output stride {os}");
    }
    // OS 16: features.14 (first of the 160-channel stage) keeps stride 1 at dilation 1, its
    // successors dilate by 2; OS 8 dilates from features.7 on.
    let net = MobileNetV2::backbone(1.0, 16, &device());
    assert_eq!(net.blocks[13].depthwise.conv.stride, [1, 1]);
    assert_eq!(net.blocks[13].depthwise.conv.dilation, [1, 1]);
    assert_eq!(net.blocks[14].depthwise.conv.dilation, [2, 2]);
    let net = MobileNetV2::backbone(1.0, 8, &device());
    assert_eq!(net.blocks[6].depthwise.conv.stride, [1, 1]);
    assert_eq!(net.blocks[7].depthwise.conv.dilation, [2, 2]);
    assert_eq!(net.blocks[16].depthwise.conv.dilation, [4, 4]);
}

/// torchvision's eval-mode logits for a state dict imported through `load_state_dict` with
/// [`MobileNetV2::pytorch_key`] (xtask/reference/golden_mobilenet_v2.py).
#[test]
fn imported_torchvision_weights_give_torchvision_logits() {
    use crate::import::load_state_dict;
    use crate::state_dict::StateDict;
    use burn::tensor::{TensorData, Tolerance};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dict = StateDict::from_safetensors(&dir.join("mobilenet_v2_golden.safetensors")).unwrap();
    let io = StateDict::from_safetensors(&dir.join("mobilenet_v2_golden_io.safetensors")).unwrap();
    let net = MobileNetV2::classifier(5, 0.25, &device());
    let net = load_state_dict(net, "mobilenet_v2", &dict, MobileNetV2::pytorch_key)
        .unwrap()
        .valid();
    let (x, shape) = io.get("input").unwrap();
    let x = Tensor::<4>::from_data(TensorData::new(x.to_vec(), shape.to_vec()), &device());
    let (y, shape) = io.get("logits").unwrap();
    net.forward(x).into_data().assert_approx_eq::<f32>(
        &TensorData::new(y.to_vec(), shape.to_vec()),
        Tolerance::absolute(1e-4),
    );
}
