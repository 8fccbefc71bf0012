//! Serializes the unit tests that seed and draw from the device's random generator.
//!
//! A CPU device has one generator for the whole process, and `cargo test` runs tests on several
//! threads: a test that seeds it and then draws (parameter init, random batches, dropout) gets
//! numbers interleaved with whatever another test draws at the same time, so a learning test's
//! run changes from one `cargo test` to the next. Holding this lock for the test's whole body
//! makes each such test see only its own draws.

use std::sync::{Mutex, MutexGuard};

static DEVICE_RNG: Mutex<()> = Mutex::new(());

/// Holds the device generator for the calling test; a test that failed while holding it does not
/// poison it for the others.
pub(crate) fn device_rng() -> MutexGuard<'static, ()> {
    DEVICE_RNG.lock().unwrap_or_else(|e| e.into_inner())
}
