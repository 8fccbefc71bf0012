//! The whole-plane depthwise kernels ([`super::planes`]) against the row kernels (themselves
//! checked against Burn in `kernel_tests` and PyTorch in `conv/tests`), on the shapes each path
//! of the phase planes has to get right: stride 1, 2 and 3, odd and even sizes, dilation, no
//! padding, planes smaller than the kernel's reach, non-square kernels and images. Outputs start
//! as NaN (an element left unwritten fails), and results are bit-equal with 1 and 3 threads and
//! across the instruction sets this CPU has.

use super::super::geom::ConvGeom;
use super::{Route, forward_with, input_grad_with, weight_grad_with};
use crate::simd::Isa;
use std::mem::MaybeUninit;

/// (batch, channels, [h, w], [kh, kw], [stride, padding, dilation]).
type Case = (usize, usize, [usize; 2], [usize; 2], [usize; 3]);

const CASES: [Case; 16] = [
    (2, 3, [9, 9], [3, 3], [1, 1, 1]), // MobileNetV2 at output stride 16: 9x9
    (2, 3, [9, 9], [3, 3], [1, 2, 2]), // ... dilated
    (1, 2, [9, 9], [3, 3], [1, 4, 4]), // dilation 4: most taps in the padding
    (2, 3, [17, 17], [3, 3], [1, 1, 1]), // 17x17
    (2, 3, [33, 33], [3, 3], [2, 1, 1]), // stride 2, odd: 33 -> 17
    (1, 2, [65, 65], [3, 3], [2, 1, 1]), // stride 2, 65 -> 33 (long rows, several chunks)
    (2, 3, [8, 8], [3, 3], [2, 1, 1]), // stride 2, even size
    (1, 2, [8, 7], [3, 3], [2, 1, 2]), // stride 2, dilated, non-square
    (2, 2, [7, 7], [3, 3], [3, 1, 1]), // stride 3: three phases, input rows no tap reads
    (1, 3, [11, 10], [5, 5], [2, 2, 1]), // 5x5 stride 2 (EfficientNet)
    (2, 2, [6, 5], [3, 3], [1, 0, 1]), // no padding
    (3, 2, [5, 9], [1, 3], [1, 0, 1]), // non-square kernel
    (17, 2, [2, 1], [3, 3], [1, 1, 1]), // smaller than the kernel
    (2, 2, [1, 1], [3, 3], [1, 2, 2]), // 1x1 plane, dilated: only the centre tap inside
    (2, 2, [3, 2], [3, 3], [2, 1, 1]), // stride 2 on a plane smaller than the kernel
    (1, 2, [1, 1], [3, 3], [1, 1, 1]), // 1x1 plane
];

fn geom((batch, c, in_hw, kernel, [s, p, d]): Case) -> ConvGeom {
    ConvGeom {
        batch,
        in_ch: c,
        in_hw,
        out_ch: c,
        kernel,
        stride: [s, s],
        padding: [p, p],
        dilation: [d, d],
        groups: c,
    }
}

/// Deterministic values in `[-1, 1)`.
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn written(v: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    // SAFETY: every element was initialised (NaN at first), so reading any is defined.
    v.into_iter().map(|v| unsafe { v.assume_init() }).collect()
}

fn poisoned(len: usize) -> Vec<MaybeUninit<f32>> {
    vec![MaybeUninit::new(f32::NAN); len]
}

/// Forward, input gradient and weight gradient of `g` on the route and instruction set given.
fn run(g: &ConvGeom, route: Route, isa: Isa) -> [Vec<f32>; 3] {
    let [oh, ow] = g.out_hw();
    let x = values(g.batch * g.in_ch * g.in_hw[0] * g.in_hw[1], 1);
    let w = values(g.in_ch * g.kernel[0] * g.kernel[1], 2);
    let dy = values(g.batch * g.in_ch * oh * ow, 3);
    let mut y = poisoned(dy.len());
    forward_with(g, route, isa, &x, &w, &mut y);
    let mut dx = poisoned(x.len());
    input_grad_with(g, route, isa, &w, &dy, &mut dx);
    let dw = weight_grad_with(g, route, isa, &x, &dy);
    [written(y), written(dx), dw]
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// Every output written, and equal to the row kernels' up to the summation order.
#[test]
fn planes_match_rows() {
    for case in CASES {
        let g = geom(case);
        let want = run(&g, Route::Rows, Isa::detect());
        let got = run(&g, Route::Planes, Isa::detect());
        for (what, (got, want)) in ["forward", "input grad", "weight grad"]
            .iter()
            .zip(got.iter().zip(&want))
        {
            assert_eq!(got.len(), want.len(), "{g:?} {what}: length");
            for (i, (a, b)) in got.iter().zip(want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{g:?} {what}: element {i}: {a} vs {b}"
                );
            }
        }
    }
}

/// Bit-equal with 1 and 3 threads and on every instruction set this CPU has.
#[test]
fn planes_are_deterministic() {
    for case in CASES {
        let g = geom(case);
        let want = pool(1).install(|| run(&g, Route::Planes, Isa::Baseline));
        for isa in Isa::all_available() {
            for threads in [1, 3] {
                let got = pool(threads).install(|| run(&g, Route::Planes, isa));
                for (k, (a, b)) in got.iter().zip(&want).enumerate() {
                    let (a, b): (Vec<u32>, Vec<u32>) = (
                        a.iter().map(|v| v.to_bits()).collect(),
                        b.iter().map(|v| v.to_bits()).collect(),
                    );
                    assert_eq!(a, b, "{g:?} output {k}, {isa:?}, {threads} threads");
                }
            }
        }
    }
}
