//! A test-only fault-injection point: with `AFAN_CRASH_AT=<point>:<iteration>` in the
//! environment, the process aborts (no destructors, no flushing: as a kill or power loss would
//! stop it) when the run reaches `<point>` after `<iteration>` iterations. The points are
//! `record` (the metrics record is on disk, `last.ckpt` not yet renamed into place) and
//! `checkpoint` (`last.ckpt` renamed). `tests/cli_crash.rs` uses it to show that a crash between
//! a checkpoint and its record loses neither. Unset, it costs one environment lookup per
//! checkpoint.

/// The environment variable naming the crash point.
pub const CRASH_AT: &str = "AFAN_CRASH_AT";

/// Aborts the process if `CRASH_AT` names `point` after `iteration` iterations.
pub(crate) fn crash_point(point: &str, iteration: usize) {
    let Ok(spec) = std::env::var(CRASH_AT) else {
        return;
    };
    let Some((p, it)) = spec.split_once(':') else {
        return;
    };
    if p == point && it.trim().parse() == Ok(iteration) {
        eprintln!("{CRASH_AT}={spec}: aborting at {point} after iteration {iteration}");
        std::process::abort();
    }
}
