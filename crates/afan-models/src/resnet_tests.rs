//! Tests of the torchvision ResNets: parameter counts and state-dict keys against torchvision's,
//! feature shapes, dilation, and the split round trip.

use super::*;
use afan_core::SplitError;
use burn::module::ModuleVisitor;
use burn::tensor::Distribution;
use burn::tensor::activation::relu;

/// Module paths (as a state dict would name them) and sizes of every float tensor the
/// visitor sees: parameters and BatchNorm running statistics.
#[derive(Default)]
struct Keys {
    path: Vec<String>,
    keys: Vec<(String, usize)>,
}

impl ModuleVisitor for Keys {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let size = param.lazy_shape().num_elements();
        self.keys.push((self.path.join("."), size));
    }
}

fn keys(model: &ResNet) -> Vec<(String, usize)> {
    let mut visitor = Keys::default();
    model.visit(&mut visitor);
    visitor.keys
}

/// What torchvision calls the parameters: `Module::num_params` also counts the BatchNorm
/// running mean and variance (Burn visits `RunningState` like a parameter), which PyTorch
/// keeps as buffers, so those are left out by name.
fn trainable_params(model: &ResNet) -> usize {
    keys(model)
        .iter()
        .filter(|(k, _)| !k.ends_with(".running_mean") && !k.ends_with(".running_var"))
        .map(|(_, n)| n)
        .sum()
}

fn shapes(features: &[Tensor<4>; 4]) -> [[usize; 4]; 4] {
    features.each_ref().map(|f| f.dims())
}

#[test]
fn depth_names_parse_and_describe_the_architecture() {
    for depth in ResNetDepth::ALL {
        assert_eq!(depth.name().parse::<ResNetDepth>(), Ok(depth));
        assert_eq!(depth.to_string(), format!("resnet{}", depth.depth()));
    }
    assert_eq!("ResNet50".parse::<ResNetDepth>(), Ok(ResNetDepth::R50));
    assert_eq!(ResNetDepth::R101.blocks(), [3, 4, 23, 3]);
    assert_eq!(ResNetDepth::R152.blocks(), [3, 8, 36, 3]);
    assert!(!ResNetDepth::R34.bottleneck() && ResNetDepth::R50.bottleneck());
    let err = "resnet20".parse::<ResNetDepth>().unwrap_err().to_string();
    assert!(err.contains("`resnet20`"), "{err}");
    for name in ResNetDepth::names() {
        assert!(err.contains(name), "{err}");
    }
}

#[test]
fn resnet18_parameters_and_state_dict_keys_match_torchvision() {
    let dev = Device::flex();
    let model = ResNet::new(ResNetDepth::R18, 1000, &dev);
    assert_eq!(trainable_params(&model), 11_689_512);
    // 20 BatchNorms (bn1, 16 in blocks, 3 downsamples) of 64+256+640+1280+2560 channels.
    assert_eq!(model.num_params(), 11_689_512 + 2 * 4800);
    let keys: Vec<String> = keys(&model).into_iter().map(|(k, _)| k).collect();
    // torchvision's resnet18 state dict has 122 keys, 20 of them `num_batches_tracked`.
    assert_eq!(keys.len(), 102);
    for key in [
        "conv1.weight",
        "bn1.running_var",
        "layer1.1.conv2.weight",
        "layer2.0.downsample.conv.weight",
        "layer2.0.downsample.bn.running_mean",
        "layer4.1.bn2.bias",
        "fc.weight",
        "fc.bias",
    ] {
        assert!(keys.iter().any(|k| k == key), "missing {key}: {keys:?}");
    }
    assert!(!keys.iter().any(|k| k.contains("conv3")));
}

#[test]
fn split_round_trip_equals_forward_at_every_point() {
    let dev = afan_core::device::test_device();
    let model = ResNet::new(ResNetDepth::R18, 10, &dev);
    let x = Tensor::<4>::random([1, 3, 32, 32], Distribution::Normal(0.0, 1.0), &dev);
    let full = model.forward(x.clone()).into_data();
    let points = model.split_points();
    assert_eq!(points.len(), 9);
    assert_eq!(points[0], "stem");
    assert_eq!(points[8], "layer4.1");
    for name in points {
        let p = model.split_point(&name).unwrap();
        let out = model.forward_from(model.forward_to(x.clone(), &p), &p);
        out.into_data().assert_eq(&full, true);
    }
}

#[test]
fn resnet18_features_and_aliases_have_torchvision_shapes() {
    let dev = Device::flex();
    let model = ResNet::new(ResNetDepth::R18, 7, &dev);
    let x = Tensor::<4>::random([2, 3, 64, 64], Distribution::Uniform(-1.0, 1.0), &dev);
    let features = model.features(x.clone());
    assert_eq!(
        shapes(&features),
        [
            [2, 64, 16, 16],
            [2, 128, 8, 8],
            [2, 256, 4, 4],
            [2, 512, 2, 2]
        ]
    );
    assert_eq!(
        (1..=4).map(|l| model.out_channels(l)).collect::<Vec<_>>(),
        [64, 128, 256, 512]
    );
    assert_eq!(model.output_stride(), 32);
    assert_eq!(model.stem(x.clone()).dims(), [2, 64, 16, 16]);
    assert_eq!(model.forward(x.clone()).dims(), [2, 7]);
    for (name, canonical, index) in [
        ("maxpool", "stem", 0),
        ("layer1", "layer1.1", 2),
        ("layer2", "layer2.1", 4),
        ("layer3", "layer3.1", 6),
        ("layer4", "layer4.1", 8),
    ] {
        let p = model.split_point(name).unwrap();
        assert_eq!((p.name.as_str(), p.index), (canonical, index), "{name}");
    }
    // The feature at a stage alias is that stage's output.
    let p = model.split_point("layer3").unwrap();
    model
        .forward_to(x, &p)
        .into_data()
        .assert_eq(&features[2].clone().into_data(), true);
}

#[test]
fn resnet50_parameters_shapes_and_dilation() {
    let dev = Device::flex();
    let model = ResNet::new(ResNetDepth::R50, 1000, &dev);
    assert_eq!(trainable_params(&model), 25_557_032);
    assert_eq!(model.model_name(), "resnet50");
    assert_eq!(model.split_points().len(), 1 + 16);
    assert_eq!(model.split_point("layer3").unwrap().name, "layer3.5");
    let x = Tensor::<4>::random([1, 3, 64, 64], Distribution::Uniform(-1.0, 1.0), &dev);
    assert_eq!(
        shapes(&model.features(x.clone())),
        [
            [1, 256, 16, 16],
            [1, 512, 8, 8],
            [1, 1024, 4, 4],
            [1, 2048, 2, 2]
        ]
    );
    assert_eq!(model.out_channels(4), 2048);

    // Output stride 16: only layer4 dilated; its first block keeps dilation 1.
    let model = model.replace_stride_with_dilation([false, false, true]);
    assert_eq!(model.output_stride(), 16);
    assert_eq!(model.features(x.clone())[3].dims(), [1, 2048, 4, 4]);
    assert_eq!(model.layer4[0].conv2.dilation, [1, 1]);
    assert_eq!(model.layer4[1].conv2.dilation, [2, 2]);

    // Output stride 8, as torchvision builds it: layer3 dilation 1 then 2, layer4 2 then 4.
    let model = model.replace_stride_with_dilation([false, true, true]);
    assert_eq!(model.output_stride(), 8);
    let dilations =
        |layer: &[Block]| -> Vec<usize> { layer.iter().map(|b| b.conv2.dilation[0]).collect() };
    assert_eq!(dilations(&model.layer3), [1, 2, 2, 2, 2, 2]);
    assert_eq!(dilations(&model.layer4), [2, 4, 4]);
    assert_eq!(
        model.layer4[0].downsample.as_ref().unwrap().conv.stride,
        [1, 1]
    );
    assert_eq!(model.layer2[0].conv2.stride, [2, 2]);
    assert_eq!(trainable_params(&model), 25_557_032);
    let features = model.features(x.clone());
    assert_eq!(
        shapes(&features),
        [
            [1, 256, 16, 16],
            [1, 512, 8, 8],
            [1, 1024, 8, 8],
            [1, 2048, 8, 8]
        ]
    );
    assert_eq!(model.forward(x).dims(), [1, 1000]);

    // The flags describe the whole network: all false restores the plain strides.
    let model = model.replace_stride_with_dilation([false; 3]);
    assert_eq!(model.output_stride(), 32);
    assert_eq!(dilations(&model.layer4), [1, 1, 1]);
    assert_eq!(
        model.layer4[0].conv2.padding,
        PaddingConfig2d::Explicit(1, 1, 1, 1)
    );
}

#[test]
#[should_panic(expected = "BasicBlock")]
fn dilation_is_refused_for_basic_blocks_as_in_torchvision() {
    let options = ResNetOptions::default().with_replace_stride_with_dilation([false, true, true]);
    ResNet::with_options(ResNetDepth::R18, 10, options, &Device::flex());
}

#[test]
fn zero_init_residual_zeroes_the_last_norm_of_each_branch() {
    let dev = Device::flex();
    let options = ResNetOptions::default().with_zero_init_residual(true);
    let model = ResNet::with_options(ResNetDepth::R18, 10, options, &dev);
    let all = |bn: &BatchNorm2d, value: f32| {
        let w = bn.weight.val().into_data().try_to_vec::<f32>().unwrap();
        w.iter().all(|&v| v == value)
    };
    for block in model.blocks() {
        assert!(all(&block.bn2, 0.0) && all(&block.bn1, 1.0));
    }
    assert!(all(&model.bn1, 1.0));
    // Each block starts as relu(x + shortcut(x)) of its input.
    let x = Tensor::<4>::random([1, 64, 4, 4], Distribution::Normal(0.0, 1.0), &dev);
    model.layer1[0]
        .forward(x.clone())
        .into_data()
        .assert_eq(&relu(x).into_data(), true);
}

#[test]
fn unknown_point_lists_the_valid_names() {
    let model = ResNet::new(ResNetDepth::R18, 10, &Device::flex());
    let points = model.split_points();
    for name in ["layer5", "layer0", "conv1", "layer2.7", "fc"] {
        let err = model.split_point(name).unwrap_err();
        let SplitError::UnknownPoint {
            valid, model: who, ..
        } = &err;
        assert_eq!(valid, &points);
        assert_eq!(who, "resnet18");
        let msg = err.to_string();
        assert!(
            msg.contains(name) && msg.contains("stem, layer1.0, layer1.1"),
            "{msg}"
        );
    }
}
