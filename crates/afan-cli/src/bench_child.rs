//! Runs one benchmark row in a fresh child process (this binary re-executed), because peak
//! memory is a per-process high-water mark: measured in one process, the largest configuration
//! would hide the others. Used by `afan bench --task segment` and `--task detect`.

use crate::bench_args::BenchArgs;
use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;

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

/// `VmHWM` of this process in MiB (absent where /proc is not).
pub(crate) fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
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
/// `AFAN_BENCH_RELU6` (Burn's `clamp(0, 6)` for ReLU6) and `AFAN_BENCH_MAXPOOL` (Burn's
/// `max_pool2d`).
pub(crate) fn kernel_switches() -> anyhow::Result<()> {
    afan_models::relu6::use_burn_on_flex(use_burns("AFAN_BENCH_RELU6")?);
    afan_models::pool::use_burn_on_flex(use_burns("AFAN_BENCH_MAXPOOL")?);
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
