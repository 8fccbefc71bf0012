//! The mixed-precision step against the f32 step, on a ResNet-20 classifier.

use super::*;
use crate::classification::{ClassificationTask, config};
use crate::task::Task;
use crate::task_kind::Method;
use afan_data::Batch;
use afan_models::Classifier;
use burn::module::{ModuleVisitor, Param};
use burn::tensor::Tensor;

fn setup() -> (ClassificationTask, Batch, Device) {
    let mut c = config::quickstart();
    c.common.method = Method::Baseline;
    c.common.batch_size = 8;
    let (train, test) = afan_data::shapes10(8, 8, 1);
    let task = ClassificationTask::with_data(c, train, test).unwrap();
    let batch = task.epoch_batches(0, 0).next().unwrap().unwrap();
    (task, batch, afan_core::device::test_device())
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
    crate::tensors::to_host(grads.get::<2>(last.0.unwrap()).unwrap())
}

fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    let d: f32 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let n: f32 = b.iter().map(|y| y * y).sum();
    (d / n).sqrt()
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

/// The f32 step's loss and classifier gradient, and the half step's, from one initialisation.
/// A step's loss and classifier gradient.
type LossAndGrad = (f64, Vec<f32>);

fn both(p: Precision, seed: u64) -> (LossAndGrad, LossAndGrad, LossScaler) {
    let _rng = crate::test_lock::device_rng();
    let (task, batch, device) = setup();
    let exec = Execution::new(&[device], GradSync::FirstDevice, p, 8).unwrap();
    exec.device.seed(seed);
    let model = task.build_model(&exec.device, false).unwrap();
    let ctx = StepContext {
        device: &exec.device,
        dtype: None,
        iteration: 0,
        seed: 0,
        point_weights: None,
    };
    let out = task.step(&model, batch.clone(), &ctx).unwrap();
    let full = GradientsParams::from_grads(out.loss.backward(), &model);
    let f32_side = (crate::tensors::scalar(out.loss), fc_grad(&model, &full));
    let mut scaler = LossScaler::new(p);
    let dtype = p.half().unwrap();
    let half = loop {
        let (m, grads, loss, _, apply, _) = exec
            .half(
                &task,
                model.clone(),
                batch.clone(),
                (0, 0),
                dtype,
                &mut scaler,
                None,
            )
            .unwrap();
        if apply {
            break (loss, fc_grad(&m, &grads));
        }
        assert!(scaler.scale > 1.0, "the scale never became small enough");
    };
    (f32_side, half, scaler)
}

/// bf16 keeps 8 significant bits (relative spacing 2^-8 = 0.4%); through a ResNet-20 the loss
/// and the classifier's gradient stay within a few percent of the f32 step.
#[test]
fn a_bf16_step_is_close_to_the_f32_step() {
    if !supported(Precision::Bf16) {
        return;
    }
    let ((l32, g32), (l16, g16), _) = both(Precision::Bf16, 1);
    assert!(
        (l16 - l32).abs() < 0.02 * l32,
        "bf16 loss {l16} vs f32 {l32}"
    );
    assert!(rel_err(&g16, &g32) < 0.05, "{g16:?} vs {g32:?}");
}

/// Every op runs in f16 here, batch-norm backward sums included, so 2^16 may overflow at first:
/// the scaler halves and skips until the gradients are finite, as GradScaler does.
#[test]
fn an_f16_step_is_scaled_and_close_to_the_f32_step() {
    if !supported(Precision::F16) {
        return;
    }
    let ((_, g32), (_, g16), scaler) = both(Precision::F16, 2);
    assert!(scaler.scale <= 65536.0 && scaler.scale >= 1.0);
    // f16 has 11 significant bits: closer than bf16.
    assert!(rel_err(&g16, &g32) < 0.02, "{g16:?} vs {g32:?}");
}

/// The whole step in bf16, optimizer included, memorises one batch, and the model it returns
/// keeps f32 weights (it evaluates in f32).
#[test]
fn a_short_bf16_run_learns() {
    if !supported(Precision::Bf16) {
        return;
    }
    let _rng = crate::test_lock::device_rng();
    let (task, batch, device) = setup();
    let exec = Execution::new(
        std::slice::from_ref(&device),
        GradSync::FirstDevice,
        Precision::Bf16,
        8,
    )
    .unwrap();
    exec.device.seed(3);
    let mut model = task.build_model(&exec.device, false).unwrap();
    let mut optim = task.config().common.optim.build();
    let mut scaler = LossScaler::new(Precision::Bf16);
    let mut losses = Vec::new();
    for i in 0..12 {
        let out = exec
            .step(
                &task,
                model,
                &mut optim,
                batch.clone(),
                (i, 0),
                0.05,
                &mut scaler,
                None,
            )
            .unwrap();
        losses.push(out.loss);
        model = out.model;
    }
    assert!(
        losses[11] < 0.5 * losses[0],
        "one batch of 8 is memorised: {losses:?}"
    );
    let logits =
        afan_core::SplitModel::forward(&model.valid(), Tensor::zeros([1, 3, 32, 32], &device));
    assert_eq!(logits.dtype(), burn::tensor::DType::F32);
}

/// The address of each convolution weight's buffer (flex only), in module order.
fn conv_weight_addresses(model: &Classifier) -> Vec<usize> {
    use burn::backend::{BackendTensor, DispatchTensorKind};
    struct Addresses(Vec<usize>);
    impl ModuleVisitor for Addresses {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if D != 4 {
                return;
            }
            match p.val().inner().into_dispatch().kind {
                DispatchTensorKind::Flex(BackendTensor::Float(f)) => {
                    self.0.push(f.bytes().as_ptr() as usize)
                }
                _ => panic!("not a flex tensor"),
            }
        }
    }
    let mut a = Addresses(Vec::new());
    model.visit(&mut a);
    a.0
}

/// An A-FAN step (the attack's backward passes, then the final one) on flex reuses the flipped
/// weights of its passes (cache hits), drops them before the optimizer step (nothing cached after
/// it), and the optimizer still updates every convolution weight in place: the same buffers
/// before and after, which a weight still shared with the cache would not keep (flex's
/// `storage_mut` copies a shared buffer).
#[test]
fn an_afan_step_reuses_flipped_weights_and_updates_in_place() {
    use afan_models::conv::FlippedWeights;
    if !afan_core::device::testing_on_cpu() {
        eprintln!("skipped: the flipped weights are flex's");
        return;
    }
    let _rng = crate::test_lock::device_rng();
    let mut c = config::quickstart();
    c.common.method = Method::Afan;
    c.common.batch_size = 8;
    let (train, test) = afan_data::shapes10(8, 8, 1);
    let task = ClassificationTask::with_data(c, train, test).unwrap();
    let batch = task.epoch_batches(0, 0).next().unwrap().unwrap();
    let device = afan_core::device::test_device();
    let exec = Execution::new(&[device], GradSync::FirstDevice, Precision::F32, 8).unwrap();
    exec.device.seed(5);
    let mut model = task.build_model(&exec.device, false).unwrap();
    let mut optim = task.config().common.optim.build();
    let mut scaler = LossScaler::new(Precision::F32);
    for i in 0..2 {
        let addresses = conv_weight_addresses(&model);
        // The cache is per thread and the step runs on a pool worker: count on that worker
        // (on_pool runs the step in place when called from one).
        let (out, before, after) = afan_models::on_pool(|| {
            let before = FlippedWeights::counts();
            let out = exec
                .step(
                    &task,
                    model,
                    &mut optim,
                    batch.clone(),
                    (i, 0),
                    0.05,
                    &mut scaler,
                    None,
                )
                .unwrap();
            (out, before, FlippedWeights::counts())
        });
        assert!(
            after.hits > before.hits,
            "step {i}: no flipped weight reused"
        );
        assert_eq!(
            (after.entries, after.bytes),
            (0, 0),
            "step {i}: left cached"
        );
        model = out.model;
        assert_eq!(
            conv_weight_addresses(&model),
            addresses,
            "step {i}: a weight was copied"
        );
    }
}

/// Every float of the model (weights and running statistics), bit for bit, in module order.
fn model_bits<M: Module>(model: &M) -> Vec<u32> {
    struct Bits(Vec<u32>);
    impl ModuleVisitor for Bits {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let flat = p.val().reshape([-1]);
            self.0
                .extend(crate::tensors::to_host(flat).iter().map(|v| v.to_bits()));
        }
    }
    let mut b = Bits(Vec::new());
    model.visit(&mut b);
    b.0
}

/// Three A-FAN steps, each on another thread (a new one-thread pool per step, as the engine's
/// step runs on whichever worker of the pool takes it), end with the same weights and running
/// statistics, bit for bit, as three steps on one thread. With Burn's per-thread running
/// statistics a step on another thread read them from before the previous step (stop 29); any
/// other state kept per thread would show here too.
#[test]
fn a_step_gives_the_same_model_whichever_thread_runs_it() {
    let _rng = crate::test_lock::device_rng();
    let mut c = config::quickstart();
    c.common.method = Method::Afan;
    c.common.batch_size = 8;
    let (train, test) = afan_data::shapes10(8, 8, 1);
    let task = ClassificationTask::with_data(c, train, test).unwrap();
    let batch = task.epoch_batches(0, 0).next().unwrap().unwrap();
    let device = afan_core::device::test_device();
    let exec = Execution::new(&[device], GradSync::FirstDevice, Precision::F32, 8).unwrap();
    let one_thread = || {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a thread pool")
    };
    let run = |same_thread: bool| {
        exec.device.seed(5);
        let mut model = task.build_model(&exec.device, false).unwrap();
        let mut optim = task.config().common.optim.build();
        let mut scaler = LossScaler::new(Precision::F32);
        let shared = one_thread();
        for i in 0..3 {
            let fresh;
            let pool = if same_thread {
                &shared
            } else {
                fresh = one_thread();
                &fresh
            };
            let step = || {
                let b = batch.clone();
                exec.step(&task, model, &mut optim, b, (i, 0), 0.05, &mut scaler, None)
            };
            model = pool.install(step).unwrap().model;
        }
        model_bits(&model)
    };
    let one = run(true);
    assert!(!one.is_empty());
    assert_eq!(run(false), one, "steps on three threads");
}

/// A step's random draws (here the DeepLab's ASPP dropout, drawn by each A-FAN pass) come from
/// the step's seed, not from the backend's process-wide generator: on one device and on two
/// replicas of it, two steps after seeding the backend differently end with the same model, bit
/// for bit. Replicas that drew from the backend's generator at the same time took their masks
/// in the order their threads came, and a two-replica run's loss changed from run to run (the
/// CI failure at the end of stop 29).
#[test]
fn a_steps_random_draws_are_its_own_on_one_device_and_on_replicas() {
    let _rng = crate::test_lock::device_rng();
    let mut c = crate::segmentation::config::quickstart();
    c.task.model.aspp_channels = 16;
    c.task.synthetic.train = 8;
    c.task.synthetic.test = 4;
    c.common.batch_size = 4;
    let task = crate::segmentation::SegmentationTask::open(c, crate::Purpose::Train).unwrap();
    let batch = task.epoch_batches(0, 0).next().unwrap().unwrap();
    let device = afan_core::device::test_device();
    for devices in [vec![device.clone()], vec![device.clone(), device]] {
        let exec = Execution::new(&devices, GradSync::FirstDevice, Precision::F32, 4).unwrap();
        let run = |backend_seed| {
            exec.device.seed(1);
            let mut model = task.build_model(&exec.device, false).unwrap();
            let mut optim = task.config().common.optim.build();
            let mut scaler = LossScaler::new(Precision::F32);
            exec.device.seed(backend_seed);
            for i in 0..2 {
                let b = batch.clone();
                let stepped =
                    exec.step(&task, model, &mut optim, b, (i, 9), 0.05, &mut scaler, None);
                model = stepped.unwrap().model;
            }
            model_bits(&model)
        };
        let first = run(2);
        assert!(!first.is_empty());
        assert!(
            first == run(3),
            "{} device(s): the model depends on the backend's generator",
            devices.len()
        );
    }
}
