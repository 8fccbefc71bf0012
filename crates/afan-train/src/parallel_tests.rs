use super::*;
use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::optim::SgdConfig;
use burn::tensor::TensorData;

/// The CPU, or `AFAN_TEST_DEVICE`: two replicas of one device exercise the first-device
/// gradient averaging on any backend.
fn flex() -> Device {
    afan_core::device::test_device()
}

/// y = x . [1, -1] + 0.5.
fn line(device: &Device) -> Linear {
    let mut lin = LinearConfig::new(2, 1).init(device);
    lin.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(vec![1.0f32, -1.0], [2, 1]),
        device,
    ));
    lin.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(vec![0.5f32], [1]),
        device,
    )));
    lin
}

/// Mean squared error of the line on a shard.
fn mse(model: &Linear, (x, t): (Vec<f32>, Vec<f32>), device: &Device) -> Result<(Tensor<1>, ())> {
    let n = t.len();
    let x = Tensor::<2>::from_data(TensorData::new(x, [n, 2]), device);
    let t = Tensor::<2>::from_data(TensorData::new(t, [n, 1]), device);
    let r = model.forward(x) - t;
    Ok(((r.clone() * r).mean().reshape([1]), ()))
}

fn grads_of(model: &Linear, g: &GradientsParams) -> (Vec<f32>, Vec<f32>) {
    let w = g.get::<2>(model.weight.id).unwrap();
    let b = g.get::<1>(model.bias.as_ref().unwrap().id).unwrap();
    (crate::tensors::to_host(w), crate::tensors::to_host(b))
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-6, "{got:?} != {want:?}");
    }
}

/// The batch of the tests below in two shards of two rows (inputs, targets).
fn halves() -> Vec<(Vec<f32>, Vec<f32>)> {
    vec![
        (vec![1.0, 0.0, 0.0, 1.0], vec![1.0, 0.0]),
        (vec![2.0, 1.0, 1.0, 3.0], vec![2.0, -1.0]),
    ]
}

/// Rows [1,0], [0,1], [2,1], [1,3] with targets 1, 0, 2, -1: residuals of the line are
/// 0.5, -0.5, -0.5, -0.5, so the full-batch gradient is dL/dw = 2/4 * sum(r_i x_i) =
/// [-0.5, -1.25] and dL/db = 2/4 * sum(r_i) = -0.5. The half batches give [0.5, -0.5], 0 and
/// [-1.5, -2], -1, whose mean is the same.
#[test]
fn two_half_batch_replicas_average_to_the_full_batch_gradient() {
    let replicas = Replicas::new(vec![flex(), flex()], GradSync::FirstDevice).unwrap();
    let device = replicas.first().clone();
    let model = line(&device);
    let shards = halves();
    let (first, grads, outs) = replicas.run(&model, shards, mse).unwrap();
    let (w, b) = grads_of(&first, &grads);
    assert_close(&w, &[-0.5, -1.25]);
    assert_close(&b, &[-0.5]);
    // Shard losses: mean(r^2) = 0.25 each.
    assert_close(&[outs[0].0 as f32, outs[1].0 as f32], &[0.25, 0.25]);

    // And what Burn computes for the whole batch on one device agrees.
    let (loss, ()) = mse(
        &model,
        (
            vec![1.0, 0.0, 0.0, 1.0, 2.0, 1.0, 1.0, 3.0],
            vec![1.0, 0.0, 2.0, -1.0],
        ),
        &device,
    )
    .unwrap();
    let full = GradientsParams::from_grads(loss.backward(), &model);
    let (fw, fb) = grads_of(&model, &full);
    assert_close(&w, &fw);
    assert_close(&b, &fb);
}

/// Point weights `w = [1, 0.5]` in each shard's loss `w0 * mse + w1 * sum(x)`: the shards'
/// weight gradients are `[0.25, 2]` and `[0.25, 7]` (mse 0.25 each; the rows of the first
/// shard sum to 2, of the second to 7), whose mean is `[0.25, 4.5]` (a sum would be
/// `[0.5, 9]`); the network's gradients are the full batch's, as without weights (`w0 = 1`).
#[test]
fn point_weight_gradients_are_averaged_over_replicas() {
    let replicas = Replicas::new(vec![flex(), flex()], GradSync::FirstDevice).unwrap();
    let device = replicas.first().clone();
    let model = line(&device);
    let shards = halves();
    let weights = afan_core::PointWeights {
        values: vec![1.0, 0.5],
        velocity: None,
    };
    let (first, grads, _, wgrad) = replicas
        .run_with_weights(&model, shards, Some(&weights), |m, (x, t), d, leaf| {
            let sum_x: f32 = x.iter().sum();
            let (mse, ()) = mse(m, (x, t), d)?;
            let w = leaf.expect("the weights' leaf").clone();
            let loss = mse * w.clone().slice(0..1) + w.slice(1..2).mul_scalar(sum_x);
            Ok((loss, ()))
        })
        .unwrap();
    let wgrad: Vec<f32> = wgrad.unwrap().into_iter().map(|v| v as f32).collect();
    assert_close(&wgrad, &[0.25, 4.5]);
    let (w, b) = grads_of(&first, &grads);
    assert_close(&w, &[-0.5, -1.25]);
    assert_close(&b, &[-0.5]);
}

#[test]
fn a_two_replica_run_learns() {
    let replicas = Replicas::new(vec![flex(), flex()], GradSync::FirstDevice).unwrap();
    let device = replicas.first().clone();
    let mut model = LinearConfig::new(2, 1).init(&device);
    let mut optim = SgdConfig::new().init();
    // Targets of the line 2a - b + 0.3 on a fixed grid of 8 points, 4 per replica.
    let xs: Vec<[f32; 2]> = (0..8)
        .map(|i| [(i % 4) as f32 * 0.5 - 0.75, (i / 4) as f32 - 0.5])
        .collect();
    let shard = |part: &[[f32; 2]]| {
        let x: Vec<f32> = part.iter().flatten().copied().collect();
        let t: Vec<f32> = part.iter().map(|p| 2.0 * p[0] - p[1] + 0.3).collect();
        (x, t)
    };
    let mut losses = Vec::new();
    for _ in 0..60 {
        let shards = vec![shard(&xs[..4]), shard(&xs[4..])];
        let (first, grads, outs) = replicas.run(&model, shards, mse).unwrap();
        losses.push((outs[0].0 + outs[1].0) / 2.0);
        model = optim.step(0.2, first, grads);
    }
    let (start, end) = (losses[0], *losses.last().unwrap());
    assert!(end < start * 0.01, "loss {start} -> {end}: {losses:?}");
}

#[test]
fn a_batch_that_does_not_split_evenly_is_refused() {
    let e = shard_ranges(3, 2).unwrap_err().to_string();
    assert!(
        e.contains("batch_size 3") && e.contains("multiple of 2"),
        "{e}"
    );
    assert_eq!(shard_ranges(4, 2).unwrap(), vec![0..2, 2..4]);
    assert!(Replicas::new(vec![flex()], GradSync::FirstDevice).is_err());
}

#[test]
fn device_lists_pick_the_gradient_averaging() {
    let (d, sync) = parse_devices("cpu, cpu").unwrap();
    assert_eq!((d.len(), sync), (2, GradSync::FirstDevice));
    assert_eq!(parse_devices("cpu").unwrap().0.len(), 1);
    assert!(parse_devices("cpu,tpu").is_err());
}

#[test]
fn a_gpu_named_twice_is_refused_whatever_the_spelling() {
    let e = parse_devices("cuda, CUDA:0").unwrap_err().to_string();
    assert!(e.contains("cuda:0 twice"), "{e}");
    let e = parse_devices("wgpu:1,wgpu:1").unwrap_err().to_string();
    assert!(e.contains("twice"), "{e}");
}

/// Two replicas, two batch-norm passes each per step, two steps: the running statistics are the
/// mean over the replicas of what each would hold on one device (hand-derived), the same bit for
/// bit in every run. Burn's per-thread averaging, relied on before, mixed the replicas' values
/// as timing fell and dropped the first step's (its threads were gone at the second).
#[test]
fn replicas_keep_the_mean_of_their_running_statistics() {
    use afan_models::norm::{BatchNorm2d, BatchNorm2dConfig};
    let replicas = Replicas::new(vec![flex(), flex()], GradSync::FirstDevice).unwrap();
    let device = replicas.first().clone();
    let passes = |bn: &BatchNorm2d, x: Vec<f32>, d: &Device| -> Result<(Tensor<1>, ())> {
        let x = Tensor::<4>::from_data(TensorData::new(x, [2, 1, 1, 2]), d);
        let y = bn.forward(x.clone()) + bn.forward(x);
        Ok((y.sum().reshape([1]), ()))
    };
    let run = || {
        let bn = BatchNorm2dConfig::new(1).init(&device);
        (0..2)
            .map(|_| {
                // Batch means 3 and 5, unbiased variances 14/3 and 2/3.
                let shards = vec![vec![1.0, 2.0, 3.0, 6.0], vec![4.0, 5.0, 6.0, 5.0]];
                replicas.run(&bn, shards, passes).unwrap();
                let host = |t: Tensor<1>| crate::tensors::to_host(t)[0];
                (host(bn.running_mean.value()), host(bn.running_var.value()))
            })
            .collect::<Vec<_>>()
    };
    let first = run();
    // Two passes at momentum 0.1 move r to 0.81 r + 0.19 b on each replica; the mean over the
    // replicas' batches b is 4 (means) and 8/3 (variances).
    let (m1, v1) = (0.19 * 4.0, 0.81 + 0.19 * 8.0 / 3.0);
    let want = [
        (m1, v1),
        (0.81 * m1 + 0.19 * 4.0, 0.81 * v1 + 0.19 * 8.0 / 3.0),
    ];
    for ((m, v), (wm, wv)) in first.iter().zip(want) {
        assert_close(&[*m, *v], &[wm as f32, wv as f32]);
    }
    for _ in 0..4 {
        assert_eq!(run(), first, "another run");
    }
}
