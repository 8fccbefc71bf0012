//! Helpers the micro-benchmark examples share (`mod common;` in each): reproducible data and a
//! median timer. Kept small on purpose; anything one bench alone needs stays in that bench.

#![allow(dead_code)] // each example uses its own subset

use std::time::Instant;

/// `len` reproducible values in `[-0.5, 0.5]` (xorshift32 seeded by `seed`).
pub fn data(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) - 0.5
        })
        .collect()
}

/// Median seconds of `iters` runs of `f` after one warm-up.
pub fn time<R>(iters: usize, mut f: impl FnMut() -> R) -> f64 {
    std::hint::black_box(f());
    let mut t: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}
