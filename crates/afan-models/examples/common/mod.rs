//! What the kernel micro-benchmarks share: reproducible data, flex tensors, median timing.

// Each example uses only some of these.
#![allow(dead_code)]

use burn::backend::flex::FlexTensor;
use burn::tensor::{Shape, TensorData};
use std::time::Instant;

/// `len` values in -0.5..0.5 from a xorshift generator seeded by `seed`.
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

/// A contiguous flex tensor owning `values`.
pub fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, Shape::from(shape)))
}

/// Median seconds of `iters` runs of `f` after one warm-up.
pub fn time<R>(iters: usize, f: impl FnMut() -> R) -> f64 {
    time_after(iters, || (), f)
}

/// [`time`] with the CPU caches flushed before every run: a training step's activations come from
/// memory, not from the cache that a repeated micro-benchmark otherwise keeps them in.
pub fn time_cold<R>(iters: usize, f: impl FnMut() -> R) -> f64 {
    let mut junk = vec![0u8; 64 << 20];
    let mut round = 0u8;
    time_after(
        iters,
        || {
            round = round.wrapping_add(1);
            junk.iter_mut().step_by(64).for_each(|b| *b = round);
            std::hint::black_box(&junk);
        },
        f,
    )
}

/// Median seconds of `iters` runs of `f`, each after an untimed `before`, after one warm-up.
fn time_after<R>(iters: usize, mut before: impl FnMut(), mut f: impl FnMut() -> R) -> f64 {
    std::hint::black_box(f());
    let mut t: Vec<f64> = (0..iters)
        .map(|_| {
            before();
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[iters / 2]
}

/// The iteration count from the first command-line argument, else `default`.
pub fn iters_arg(default: usize) -> usize {
    std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds of this process so far (user + system, every thread, 10 ms ticks): a loaded
/// machine disturbs it far less than the wall clock; with one thread (no idle spinning) it is the
/// work done.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is parenthesized and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |i: usize| -> f64 {
        rest.split_whitespace()
            .nth(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    // utime and stime: fields 14 and 15 of the line, 0-based 11 and 12 after the name.
    (field(11) + field(12)) / 100.0
}

/// Runs every part once as a warm-up, then `iters` interleaved rounds of all of them; the median
/// wall-clock and CPU seconds ([`cpu_seconds`]) of each part.
pub fn interleaved_medians(iters: usize, parts: &[&dyn Fn()]) -> (Vec<f64>, Vec<f64>) {
    let mut wall = vec![Vec::new(); parts.len()];
    let mut cpu = vec![Vec::new(); parts.len()];
    for round in 0..=iters {
        for (i, f) in parts.iter().enumerate() {
            let (t, c) = (Instant::now(), cpu_seconds());
            f();
            if round > 0 {
                wall[i].push(t.elapsed().as_secs_f64());
                cpu[i].push(cpu_seconds() - c);
            }
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (
        wall.into_iter().map(median).collect(),
        cpu.into_iter().map(median).collect(),
    )
}
