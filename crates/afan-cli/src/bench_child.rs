//! Runs one benchmark row in a fresh child process (this binary re-executed), because peak
//! memory is a per-process high-water mark: measured in one process, the largest configuration
//! would hide the others. Used by `afan bench --task segment` and `--task detect`.

use crate::bench_args::{BenchArgs, median};
use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use std::time::Instant;

/// Runs `afan bench --task TASK --child <row_args>` with the common flags of `args` and reads the row
/// the child prints as JSON; `label` names the row in errors.
pub(crate) fn run_row<R: DeserializeOwned>(
    args: &BenchArgs,
    task: &str,
    row_args: &[&str],
    label: &str,
) -> Result<R> {
    let exe = std::env::current_exe().context("cannot find the afan binary to re-run")?;
    let out = std::process::Command::new(&exe)
        .args(["bench", "--task", task, "--child"])
        .args(row_args)
        .args(["--batch", &args.batch.to_string()])
        .args(["--iters", &args.iters.to_string()])
        .args(["--warmup", &args.warmup.to_string()])
        .args(["--device", &args.device])
        .args(args.size.iter().flat_map(|s| ["--size", s.as_str()]))
        .output()
        .context("cannot start the benchmark child process")?;
    if !out.status.success() {
        bail!(
            "benchmark of {label} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("benchmark of {label} printed no result"))
}

/// What the benches' peak-memory column is, for their headers. glibc's malloc keeps an arena per
/// thread, so the same row's peak varies from run to run by up to 1.6x; with one arena it
/// repeats (docs/benchmarks.md, "Peak memory and glibc's per-thread arenas").
pub(crate) const PEAK_MEMORY: &str = "peak memory = VmHWM of a fresh child process per row (with glibc it varies between runs; MALLOC_ARENA_MAX=1 makes it repeat)";

/// `VmHWM` of this process in MiB (absent where /proc is not).
pub(crate) fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Wall-clock and CPU seconds of a child's timed steps.
///
/// Why CPU seconds too: this host's speed swings within minutes and PyTorch's threads slow down
/// more than afan's when anything else runs (issue 19); on one thread a step's CPU time is the work
/// it did whatever else the host ran meanwhile. On several threads it also counts the time threads
/// spend spinning for work (rayon's, or PyTorch's OpenMP), so it is not the step's work there.
#[derive(Debug, Default)]
pub(crate) struct StepClock {
    /// Every timed step's wall-clock seconds.
    pub wall: Vec<f64>,
    /// Every timed step's CPU seconds, all threads (empty where the clock is missing).
    pub cpu: Vec<f64>,
}

/// When a step started, on both clocks.
pub(crate) struct StepStart(Instant, Option<f64>);

impl StepClock {
    /// Starts timing a step.
    pub(crate) fn start() -> StepStart {
        StepStart(Instant::now(), cpu_seconds())
    }

    /// Ends the step that `start` began; a warm-up step (`timed` false) is not recorded.
    pub(crate) fn record(&mut self, start: StepStart, timed: bool) {
        if !timed {
            return;
        }
        self.wall.push(start.0.elapsed().as_secs_f64());
        if let (Some(before), Some(now)) = (start.1, cpu_seconds()) {
            self.cpu.push(now - before);
        }
    }

    /// The median wall-clock seconds of a step (NaN without steps).
    pub(crate) fn wall_median(&self) -> f64 {
        median(&mut self.wall.clone()).unwrap_or(f64::NAN)
    }

    /// The median CPU seconds of a step, where the clock exists.
    pub(crate) fn cpu_median(&self) -> Option<f64> {
        median(&mut self.cpu.clone())
    }
}

/// CPU seconds this process has used so far, all threads (`CLOCK_PROCESS_CPUTIME_ID`).
#[cfg(unix)]
fn cpu_seconds() -> Option<f64> {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec; the call only writes it.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) } == 0;
    ok.then_some(t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9)
}

/// No process CPU clock here: the rows carry no CPU seconds.
#[cfg(not(unix))]
fn cpu_seconds() -> Option<f64> {
    None
}

/// The optimizer a benchmark step uses: the engine's (`OptimConfig::build`, also
/// `AFAN_BENCH_SGD=fused`), or with `AFAN_BENCH_SGD=burn` Burn's own `Sgd` (the update before
/// issue 19), to time both on one binary. Any other value is refused, naming the variable.
pub(crate) fn optimizer(
    config: &afan_train::optim::OptimConfig,
) -> anyhow::Result<burn::optim::ModuleOptimizer> {
    Ok(if use_burns("AFAN_BENCH_SGD")? {
        config.build_burn()
    } else {
        config.build()
    })
}

/// Applies the kernel A/B variables before a child's steps, each `fused` (the default) or `burn`
/// (Burn's op on flex, the path before issue 19), to time both on one binary:
/// `AFAN_BENCH_RELU6` (Burn's `clamp(0, 6)` for ReLU6), `AFAN_BENCH_MAXPOOL` (Burn's
/// `max_pool2d`) and `AFAN_BENCH_CROSS_ENTROPY` (Burn's `log_softmax` + `gather` for the
/// segmentation loss).
pub(crate) fn kernel_switches() -> anyhow::Result<()> {
    afan_models::relu6::use_burn_on_flex(use_burns("AFAN_BENCH_RELU6")?);
    afan_models::pool::use_burn_on_flex(use_burns("AFAN_BENCH_MAXPOOL")?);
    afan_models::cross_entropy::use_burn_on_flex(use_burns("AFAN_BENCH_CROSS_ENTROPY")?);
    Ok(())
}

/// Whether the A/B variable `name` asks for Burn's version (`burn`) rather than afan's (`fused`,
/// also when unset); any other value is refused, naming the variable.
fn use_burns(name: &str) -> anyhow::Result<bool> {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(false),
        Ok(v) if v == "fused" => Ok(false),
        Ok(v) if v == "burn" => Ok(true),
        Ok(v) => anyhow::bail!("{name}={v:?}: expected `fused` (the default) or `burn`"),
        Err(e) => anyhow::bail!("{name}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::StepClock;

    #[test]
    fn step_clock_records_timed_steps_only_and_counts_cpu_work() {
        let mut clock = StepClock::default();
        let warm = StepClock::start();
        clock.record(warm, false);
        assert!(clock.wall.is_empty() && clock.cpu.is_empty());
        let start = StepClock::start();
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed().as_millis() < 50 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        clock.record(start, true);
        assert_eq!(clock.wall.len(), 1);
        assert!(clock.wall_median() >= 0.05, "{:?}", clock.wall);
        if cfg!(unix) {
            // 50 ms of busy work on this thread: CPU time at least a good part of it, and never
            // more than the wall time by more than the clocks' granularity.
            let cpu = clock.cpu_median().unwrap();
            assert!(cpu > 0.01 && cpu < clock.wall_median() + 0.01, "{cpu}");
        }
    }
}
