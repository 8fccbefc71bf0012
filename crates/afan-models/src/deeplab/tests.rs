//! DeepLabV3+: exact split round trip at every point (on the CPU), shapes, the packing of two features into
//! one, and PyTorch's bilinear upsampling convention.

use super::*;
use afan_core::SplitError;
use burn::tensor::{Distribution, TensorData, Tolerance};

fn device() -> Device {
    afan_core::device::test_device()
}

fn tiny(output_stride: usize) -> DeepLabV3Plus {
    DeepLabConfig {
        backbone: DeepLabBackbone::MobilenetV2 { width_mult: 0.25 },
        num_classes: 3,
        output_stride,
        aspp_channels: 256,
    }
    .init(&device())
}

/// Bit-exact on the CPU. On wgpu, Burn's fusion groups the element-wise ops on either side of
/// the cut otherwise than in the whole forward, which rounds differently (1 ulp seen on lavapipe,
/// ResNet-50 at os8, `layer4`): within 1e-5 of the output's largest there.
fn assert_round_trip(model: &DeepLabV3Plus, x: Tensor<4>) {
    let full = model.forward(x.clone()).into_data();
    let scale = full.iter::<f32>().fold(0f32, |m, v| m.max(v.abs()));
    let tolerance = afan_core::device::test_tolerance(0.0, 1e-5) * scale;
    for name in model.split_points() {
        let p = model.split_point(&name).unwrap();
        let f = model.forward_to(x.clone(), &p);
        let out = model.forward_from(f, &p).into_data();
        let worst = out
            .iter::<f32>()
            .zip(full.iter::<f32>())
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert_eq!(
            out.shape(),
            full.shape(),
            "{} at {name}",
            model.model_name()
        );
        assert!(
            worst <= tolerance,
            "{} at {name}: differs by {worst} from the whole forward",
            model.model_name()
        );
    }
}

#[test]
fn mobilenet_round_trip_is_exact_at_every_point() {
    // Odd sizes: every stride-2 layer rounds up, so packing must not assume divisibility.
    let x = Tensor::<4>::random([2, 3, 37, 50], Distribution::Default, &device());
    for os in [16, 8] {
        let model = tiny(os);
        assert_eq!(
            model.split_points(),
            [
                "features.3",
                "features.6",
                "features.13",
                "features.17",
                "aspp",
                "decoder"
            ]
        );
        assert_round_trip(&model, x.clone());
    }
}

#[test]
fn resnet50_round_trip_is_exact_at_every_point() {
    let x = Tensor::<4>::random([2, 3, 35, 42], Distribution::Default, &device());
    for os in [16, 8] {
        let model = DeepLabConfig {
            backbone: DeepLabBackbone::Resnet50,
            num_classes: 4,
            output_stride: os,
            aspp_channels: 256,
        }
        .init(&device());
        assert_eq!(model.resnet.as_ref().unwrap().output_stride(), os);
        assert_eq!(
            model.split_points()[..4],
            ["layer1", "layer2", "layer3", "layer4"]
        );
        assert_eq!(model.model_name(), format!("deeplabv3plus_resnet50_os{os}"));
        assert_round_trip(&model, x.clone());
    }
}

#[test]
fn shapes_and_feature_sizes() {
    let model = tiny(16);
    let x = Tensor::<4>::random([2, 3, 37, 50], Distribution::Default, &device());
    // Stride 4 rounds up: 37 -> 19 -> 10, 50 -> 25 -> 13.
    assert_eq!(model.forward(x.clone()).dims(), [2, 3, 10, 13]);
    assert_eq!(model.predict(x.clone()).dims(), [2, 3, 37, 50]);
    let at = |name: &str| {
        let p = model.split_point(name).unwrap();
        model.forward_to(x.clone(), &p).dims()
    };
    assert_eq!(at("features.3"), [2, 8, 10, 13]);
    // Deep channels in front of the 8 low-level ones, on the stride-4 grid.
    assert_eq!(at("features.6"), [2, 8 + 8, 10, 13]);
    assert_eq!(at("features.17"), [2, 80 + 8, 10, 13]);
    assert_eq!(at("aspp"), [2, ASPP_CHANNELS + 8, 10, 13]);
    assert_eq!(
        at("decoder"),
        [2, LOW_LEVEL_CHANNELS + ASPP_CHANNELS, 10, 13]
    );
    let e = model.split_point("layer9").unwrap_err();
    assert!(matches!(e, SplitError::UnknownPoint { .. }));
    assert!(e.to_string().contains("features.13"), "{e}");
}

#[test]
fn aspp_rates_follow_the_output_stride() {
    for (os, rates) in [(16, [6, 12, 18]), (8, [12, 24, 36])] {
        let model = tiny(os);
        let d: Vec<usize> = model.head.aspp.branches[1..]
            .iter()
            .map(|b| b.conv.dilation[0])
            .collect();
        assert_eq!(d, rates);
        assert_eq!(model.output_stride(), os);
    }
}

#[test]
fn pack_repeats_the_deep_feature_and_unpack_inverts_it() {
    let dev = device();
    let deep = Tensor::<4>::from_floats([[[[1.0, 2.0], [3.0, 4.0]]]], &dev);
    let low = Tensor::<4>::from_floats([[[[9.0; 3]; 3]]], &dev);
    let packed = pack::pack(deep.clone(), low.clone(), 2);
    let expected = TensorData::from([[
        [[1.0f32, 1.0, 2.0], [1.0, 1.0, 2.0], [3.0, 3.0, 4.0]],
        [[9.0; 3]; 3],
    ]]);
    assert_eq!(packed.clone().into_data(), expected);
    let (d, l) = pack::unpack(packed, 1, 2);
    assert_eq!(d.into_data(), deep.into_data());
    assert_eq!(l.into_data(), low.into_data());
}

#[test]
fn upsampling_is_bilinear_without_aligned_corners() {
    // PyTorch: F.interpolate([0, 1], size=4, mode="bilinear", align_corners=False) samples at
    // source x = (i + 0.5) / 2 - 0.5, clamped: 0, 0.25, 0.75, 1 (aligned corners: 0, 1/3, 2/3, 1).
    let x = Tensor::<4>::from_floats([[[[0.0, 1.0]]]], &device());
    let y = upsample_bilinear(x, [1, 4]);
    y.into_data().assert_approx_eq::<f32>(
        &TensorData::from([[[[0.0f32, 0.25, 0.75, 1.0]]]]),
        Tolerance::absolute(1e-6),
    );
}

#[test]
fn torchvision_backbone_weights_load_into_the_dilated_backbone() {
    use crate::state_dict::StateDict;
    // The golden torchvision MobileNetV2 (width 0.25) of mobilenet_v2_tests.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dict = StateDict::from_safetensors(&dir.join("mobilenet_v2_golden.safetensors")).unwrap();
    let model = tiny(16).load_backbone(&dict).unwrap();
    let m = model.mobilenet.as_ref().unwrap();
    assert!(m.last.is_none() && m.classifier.is_none());
    let (stem, shape) = dict.get("features.0.0.weight").unwrap();
    let ours = m.stem.conv.weight.val().into_data();
    assert_eq!(ours, TensorData::new(stem.to_vec(), shape.to_vec()));
    let (proj_bn, _) = dict.get("features.17.conv.3.running_var").unwrap();
    let ours = m.blocks[16].project.bn.running_var.value().into_data();
    assert_eq!(ours, TensorData::new(proj_bn.to_vec(), [proj_bn.len()]));
    // Dilation survives the import; a dict for another width is refused by name.
    assert_eq!(m.blocks[15].depthwise.conv.dilation, [2, 2]);
    let wide = DeepLabConfig {
        backbone: DeepLabBackbone::MobilenetV2 { width_mult: 0.5 },
        num_classes: 3,
        output_stride: 16,
        aspp_channels: 256,
    }
    .init(&device());
    let e = wide.load_backbone(&dict).unwrap_err().to_string();
    assert!(e.contains("features.0.0.weight"), "{e}");
}

/// The release's DeepLabV3+ (re-stated in PyTorch by xtask/reference/golden_deeplab.py: MobileNetV2
/// x0.25 at output stride 16, head narrowed to 16 channels), imported by [`release_key`]: the
/// eval-mode output at the input size, odd sizes included, matches PyTorch's.
#[test]
fn release_checkpoint_gives_the_release_output() {
    use crate::import::load_state_dict;
    use crate::state_dict::StateDict;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dict = StateDict::from_safetensors(&dir.join("deeplab_golden.safetensors")).unwrap();
    let io = StateDict::from_safetensors(&dir.join("deeplab_golden_io.safetensors")).unwrap();
    let model = DeepLabConfig {
        backbone: DeepLabBackbone::MobilenetV2 { width_mult: 0.25 },
        num_classes: 3,
        output_stride: 16,
        aspp_channels: 16,
    }
    .init(&device());
    let model = load_state_dict(model, "deeplabv3plus", &dict, release_key)
        .unwrap()
        .valid();
    let (x, shape) = io.get("input").unwrap();
    let x = Tensor::<4>::from_data(TensorData::new(x.to_vec(), shape.to_vec()), &device());
    let (y, shape) = io.get("output").unwrap();
    let expected = TensorData::new(y.to_vec(), shape.to_vec());
    model
        .predict(x)
        .into_data()
        .assert_approx_eq::<f32>(&expected, Tolerance::absolute(1e-4));
}
