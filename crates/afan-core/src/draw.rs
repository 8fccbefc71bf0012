//! The random draws of a training step — dropout masks, stochastic depth, PGD's random start —
//! from a generator scoped to the thread that runs the step, instead of the backend's.
//!
//! Why: Burn's backends keep one generator for the whole process (flex: a locked static; the
//! CubeCL backends: one seed source for every device), so data-parallel replicas drawing their
//! masks at the same time take them in whatever order their threads reach it, and a run depends
//! on timing (two replicas of the CPU device trained a DeepLab to a different loss on each run,
//! and CI failed on it). Inside a [`DrawScope`] every draw is a function of the scope's seed and
//! of how many draws the scope made before it, whichever thread runs it and whatever else runs
//! at the same time; the training engine opens one per step and shard. The values are made on the
//! host, so a seed gives the same masks on every backend; outside a scope (a forward pass called
//! by a program of its own) the draws come from the backend's generator, as Burn's do.
//!
//! Written here rather than taken from a crate because the point is where the generator lives
//! (a thread's scope) and how a draw is cut into chunks, each generated from its own key (scope
//! seed, draw index, chunk index) with ChaCha8, so that the values do not depend on how many
//! threads generate them.

use burn::tensor::{DType, Device, Distribution, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::cell::Cell;

/// Values generated from one key; a draw of more is cut into chunks of this many, generated in
/// parallel.
const CHUNK: usize = 1 << 14;

thread_local! {
    /// The open scope's seed and the index of its next draw.
    static SCOPE: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
}

/// While alive, this thread's draws come from `seed`; dropping it restores the scope it
/// replaced (none, usually).
#[must_use = "the scope ends when this guard is dropped"]
pub struct DrawScope {
    previous: Option<(u64, u64)>,
}

impl DrawScope {
    /// Opens a scope on this thread whose draws are a function of `seed` and their order.
    pub fn enter(seed: u64) -> Self {
        let previous = SCOPE.with(|s| s.replace(Some((seed, 0))));
        Self { previous }
    }
}

impl Drop for DrawScope {
    fn drop(&mut self) {
        SCOPE.with(|s| s.set(self.previous));
    }
}

/// The open scope's seed and this draw's index (advancing the scope), if a scope is open.
fn next_key() -> Option<(u64, u64)> {
    SCOPE.with(|s| {
        let (seed, index) = s.get()?;
        s.set(Some((seed, index + 1)));
        Some((seed, index))
    })
}

/// `n` values, each `value(u)` of a uniform `u` in [0, 1), from the key (seed, index).
fn generate(seed: u64, index: u64, n: usize, value: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0.0f32; n];
    let fill = |(chunk, values): (usize, &mut [f32])| {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&index.to_le_bytes());
        key[16..24].copy_from_slice(&(chunk as u64).to_le_bytes());
        let mut rng = ChaCha8Rng::from_seed(key);
        for v in values {
            *v = value(rng.random::<f32>());
        }
    };
    if n > CHUNK {
        out.par_chunks_mut(CHUNK).enumerate().for_each(fill);
    } else {
        out.chunks_mut(CHUNK).enumerate().for_each(fill);
    }
    out
}

/// A tensor of `dims`, typed and placed as `(device, dtype)` say, from host values.
fn host_tensor<const D: usize>(
    dims: [usize; D],
    (device, dtype): Options,
    values: Vec<f32>,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, dims), (device, dtype))
}

/// Where a draw's tensor lives and its element type.
pub type Options<'a> = (&'a Device, DType);

/// A mask of `dims` whose entries are `1 / keep` with probability `keep` and 0 otherwise: what
/// dropout multiplies by (Burn's `Dropout` draws a 0/1 mask and scales after).
pub fn keep_mask<const D: usize>(dims: [usize; D], options: Options, keep: f64) -> Tensor<D> {
    let Some((seed, index)) = next_key() else {
        return Tensor::random(dims, Distribution::Bernoulli(keep), options) * (1.0 / keep);
    };
    let (threshold, scale) = (keep as f32, (1.0 / keep) as f32);
    let n = dims.iter().product();
    let values = generate(seed, index, n, |u| if u < threshold { scale } else { 0.0 });
    host_tensor(dims, options, values)
}

/// Values shaped, typed and placed like `like`, uniform in [`low`, `high`).
pub fn uniform_like<const D: usize>(like: &Tensor<D>, low: f64, high: f64) -> Tensor<D> {
    let Some((seed, index)) = next_key() else {
        return like.random_like(Distribution::Uniform(low, high));
    };
    let dims = like.dims();
    let (low, width) = (low as f32, (high - low) as f32);
    let values = generate(seed, index, dims.iter().product(), |u| low + width * u);
    host_tensor(dims, (&like.device(), like.dtype()), values)
}

#[cfg(test)]
#[path = "draw_tests.rs"]
mod tests;
