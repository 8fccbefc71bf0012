//! The batch-norm kernels compiled for every instruction set this CPU has (`crate::simd`) against
//! their baseline (SSE2) build: bit-identical outputs, sums and gradients on planes whose length
//! is not a multiple of the vector width or of [`LANES`], and [`lane_sum`] in its documented order.

use super::backward::{GradSums, NormGrad, grad_sums_on, input_grad_in_place_on};
use super::kernel::{Activation, LANES, Planes, batch_stats_on, lane_sum, normalize_in_place_on};
use crate::simd::Isa;

/// Deterministic values in about [-2, 2), with some exact zeros (ReLU boundaries); scaled by 4
/// where ReLU6's upper bound should be crossed.
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|i| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0;
            if i % 13 == 0 { 0.0 } else { v }
        })
        .collect()
}

/// Odd extents: 77-pixel planes (two 32-lane chunks and a 13-element tail, 9 AVX-512 vectors
/// and 5 left over), 5-pixel planes (tail only), 1-pixel planes, and enough planes (200 * 77)
/// for the work to be split over several rayon tasks.
const SHAPES: [Planes; 4] = [
    Planes {
        batch: 3,
        channels: 5,
        pixels: 77,
    },
    Planes {
        batch: 40,
        channels: 5,
        pixels: 77,
    },
    Planes {
        batch: 2,
        channels: 3,
        pixels: 5,
    },
    Planes {
        batch: 4,
        channels: 2,
        pixels: 1,
    },
];

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn bits64(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Everything the kernels compute for one shape on `isa`, as bit patterns.
fn all_outputs(isa: Isa, p: Planes) -> Vec<Vec<u64>> {
    let (x, r, dy) = (values(p.len(), 1), values(p.len(), 2), values(p.len(), 3));
    let c = p.channels;
    let (scale, shift) = (values(c, 4), values(c, 5));
    let (mean, var) = batch_stats_on(isa, p, &x);
    let mut out = vec![bits(&mean), bits(&var)]
        .into_iter()
        .map(widen)
        .collect::<Vec<_>>();
    // Scale and shift spread outputs over -8..8: below 0, inside (0, 6) and above 6.
    let scale: Vec<f32> = scale.iter().map(|s| s * 4.0).collect();
    let mut act_out = Vec::new();
    for residual in [None, Some(&r[..])] {
        for act in ACTIVATIONS {
            let mut y = x.clone();
            normalize_in_place_on(isa, p, &mut y, [&scale, &shift], residual, act);
            out.push(widen(bits(&y)));
            if residual.is_none() {
                act_out.push((act, y));
            }
        }
    }
    let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect();
    for (act, act_out) in &act_out {
        for batch_stats in [false, true] {
            for keep_masked in [false, true] {
                let a = NormGrad {
                    planes: p,
                    x: &x,
                    activated: Some((*act, &act_out[..])),
                    gamma: &scale,
                    mean: &mean,
                    inv_std: &inv_std,
                    batch_stats,
                };
                let sums: GradSums = grad_sums_on(isa, &a, &dy, [true, keep_masked]);
                out.push(bits64(&sums.sum_g));
                out.push(bits64(&sums.sum_gx));
                out.push(widen(bits(sums.masked.as_deref().unwrap_or(&[]))));
                let mut dx = dy.clone();
                input_grad_in_place_on(isa, &a, &sums, &mut dx);
                out.push(widen(bits(&dx)));
            }
        }
    }
    out
}

const ACTIVATIONS: [Activation; 3] = [Activation::None, Activation::Relu, Activation::Relu6];

fn widen(v: Vec<u32>) -> Vec<u64> {
    v.into_iter().map(u64::from).collect()
}

#[test]
fn every_instruction_set_gives_the_baseline_bits() {
    let isas = Isa::all_available();
    assert!(matches!(isas[0], Isa::Baseline));
    for p in SHAPES {
        let baseline = all_outputs(Isa::Baseline, p);
        for &isa in &isas[1..] {
            let got = all_outputs(isa, p);
            assert_eq!(got.len(), baseline.len());
            for (k, (g, b)) in got.iter().zip(&baseline).enumerate() {
                assert_eq!(
                    g, b,
                    "output {k} of {p:?} on {isa:?} differs from the baseline"
                );
            }
        }
    }
}

#[test]
fn lane_sum_adds_in_the_documented_order() {
    for len in [0, 1, 5, LANES - 1, LANES, LANES + 1, 77, 3 * LANES + 7] {
        let v = values(len, 7);
        let body = len - len % LANES;
        let mut lanes = [0.0f32; LANES];
        for (i, x) in v[..body].iter().enumerate() {
            lanes[i % LANES] += x * x;
        }
        let mut tail = 0.0f32;
        for x in &v[body..] {
            tail += x * x;
        }
        let mut expected = 0.0f32;
        for l in lanes {
            expected += l;
        }
        expected += tail;
        for isa in Isa::all_available() {
            let got = isa.run(
                #[inline(always)]
                || lane_sum([&v[..]], |[x]| x * x),
            );
            assert_eq!(got.to_bits(), expected.to_bits(), "len {len} on {isa:?}");
        }
        // And the sum itself, against f64.
        let exact: f64 = v.iter().map(|&x| x as f64 * x as f64).sum();
        assert!(
            (expected as f64 - exact).abs() <= 1e-5 * exact.max(1.0),
            "len {len}"
        );
    }
}
