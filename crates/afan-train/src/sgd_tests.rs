use super::kernel::{update, update_on};
use super::*;
use burn::nn::LinearConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::optim::{decay::WeightDecayConfig, momentum::MomentumConfig};
use burn::tensor::TensorData;

fn device() -> Device {
    afan_core::device::test_device()
}

/// Deterministic values of both signs and several magnitudes.
fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| {
            let h = i
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed.wrapping_mul(40_503))
                >> 8;
            (h % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn tensor(v: Vec<f32>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn host(t: &Tensor<2>) -> Vec<f32> {
    crate::tensors::to_host(t.clone())
}

/// The configurations the releases use and the other branches of the update.
fn configs() -> Vec<(Option<f32>, Option<Momentum>)> {
    let m = |momentum, dampening, nesterov| Momentum {
        momentum,
        dampening,
        nesterov,
    };
    vec![
        (Some(5e-4), Some(m(0.9, 0.0, false))),
        (Some(1e-4), Some(m(0.9, 0.1, true))),
        (None, Some(m(0.8, 0.25, false))),
        (Some(5e-4), None),
        (None, None),
    ]
}

fn burn_sgd(weight_decay: Option<f32>, momentum: Option<Momentum>) -> SgdConfig {
    SgdConfig::new()
        .with_weight_decay(weight_decay.map(|penalty| WeightDecayConfig { penalty }))
        .with_momentum(momentum.map(|m| MomentumConfig {
            momentum: m.momentum as f64,
            dampening: m.dampening,
            nesterov: m.nesterov,
        }))
}

/// Three steps on one weight larger than a rayon chunk, with Burn's `Sgd`, this module's flex path
/// and its ops path: the weights agree bit for bit, and the caller's weight and gradient tensors
/// (shared with the optimizer's inputs) are left as they were.
#[test]
fn the_update_equals_burns_sgd_bit_for_bit() {
    let device = device();
    let shape = [37, 1000]; // 37 000 elements: one full chunk and a partial one
    let n = shape[0] * shape[1];
    for (weight_decay, momentum) in configs() {
        let ours = Sgd {
            weight_decay,
            momentum,
        };
        let theirs = burn_sgd(weight_decay, momentum).build();
        let start = tensor(values(n, 1), shape, &device);
        let (mut p_theirs, mut p_fused, mut p_ops) = (start.clone(), start.clone(), start.clone());
        let (mut s_theirs, mut s_fused, mut v_ops) = (None, None, None);
        for step in 0..3 {
            let lr = 0.1 / (step + 1) as f64;
            let g = tensor(values(n, 10 + step), shape, &device);
            let g_before = host(&g);
            let (p, s) = theirs.step(lr, p_theirs, g.clone(), s_theirs);
            (p_theirs, s_theirs) = (p, s);
            let (p, s) = Optimizer::step(&ours, lr, p_fused.clone(), g.clone(), s_fused);
            let kept = host(&p_fused);
            (p_fused, s_fused) = (p, s);
            let (p, s) = ours.step_by_ops(lr, p_ops, g.clone(), v_ops);
            (p_ops, v_ops) = (p, s.and_then(|s| s.velocity));
            let expect = host(&p_theirs);
            let what = format!("{weight_decay:?} {momentum:?} step {step}");
            assert_eq!(host(&p_fused), expect, "flex path, {what}");
            assert_eq!(host(&p_ops), expect, "ops path, {what}");
            assert_eq!(host(&g), g_before, "the caller's gradient changed, {what}");
            assert_ne!(kept, expect, "the caller's weights changed, {what}");
            assert_eq!(
                s_fused.as_ref().unwrap().velocity.is_some(),
                momentum.is_some(),
                "{what}"
            );
        }
    }
}

/// One step by hand: p = 1, g = 0.5, v = 2, weight decay 0.1, momentum 0.9, dampening 0.5,
/// lr 0.1: d = 1 * 0.1 + 0.5 = 0.6; v = 0.6 * 0.5 + 2 * 0.9 = 2.1; p = 1 - 0.21 = 0.79; with
/// Nesterov the step is v * 0.9 + d = 2.49 and p = 0.751. On a first step v = d = 0.6.
#[test]
fn the_update_matches_hand_values() {
    let sgd = |nesterov| Sgd {
        weight_decay: Some(0.1),
        momentum: Some(Momentum {
            momentum: 0.9,
            dampening: 0.5,
            nesterov,
        }),
    };
    let close = |a: f32, b: f32| assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    for (nesterov, p_expect) in [(false, 0.79), (true, 0.751)] {
        let (mut p, mut g, mut v) = ([1.0f32], [0.5f32], [2.0f32]);
        update(&sgd(nesterov), 0.1, &mut p, &mut g, Some(&mut v));
        close(v[0], 2.1);
        close(p[0], p_expect);
    }
    let (mut p, mut g) = ([1.0f32], [0.5f32]);
    update(&sgd(false), 0.1, &mut p, &mut g, None);
    close(g[0], 0.6); // the new velocity
    close(p[0], 0.94);
}

/// The update is element-wise: 1 and 2 threads give the same bits, chunk boundaries included.
#[test]
fn threads_do_not_change_the_update() {
    let n = 3 * (1 << 15) + 7;
    let sgd = Sgd {
        weight_decay: Some(5e-4),
        momentum: Some(Momentum {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
        }),
    };
    let run = |threads: usize| {
        let (mut p, mut g, mut v) = (values(n, 1), values(n, 2), values(n, 3));
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| update(&sgd, 0.01, &mut p, &mut g, Some(&mut v)));
        (p, v)
    };
    let one = run(1);
    assert_eq!(one, run(2));
    // The last element, past the last full chunk, was updated too.
    let (p0, g0, v0) = (
        values(n, 1)[n - 1],
        values(n, 2)[n - 1],
        values(n, 3)[n - 1],
    );
    let v = (p0 * 5e-4 + g0) + v0 * 0.9;
    assert_eq!(one.1[n - 1], v);
    assert_eq!(one.0[n - 1], p0 - v * 0.01);
}

/// A model trained one step by Burn's optimizer and saved continues identically in this one, and
/// the other way round: the state is saved under Burn's names.
#[test]
fn optimizer_records_load_in_both_directions() {
    let device = device().autodiff();
    let (wd, m) = configs()[0];
    let model = LinearConfig::new(300, 200).init(&device);
    let x = Tensor::<2>::from_data(TensorData::new(values(4 * 300, 5), [4, 300]), &device);
    let grads = |model: &burn::nn::Linear| {
        let y = model.forward(x.clone());
        let loss = (y.clone() * y).mean();
        GradientsParams::from_grads(loss.backward(), model)
    };
    let ours = || {
        ModuleOptimizer::from(Sgd {
            weight_decay: wd,
            momentum: m,
        })
    };
    let theirs = || burn_sgd(wd, m).init();
    for (first, second) in [(theirs(), ours()), (ours(), theirs())] {
        let mut first = first;
        let model = first.step(0.1, model.clone(), grads(&model));
        let mut second = second.load_record(first.to_record());
        let a = first.step(0.1, model.clone(), grads(&model));
        let b = second.step(0.1, model.clone(), grads(&model));
        let w = |l: &burn::nn::Linear| host(&l.weight.val().inner());
        assert_eq!(w(&a), w(&b));
        // Without the velocity the second step would differ: the state was really carried over.
        let c = theirs().step(0.1, model.clone(), grads(&model));
        assert_ne!(w(&a), w(&c));
    }
}

/// The update compiled for every instruction set this CPU has (baseline SSE, AVX2, AVX-512)
/// against Burn's ops (`step_by_ops`, equal to `burn::optim::Sgd` by the test above), three
/// steps of every configuration, bit for bit: a length with a vector tail past a full chunk, and
/// lengths shorter than one vector. An FMA or a reordered sum in a wide loop would fail here.
#[test]
fn every_instruction_set_gives_burns_bits() {
    let device = device();
    for isa in afan_models::simd::Isa::all_available() {
        for n in [(1 << 15) + 1003, 13, 1] {
            for (weight_decay, momentum) in configs() {
                let sgd = Sgd {
                    weight_decay,
                    momentum,
                };
                let start = values(n, 1);
                let mut p_ops = tensor(start.clone(), [1, n], &device);
                let mut v_ops = None;
                let mut p = start;
                let mut v: Option<Vec<f32>> = None;
                for step in 0..3 {
                    let lr = 0.1 / (step + 1) as f64;
                    let g = values(n, 10 + step);
                    let (q, s) =
                        sgd.step_by_ops(lr, p_ops, tensor(g.clone(), [1, n], &device), v_ops);
                    (p_ops, v_ops) = (q, s.and_then(|s| s.velocity));
                    let mut g = g;
                    match v.as_mut() {
                        Some(v) => update_on(isa, &sgd, lr, &mut p, &mut g, Some(v)),
                        None => {
                            update_on(isa, &sgd, lr, &mut p, &mut g, None);
                            v = momentum.map(|_| g);
                        }
                    }
                    let what = format!("{isa:?} n={n} {weight_decay:?} {momentum:?} step {step}");
                    let bits = |x: &[f32]| x.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&p), bits(&host(&p_ops)), "weights, {what}");
                    let v_expect = v_ops.as_ref().map(|v| bits(&host(v)));
                    assert_eq!(v.as_deref().map(bits), v_expect, "velocity, {what}");
                }
            }
        }
    }
}
