//! Training on the test device, compared with flex: the checks that the GPU code path trains and
//! evaluates as the CPU does. They run on `AFAN_TEST_DEVICE` (the CPU when unset); `cargo xtask
//! test` runs them again on wgpu over Mesa's lavapipe (docs/gpu.md, "What runs where").
//!
//! - A-FAN classification training of a CIFAR ResNet on generated shapes learns on the test
//!   device, by a margin.
//! - A model trained on flex, saved as the bytes a checkpoint holds and loaded on the test device,
//!   evaluates to flex's logits.
//! - One A-FAN step of DeepLabV3+ on the test device gives flex's losses and gradients.
//!
//! Shapes are tiny: on lavapipe every new shape compiles kernels, and the CPU runs them.

use afan_core::device::{test_device, test_tolerance};
use afan_core::{AfanConfig, SplitModel, afan_objective, attack_copy, cross_entropy, materialize};
use afan_data::loader::{LoaderConfig, batches};
use afan_models::{CifarResNet, DeepLabBackbone, DeepLabConfig, DeepLabV3Plus};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::store::ModuleRecord;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// Burn's generator is one per device and process, shared by the tests running in parallel:
/// seeding and drawing the weights under one lock makes a model a function of its seed alone.
fn seeded<M>(device: &Device, seed: u64, init: impl FnOnce(&Device) -> M) -> M {
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(seed);
    init(device)
}

/// The first `n` images of a generated shapes10 split (seeded), as the training loader makes
/// them: pixels in 0..1 (the CIFAR ResNets normalize inside), labels `i % 10`.
fn shapes(n: usize, test_split: bool, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let (train, test) = afan_data::synthetic::shapes10(n, n, 7);
    let data = if test_split { test } else { train };
    let batch = batches(&data, &LoaderConfig::eval(n), 0).next().unwrap();
    let shape = batch.shape();
    let x = Tensor::from_data(TensorData::new(batch.images, shape), device);
    let y = Tensor::from_data(TensorData::new(batch.labels, [n]), device);
    (x, y)
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

fn sgd() -> ModuleOptimizer {
    SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
        }))
        .init()
}

/// A-FAN at `layer1` with one sign step (the attack's cost is not what is tested here).
fn afan() -> AfanConfig {
    let mut config = AfanConfig::default();
    config.pgd.steps = 1;
    config
}

/// `steps` A-FAN steps of ResNet-8 on one batch of `n` shapes; the clean loss of every step.
fn train_resnet8(device: &Device, n: usize, steps: usize) -> (CifarResNet, Vec<f32>) {
    let dev = device.clone().autodiff();
    let mut model = materialize(seeded(&dev, 3, |d| CifarResNet::new(8, 10, d)));
    let (x, y) = shapes(n, false, &dev);
    let config = afan();
    let point = model.split_point(&config.split).unwrap();
    let mut optim = sgd();
    let mut clean = Vec::new();
    for _ in 0..steps {
        let attacker = attack_copy(&model, config.attack_bn);
        let out = afan_objective(&model, &attacker, x.clone(), &point, &config, |o| {
            cross_entropy(o.clone(), y.clone())
        });
        clean.push(host(out.point_losses[0].clone())[0]);
        let grads = GradientsParams::from_grads(out.loss.backward(), &model);
        model = optim.step(0.1, model, grads);
    }
    (model.valid(), clean)
}

/// Top-1 of `logits` against `labels`.
fn accuracy(logits: Tensor<2>, labels: Tensor<1, Int>) -> f32 {
    let n = labels.dims()[0];
    let hits = logits.argmax(1).reshape([n]).equal(labels).int().sum();
    host(hits.float())[0] / n as f32
}

#[test]
fn afan_training_of_a_cifar_resnet_learns() {
    let device = test_device();
    // 16 images, 8 steps: on flex the clean loss falls ~10x and 13 of 16 are right after it;
    // on lavapipe each step is seconds of CPU (40 images and 12 steps took two minutes there).
    let (model, clean) = train_resnet8(&device, 16, 8);
    assert!(clean.iter().all(|l| l.is_finite()), "{clean:?}");
    // From ~ln 10 = 2.3 at initialisation; a model that does not learn stays there.
    let (first, last) = (clean[0], clean[clean.len() - 1]);
    assert!(
        last < 0.5 * first,
        "the clean loss fell from {first} to {last} only: {clean:?}"
    );
    // The training images are now mostly classified right (chance: 10%).
    let (x, y) = shapes(16, false, &device);
    let top1 = accuracy(model.forward(x), y);
    assert!(top1 >= 0.6, "training top-1 {top1} after {clean:?}");
}

#[test]
fn a_model_trained_on_flex_evaluates_alike_on_the_test_device() {
    let (trained, _) = train_resnet8(&Device::flex(), 20, 3);
    let (x, y) = shapes(20, true, &Device::flex());
    let want = trained.forward(x.clone());
    let want_top1 = accuracy(want.clone(), y.clone());
    // What a checkpoint holds: the model record as bytes (afan's checkpoints store these).
    let bytes = trained.into_record().into_bytes().unwrap();
    let device = test_device();
    let record = ModuleRecord::from_bytes(bytes).unwrap();
    let loaded = CifarResNet::new(8, 10, &device)
        .try_load_record(record)
        .unwrap()
        .valid();
    let got = loaded.forward(x.to_device(&device));
    let (got, want) = (host(got.clone()), host(want));
    // Exact on the CPU (the same kernels); on a GPU, other summation orders through 8 layers.
    let tolerance = test_tolerance(0.0, 2e-4);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (g, w)| m.max((g - w).abs()));
    assert!(
        worst <= tolerance * scale,
        "logits differ by {worst} (scale {scale})"
    );
    let got_logits = Tensor::<2>::from_data(TensorData::new(got, [20, 10]), &Device::flex());
    assert_eq!(accuracy(got_logits, y), want_top1);
}

/// DeepLabV3+ on a MobileNetV2 at width 0.25, three classes, on two 33x33 images; ASPP dropout
/// off, so that two devices' passes are comparable.
fn tiny_deeplab(device: &Device) -> DeepLabV3Plus {
    let mut model = DeepLabConfig {
        backbone: DeepLabBackbone::MobilenetV2 { width_mult: 0.25 },
        num_classes: 3,
        output_stride: 16,
        aspp_channels: 32,
    }
    .init(device);
    model.head.aspp.dropout.prob = 0.0;
    model
}

/// Per-pixel cross-entropy of stride-4 logits `[N, C, h, w]` against labels `[N, h, w]`.
fn pixel_loss(logits: &Tensor<4>, labels: &Tensor<1, Int>) -> Tensor<1> {
    let [n, c, h, w] = logits.dims();
    let flat = logits.clone().permute([0, 2, 3, 1]).reshape([n * h * w, c]);
    cross_entropy(flat, labels.clone())
}

/// One A-FAN step (at `features.6`) on `device`, from flex's weights: the point losses and every
/// parameter's gradient, by parameter path.
fn deeplab_step(weights: &DeepLabV3Plus, device: &Device) -> (Vec<f32>, Vec<(String, Vec<f32>)>) {
    let dev = device.clone().autodiff();
    let record = ModuleRecord::from_bytes(weights.clone().into_record().into_bytes().unwrap());
    let model = materialize(tiny_deeplab(&dev).try_load_record(record.unwrap()).unwrap());
    let pixels: Vec<f32> = (0..2 * 3 * 33 * 33)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5)
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(pixels, [2, 3, 33, 33]), &dev);
    // Stride-4 logits of a 33x33 image are 9x9.
    let labels: Vec<i64> = (0..2 * 9 * 9).map(|i| (i / 7 % 3) as i64).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [2 * 9 * 9]), &dev);
    let config = AfanConfig {
        pgd: afan_core::FeaturePgdConfig::fgsm(1.0),
        ..AfanConfig::default()
    };
    let point = model.split_point("features.6").unwrap();
    let attacker = attack_copy(&model, config.attack_bn);
    let out = afan_objective(&model, &attacker, x, &point, &config, |o| pixel_loss(o, &y));
    let losses = out
        .point_losses
        .iter()
        .map(|l| host(l.clone())[0])
        .collect();
    let grads = GradientsParams::from_grads(out.loss.backward(), &model);
    let mut collect = Grads {
        grads: &grads,
        path: Vec::new(),
        out: Vec::new(),
    };
    model.visit(&mut collect);
    (losses, collect.out)
}

struct Grads<'a> {
    grads: &'a GradientsParams,
    path: Vec<String>,
    out: Vec<(String, Vec<f32>)>,
}

impl ModuleVisitor for Grads<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.out.push((self.path.join("."), host(g)));
        }
    }
}

#[test]
fn an_afan_deeplab_step_on_the_test_device_matches_flex() {
    let weights = seeded(&Device::flex(), 11, tiny_deeplab);
    let (want_losses, want_grads) = deeplab_step(&weights, &Device::flex());
    let (got_losses, got_grads) = deeplab_step(&weights, &test_device());
    // The CPU repeats its own sums exactly; a GPU sums in other orders, and the FGSM step takes
    // the sign of gradients, which flips where they are ~0.
    let tolerance = test_tolerance(0.0, 1e-3);
    for (i, (g, w)) in got_losses.iter().zip(&want_losses).enumerate() {
        assert!(
            (g - w).abs() <= tolerance * w.abs(),
            "point {i}: loss {g} vs flex's {w}"
        );
    }
    assert_eq!(got_grads.len(), want_grads.len());
    assert!(want_grads.len() > 100, "{} gradients", want_grads.len());
    // Each parameter's gradient within a relative L2 distance of flex's; a gradient that is ~0
    // on flex (under 1e-3 of the largest parameter's norm, e.g. a batch-norm bias that a
    // following batch norm cancels) is rounding noise on either side, held to 1e-2 of that
    // floor instead. Every mismatch is listed.
    let tolerance = test_tolerance(0.0, 1e-2);
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let floor = 1e-3 * want_grads.iter().map(|(_, w)| norm(w)).fold(0f32, f32::max);
    let mut mismatched = Vec::new();
    for ((name, g), (wname, w)) in got_grads.iter().zip(&want_grads) {
        assert_eq!(name, wname);
        let diff: Vec<f32> = g.iter().zip(w).map(|(a, b)| a - b).collect();
        let (diff, norm) = (norm(&diff), norm(w));
        if diff > tolerance * norm.max(floor) + 1e-7 {
            mismatched.push(format!("{name}: differs by {diff:e} (norm {norm:e})"));
        }
    }
    assert!(
        mismatched.is_empty(),
        "{} of {} gradients differ from flex's:\n{}",
        mismatched.len(),
        want_grads.len(),
        mismatched.join("\n")
    );
}
