//! Where and in what scopes a training step's passes run, in one place for the engine and the
//! benchmarks that time its step.

use crate::conv::FlippedWeights;
use crate::on_pool;
use afan_core::DrawScope;

/// Runs `f` (a step's forward and backward passes) as the training engine runs one device's
/// step: on a worker of rayon's pool ([`on_pool`]), in a flipped-weight scope (the passes share
/// each convolution's flipped weight: [`FlippedWeights`]), with its random draws — dropout,
/// stochastic depth, PGD's random start — from `seed` ([`DrawScope`]). The optimizer's update
/// belongs after it: leaving the flipped-weight scope releases the buffers it writes in place.
pub fn step_passes<R: Send>(seed: u64, f: impl FnOnce() -> R + Send) -> R {
    on_pool(|| {
        let _flipped = FlippedWeights::enter();
        let _draws = DrawScope::enter(seed);
        f()
    })
}
