//! The segmentation objective on a tiny MobileNetV2 DeepLabV3+: the release presets, the loss
//! weights, where each point's gradient goes (tail only, and the low-level feature live), and
//! that the attacks act. The release's numbers are checked by tests/golden_release_segmentation.rs.

use super::*;
use crate::deeplab::{DeepLabBackbone, DeepLabConfig, RELEASE_BACKBONE_BN_MOMENTUM};
use afan_core::{ExchangeMask, attack_copy, materialize};
use burn::module::Param;
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Distribution, Int};

fn scalar(t: &Tensor<1>) -> f64 {
    f64::from(t.clone().into_scalar::<f32>())
}

/// Mean cross-entropy of stride-4 logits upsampled to the labels (no ignored pixels here).
fn loss(logits: &Tensor<4>, labels: &Tensor<3, Int>) -> Tensor<1> {
    let [b, h, w] = labels.dims();
    let logits = super::super::upsample_bilinear(logits.clone(), [h, w]);
    log_softmax(logits, 1)
        .gather(1, labels.clone().reshape([b, 1, h, w]))
        .mean()
        .neg()
}

/// A tiny model on an autodiff device (dropout off so that passes are comparable), a batch, and
/// labels; the device generator is seeded and drawn under one lock.
fn setup() -> (DeepLabV3Plus, Tensor<4>, Tensor<3, Int>) {
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::default().autodiff();
    device.seed(3);
    let mut model = DeepLabConfig {
        backbone: DeepLabBackbone::MobilenetV2 { width_mult: 0.25 },
        num_classes: 3,
        output_stride: 16,
        aspp_channels: 32,
    }
    .init(&device);
    model.head.aspp.dropout.prob = 0.0;
    let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Default, &device);
    let y = Tensor::<3, Int>::random([2, 32, 32], Distribution::Uniform(0.0, 3.0), &device);
    (materialize(model), x, y)
}

fn config(se: &str, sd: &str, step_se: f64, step_sd: f64, mask: &str) -> SegmentationAfanConfig {
    let mut c = SegmentationAfanConfig::voc();
    c.backbone.split = se.into();
    c.backbone.pgd.step_size = step_se;
    c.backbone.mask = mask.parse::<ExchangeMask>().unwrap();
    c.decoder_split = sd.into();
    c.decoder_pgd.step_size = step_sd;
    c
}

fn objective(c: &SegmentationAfanConfig) -> (AfanOutput<Tensor<4>>, f64, DeepLabV3Plus) {
    let (model, x, y) = setup();
    let attacker = attack_copy(&model, c.backbone.attack_bn);
    let clean = scalar(&loss(&model.forward(x.clone()), &y));
    let out = segmentation_afan_objective(&model, &attacker, x, c, |o| loss(o, &y)).unwrap();
    (out, clean, model)
}

#[test]
fn release_presets_are_the_scripts() {
    let v = SegmentationAfanConfig::default();
    assert_eq!(v, SegmentationAfanConfig::voc());
    assert_eq!(v.backbone.split, "layer3");
    assert_eq!((v.backbone.pgd.steps, v.backbone.pgd.step_size), (1, 0.01));
    assert_eq!(
        (v.backbone.strengths, v.backbone.mask.to_string()),
        (3, "11".into())
    );
    assert_eq!(v.backbone.routing, GradientRouting::TailOnly);
    assert_eq!(v.backbone.attack_bn, AttackBatchNorm::Train);
    assert_eq!(v.backbone.loss_weights().points, vec![0.7, 0.1, 0.1]);
    assert_eq!(v.backbone.loss_weights().head, vec![0.1]);
    assert_eq!(
        (v.decoder_split.as_str(), v.decoder_pgd.step_size),
        ("aspp", 0.4)
    );
    assert!(!v.decoder_mix);
    assert_eq!(v.skip, SkipFeature::Passthrough);
    let c = SegmentationAfanConfig::cityscapes();
    assert_eq!(c.backbone.split, "layer2");
    assert_eq!(c.backbone.pgd.step_size, 0.02);
    assert_eq!(c.backbone.mask.to_string(), "01");
    assert_eq!(
        (c.decoder_split.as_str(), c.decoder_pgd.step_size),
        ("decoder", 1.5)
    );
    assert!(c.decoder_mix);
}

#[test]
fn points_of_the_wrong_kind_are_named() {
    let (model, _, _) = setup();
    let e = config("aspp", "decoder", 1.0, 1.0, "00")
        .validate(&model)
        .unwrap_err();
    assert!(e.to_string().contains("backbone.split = `aspp`"), "{e}");
    let e = config("features.6", "features.13", 1.0, 1.0, "00")
        .validate(&model)
        .unwrap_err();
    assert!(
        e.to_string().contains("decoder_split = `features.13`"),
        "{e}"
    );
    let e = config("layer3", "aspp", 1.0, 1.0, "00")
        .validate(&model)
        .unwrap_err();
    assert!(
        e.to_string().contains("unknown split point `layer3`"),
        "{e}"
    );
}

#[test]
fn zero_steps_reduce_to_the_clean_loss_with_either_skip() {
    for skip in [SkipFeature::Passthrough, SkipFeature::Packed] {
        let mut c = config("features.6", "decoder", 0.0, 0.0, "01");
        c.skip = skip;
        let (out, clean, _) = objective(&c);
        let losses: Vec<f64> = out.point_losses.iter().map(scalar).collect();
        assert_eq!(losses.len(), 4, "3 backbone points and the decoder point");
        for l in &losses {
            assert!(
                (l - clean).abs() < 1e-4,
                "{skip:?}: {losses:?} vs clean {clean}"
            );
        }
        // The weights sum to one.
        assert!((scalar(&out.loss) - clean).abs() < 1e-4);
    }
}

#[test]
fn attacks_raise_the_loss_and_weights_are_the_release_preset() {
    // Through a deep tail a small backbone step changes the loss by too little, and in no
    // reliable direction, to assert more than that it acts; one large FGSM step right before
    // the classifier reliably raises it.
    for sd in ["aspp", "decoder"] {
        let (out, clean, _) = objective(&config("features.6", sd, 4.0, 40.0, "00"));
        let l: Vec<f64> = out.point_losses.iter().map(scalar).collect();
        assert!((l[0] - clean).abs() < 1e-4, "point 0 is the clean loss");
        assert!(
            (l[1] - clean).abs() > 1e-4 && (l[2] - l[1]).abs() > 1e-4,
            "{l:?}"
        );
        assert!(
            l[3] > clean + 0.1,
            "{sd}: the decoder attack raises the loss: {l:?}"
        );
        let expected = 0.7 * l[0] + 0.1 * l[1] + 0.1 * l[2] + 0.1 * l[3];
        assert!((scalar(&out.loss) - expected).abs() < 1e-5);
    }
}

/// The gradient of `param` (a batch-norm weight) under the objective and under the clean loss
/// weighted 0.7 alone.
fn gradients(
    c: &SegmentationAfanConfig,
    param: fn(&DeepLabV3Plus) -> &Param<Tensor<1>>,
) -> (Vec<f32>, Vec<f32>) {
    let grad = |m: &DeepLabV3Plus, l: Tensor<1>| {
        let g = GradientsParams::from_grads(l.backward(), m);
        let p = param(m);
        g.get::<1>(p.id)
            .map(|t| t.into_data().try_to_vec::<f32>().unwrap())
            .unwrap_or_default()
    };
    let (out, _, model) = objective(c);
    let all = grad(&model, out.loss);
    let (model, x, y) = setup();
    let clean = grad(&model, loss(&model.forward(x), &y).mul_scalar(0.7));
    (all, clean)
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-5 + 1e-3 * y.abs())
}

#[test]
fn tail_only_trains_the_head_by_the_clean_loss_and_the_skip_stays_live() {
    let c = config("features.13", "aspp", 4.0, 40.0, "01");
    // Between the low-level feature and the split: only the clean loss reaches it.
    fn middle(m: &DeepLabV3Plus) -> &Param<Tensor<1>> {
        &m.mobilenet.as_ref().unwrap().blocks[8].project.bn.weight
    }
    fn stem(m: &DeepLabV3Plus) -> &Param<Tensor<1>> {
        &m.mobilenet.as_ref().unwrap().stem.bn.weight
    }
    let (all, clean) = gradients(&c, middle);
    assert!(close(&all, &clean), "{all:?}\nvs\n{clean:?}");
    // The stem feeds the low-level feature, which every tail takes live.
    let (all, clean) = gradients(&c, stem);
    assert!(
        !close(&all, &clean),
        "the augmented points train the stem through the skip"
    );
    // Through the head (afan before issue 17) the augmented points train the middle too.
    let mut through = c;
    through.backbone.routing = GradientRouting::HeadAndTail;
    let (all, clean) = gradients(&through, middle);
    assert!(
        !close(&all, &clean),
        "head_and_tail trains the head by every point"
    );
}

#[test]
fn backbone_momentum_is_set_on_the_backbone_only() {
    let (model, _, _) = setup();
    let head_momentum = model.head.aspp.project.bn.momentum;
    let model = model.with_backbone_bn_momentum(RELEASE_BACKBONE_BN_MOMENTUM);
    let m = model.backbone_bn_momenta();
    assert!(m.len() > 30 && m.iter().all(|&v| v == 0.01), "{m:?}");
    assert_eq!(model.head.aspp.project.bn.momentum, head_momentum);
    assert_eq!(head_momentum, 0.1);
}

#[test]
fn the_shared_head_draws_one_dropout_mask_per_release_pass() {
    let (mut model, x, _) = setup();
    let (se, sd) = config("features.13", "aspp", 1.0, 1.0, "00")
        .validate(&model)
        .unwrap();
    model.head.aspp.dropout.prob = 0.5;
    let head = SharedHead::run(&model, x, &se, &sd);
    let (sd_feature, clean) = (
        head.feature_sd.into_data().try_to_vec::<f32>().unwrap(),
        head.clean_aspp.into_data().try_to_vec::<f32>().unwrap(),
    );
    // Where both masks kept a value it is the same (the undropped output over 1 - p); the
    // sd feature and the clean pass lose different elements, as the release's two passes do.
    let kept_by_one = sd_feature
        .iter()
        .zip(&clean)
        .filter(|(a, b)| (**a == 0.0) != (**b == 0.0))
        .count();
    assert!(kept_by_one * 10 > sd_feature.len(), "{kept_by_one}");
    for (a, b) in sd_feature.iter().zip(&clean) {
        assert!(*a == 0.0 || *b == 0.0 || (a - b).abs() <= 1e-6 * a.abs().max(1.0));
    }
}
