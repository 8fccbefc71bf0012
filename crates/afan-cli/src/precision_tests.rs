use super::*;
use crate::config::OptimConfig;
use crate::step::sgd;
use afan_core::SplitModel;
use afan_models::ClassifierKind;
use burn::tensor::{Distribution, TensorData};

fn setup(seed: u64) -> (Device, Classifier, Tensor<4>, Tensor<1, Int>) {
    let device = afan_core::device::test_device().autodiff();
    device.seed(seed);
    let model = ClassifierKind::CifarResNet(8).build(4, &device);
    let x = Tensor::<4>::random([8, 3, 16, 16], Distribution::Uniform(0.0, 1.0), &device);
    let y = Tensor::<1, Int>::from_data(
        TensorData::new(vec![0i64, 1, 2, 3, 0, 1, 2, 3], [8]),
        &device,
    );
    (device, model, x, y)
}

fn fc_grad(model: &Classifier, grads: &GradientsParams) -> Vec<f32> {
    struct Last(Option<burn::module::ParamId>);
    impl ModuleVisitor for Last {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if D == 2 {
                self.0 = Some(p.id);
            }
        }
    }
    let mut last = Last(None);
    model.visit(&mut last);
    crate::data::to_host(grads.get::<2>(last.0.unwrap()).unwrap())
}

/// Whether the test device computes `p`; every CPU must (flex implements both half types), a
/// GPU may not (WGSL has no bf16), and then the test says so and stops.
fn supported(p: Precision) -> bool {
    match check_support(&afan_core::device::test_device(), p) {
        Ok(()) => true,
        Err(e) if !afan_core::device::testing_on_cpu() => {
            eprintln!("skipped on this device: {e}");
            false
        }
        Err(e) => panic!("{e}"),
    }
}

fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    let d: f32 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let n: f32 = b.iter().map(|y| y * y).sum();
    (d / n).sqrt()
}

/// bf16 keeps 8 significant bits (relative spacing 2^-8 = 0.4%); through a ResNet-8 the loss
/// and the classifier's gradient stay within a few percent of the f32 step.
#[test]
fn a_bf16_step_is_close_to_the_f32_step() {
    if !supported(Precision::Bf16) {
        return;
    }
    let (_, model, x, y) = setup(1);
    let (loss, _, _) = training_loss(&model, x.clone(), y.clone(), &Objective::Baseline);
    let full = GradientsParams::from_grads(loss.backward(), &model);
    let f32_loss = loss.into_scalar::<f64>();
    let f32_grad = fc_grad(&model, &full);

    let mut scaler = LossScaler::new(Precision::Bf16);
    let (step, apply) = half_step(
        &model,
        x,
        y,
        &Objective::Baseline,
        Precision::Bf16,
        &mut scaler,
    );
    assert!(apply);
    assert!(
        (step.loss - f32_loss).abs() < 0.02 * f32_loss,
        "bf16 loss {} vs f32 {f32_loss}",
        step.loss
    );
    let g = fc_grad(&step.model, &step.grads);
    assert!(rel_err(&g, &f32_grad) < 0.05, "{g:?} vs {f32_grad:?}");
    // The master stays f32, running statistics included (the model evaluates in f32).
    let plain = afan_core::device::test_device();
    let logits = step
        .model
        .valid()
        .forward(Tensor::zeros([1, 3, 16, 16], &plain));
    assert_eq!(logits.dtype(), burn::tensor::DType::F32);
}

#[test]
fn an_f16_step_is_scaled_and_close_to_the_f32_step() {
    if !supported(Precision::F16) {
        return;
    }
    let (_, model, x, y) = setup(2);
    let (loss, _, _) = training_loss(&model, x.clone(), y.clone(), &Objective::Baseline);
    let full = GradientsParams::from_grads(loss.backward(), &model);
    let f32_grad = fc_grad(&model, &full);
    let mut scaler = LossScaler::new(Precision::F16);
    // Every op runs in f16 here, batch-norm backward sums included, so 2^16 overflows at first:
    // the scaler halves and skips until the gradients are finite, as GradScaler does.
    let mut skipped = 0;
    let step = loop {
        let (step, apply) = half_step(
            &model,
            x.clone(),
            y.clone(),
            &Objective::Baseline,
            Precision::F16,
            &mut scaler,
        );
        if apply {
            break step;
        }
        skipped += 1;
        assert!(skipped < 16, "the scale never became small enough");
    };
    assert_eq!(scaler.scale, 65536.0 / f64::powi(2.0, skipped));
    let g = fc_grad(&step.model, &step.grads);
    // f16 has 11 significant bits: closer than bf16.
    assert!(rel_err(&g, &f32_grad) < 0.02, "{g:?} vs {f32_grad:?}");
}

#[test]
fn a_short_bf16_run_learns() {
    if !supported(Precision::Bf16) {
        return;
    }
    let (_, mut model, x, y) = setup(3);
    let mut optim = sgd(&OptimConfig {
        lr: 0.05,
        weight_decay: 0.0,
        ..OptimConfig::default()
    });
    let mut scaler = LossScaler::new(Precision::Bf16);
    let mut losses = Vec::new();
    for _ in 0..12 {
        let (step, apply) = half_step(
            &model,
            x.clone(),
            y.clone(),
            &Objective::Baseline,
            Precision::Bf16,
            &mut scaler,
        );
        assert!(apply);
        losses.push(step.loss);
        model = optim.step(0.05, step.model, step.grads);
    }
    assert!(
        losses[11] < 0.5 * losses[0],
        "one batch of 8 is memorised: {losses:?}"
    );
}

#[test]
fn the_loss_scale_halves_on_overflow_and_grows_after_2000_good_steps() {
    let mut s = LossScaler::new(Precision::F16);
    assert_eq!(s.scale, 65536.0);
    assert!(!s.update(false));
    assert_eq!(s.scale, 32768.0);
    for _ in 0..1999 {
        assert!(s.update(true));
    }
    assert_eq!(s.scale, 32768.0);
    assert!(s.update(true));
    assert_eq!(s.scale, 65536.0);
    let mut b = LossScaler::new(Precision::Bf16);
    assert!(b.update(false), "bf16 is unscaled: nothing to skip");
    assert_eq!(b.scale, 1.0);
}

#[test]
fn the_test_device_passes_the_support_probe_or_refuses_clearly() {
    let device = afan_core::device::test_device();
    check_support(&device, Precision::F32).unwrap();
    for p in [Precision::F16, Precision::Bf16] {
        match check_support(&device, p) {
            Ok(()) => eprintln!("{p:?}: supported on {device:?}"),
            // The CPU backend implements both; a GPU may lack one and must say so by name.
            Err(e) if !afan_core::device::testing_on_cpu() => {
                let e = e.to_string();
                assert!(e.contains(&format!("{p:?}")) && e.contains("f32"), "{e}");
                eprintln!("{p:?}: refused on {device:?}: {e}");
            }
            Err(e) => panic!("{e}"),
        }
    }
}
