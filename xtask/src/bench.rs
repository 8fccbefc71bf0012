//! `cargo xtask bench`: afan's release-build step benchmark, and PyTorch's same steps in the same
//! run when `AFAN_TORCH_PYTHON` names a Python with torch and torchvision.
//!
//! `--rounds N` (detection and segmentation) times each row N times, afan's child process and
//! PyTorch's same row back to back, the order swapped every round, and reports the median of the
//! per-round ratios. Why: this host's speed swings by up to 1.7x within minutes (steal the guest
//! does not see), so the ratio of two figures taken minutes apart (all of afan's rows, then all of
//! PyTorch's) moved by up to 0.6 between runs of the same binaries (docs/benchmarks.md, issue 19);
//! a ratio of two figures taken one after the other only sees the swing within one pair, and the
//! median over rounds drops the pairs that a swing did split.

use crate::{cargo, cargo_command, root};
use anyhow::{Context, Result, bail};
use std::process::Command;

/// `cargo xtask bench [ARGS]`.
pub(crate) fn main(extra: &[String]) -> Result<()> {
    let (threads, extra) = take_flag(extra, "--threads");
    let (rounds, extra) = take_flag(&extra, "--rounds");
    let envs: Vec<(&str, &str)> = threads
        .as_deref()
        .map(|n| vec![("RAYON_NUM_THREADS", n)])
        .unwrap_or_default();
    let python_threads: Vec<String> = threads
        .iter()
        .flat_map(|n| ["--threads".to_string(), n.clone()])
        .collect();
    let task = flag_value(&extra, "--task")
        .unwrap_or("classify")
        .to_string();
    let rounds = match rounds.as_deref().map(str::parse::<usize>) {
        None => 1,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => bail!(
            "--rounds {}: expected a whole number of at least 1",
            rounds.unwrap()
        ),
    };
    let detseg = matches!(task.as_str(), "detect" | "segment");
    if rounds > 1 && !detseg {
        bail!(
            "--rounds applies to --task detect|segment (classification runs its rows in one process)"
        );
    }
    if detseg {
        let args = with_task_defaults(&task, &extra);
        return match rounds {
            1 => bench_detseg(&task, &args, &envs, &python_threads),
            n => bench_rounds(&task, &args, &envs, &python_threads, n),
        };
    }
    let mut args = vec!["run", "--release", "-p", "afan-cli", "--", "bench"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args, &envs)?;
    match std::env::var("AFAN_TORCH_PYTHON") {
        Ok(python) => {
            let script = root().join("xtask/reference/torch_step_bench.py");
            eprintln!("+ {python} {} {}", script.display(), extra.join(" "));
            let status = Command::new(&python)
                .arg(&script)
                .args(&extra)
                .args(&python_threads)
                .status()
                .with_context(|| format!("cannot run {python}"))?;
            if !status.success() {
                bail!("the PyTorch reference failed ({status})");
            }
        }
        Err(_) => eprintln!(
            "(set AFAN_TORCH_PYTHON=/path/to/python-with-torch to time PyTorch in the same run)"
        ),
    }
    Ok(())
}

/// The value after `flag` in `args` (`--flag value` or `--flag=value`).
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let prefix = format!("{flag}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if a == flag {
            args.get(i + 1).map(String::as_str)
        } else {
            a.strip_prefix(&prefix)
        }
    })
}

/// `args` without `flag` and its value, and that value.
fn take_flag(args: &[String], flag: &str) -> (Option<String>, Vec<String>) {
    let value = flag_value(args, flag).map(str::to_string);
    let prefix = format!("{flag}=");
    let mut rest = Vec::new();
    let mut skip = false;
    for a in args {
        if std::mem::take(&mut skip) {
            continue;
        }
        if a == flag {
            skip = true;
        } else if !a.starts_with(&prefix) {
            rest.push(a.clone());
        }
    }
    (value, rest)
}

/// `extra` with each task's own sizes where not given (docs/benchmarks.md): `afan bench --task
/// detect|segment` would take the classification defaults (`--batch 128 --size 32`); these are
/// one 600x800 image for the detector, 129x129 crops in pairs for DeepLabV3+.
fn with_task_defaults(task: &str, extra: &[String]) -> Vec<String> {
    let defaults: &[(&str, &str)] = match task {
        "detect" => &[("--batch", "1")],
        _ => &[("--size", "129"), ("--batch", "2")],
    };
    let mut args = extra.to_vec();
    for (flag, value) in defaults {
        if flag_value(&args, flag).is_none() {
            args.extend([flag.to_string(), value.to_string()]);
        }
    }
    args
}

/// `bench --task detect|segment`: afan's rows and, with `AFAN_TORCH_PYTHON`, PyTorch's same
/// steps (`xtask/reference/torch_<task>_bench.py`) side by side with their ratio.
fn bench_detseg(
    task: &str,
    args: &[String],
    envs: &[(&str, &str)],
    python_threads: &[String],
) -> Result<()> {
    let mut args = args.to_vec();
    let Ok(python) = std::env::var("AFAN_TORCH_PYTHON") else {
        let mut cmd = vec!["run", "--release", "-p", "afan-cli", "--", "bench"];
        cmd.extend(args.iter().map(String::as_str));
        cargo(&cmd, envs)?;
        eprintln!(
            "(set AFAN_TORCH_PYTHON=/path/to/python-with-torch to time PyTorch in the same run)"
        );
        return Ok(());
    };
    if !args.iter().any(|a| a == "--json") {
        args.push("--json".into());
    }
    let mut cmd = cargo_command();
    cmd.args(["run", "--release", "-p", "afan-cli", "--", "bench"])
        .args(&args)
        .envs(envs.iter().copied())
        .current_dir(root());
    eprintln!(
        "+ cargo run --release -p afan-cli -- bench {}",
        args.join(" ")
    );
    let afan: serde_json::Value = serde_json::from_slice(&captured(cmd, "afan bench")?)
        .context("afan bench printed no JSON rows")?;
    let cmd = torch_command(&python, task, &args, python_threads);
    eprintln!("+ {cmd:?}");
    let torch: serde_json::Value = serde_json::from_slice(&captured(cmd, "the PyTorch reference")?)
        .context("the PyTorch reference printed no JSON")?;
    let key = |r: &serde_json::Value| {
        let text = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        (text("backbone"), text("method"))
    };
    let seconds = |r: &serde_json::Value| r.get("step_s").and_then(|v| v.as_f64());
    let torch_rows = torch["rows"].as_array().cloned().unwrap_or_default();
    println!(
        "{task} training step, afan (`afan bench {}`) and {} ({} threads), median seconds",
        args.join(" "),
        torch["pytorch"]["framework"].as_str().unwrap_or("pytorch"),
        torch["pytorch"]["threads"]
    );
    println!(
        "{:<14} {:<9} {:>10} {:>10} {:>14} {:>14}",
        "backbone", "method", "afan (s)", "torch (s)", "afan / torch", "afan RSS (MiB)"
    );
    for row in afan.as_array().into_iter().flatten() {
        let (backbone, method) = key(row);
        let theirs = torch_rows
            .iter()
            .find(|r| key(r) == key(row))
            .and_then(seconds);
        let ours = seconds(row).unwrap_or(f64::NAN);
        let backbone = if backbone.is_empty() {
            "resnet18".into()
        } else {
            backbone
        };
        println!(
            "{:<14} {:<9} {:>10.3} {:>10.3} {:>14.2} {:>14.0}",
            backbone,
            method,
            ours,
            theirs.unwrap_or(f64::NAN),
            ours / theirs.unwrap_or(f64::NAN),
            row.get("peak_rss_mib")
                .and_then(|v| v.as_f64())
                .unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

/// PyTorch's side of `task` (`xtask/reference/torch_<task>_bench.py`) with afan's bench
/// arguments and the thread flags, run from the reference folder (its imports are siblings);
/// one builder for the one-run and the rounds modes.
fn torch_command(python: &str, task: &str, args: &[String], python_threads: &[String]) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg(root().join(format!("xtask/reference/torch_{task}_bench.py")))
        .args(args)
        .args(python_threads)
        .current_dir(root().join("xtask/reference"));
    cmd
}

/// The standard output of `cmd` (its standard error shown as it runs), or an error naming `what`.
fn captured(mut cmd: Command, what: &str) -> Result<Vec<u8>> {
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!("{what} failed ({})", out.status);
    }
    Ok(out.stdout)
}

/// One row of `--rounds`: its `--child` value and each side's step medians per round, wall-clock
/// and CPU seconds (NaN where a side reports no CPU time).
struct RoundsRow {
    spec: String,
    afan: Vec<[f64; 2]>,
    torch: Vec<[f64; 2]>,
}

/// `bench --task detect|segment --rounds N`: see the module doc.
fn bench_rounds(
    task: &str,
    args: &[String],
    envs: &[(&str, &str)],
    python_threads: &[String],
    rounds: usize,
) -> Result<()> {
    let python = std::env::var("AFAN_TORCH_PYTHON").map_err(|_| {
        anyhow::anyhow!(
            "--rounds compares with PyTorch: set AFAN_TORCH_PYTHON=/path/to/python-with-torch"
        )
    })?;
    cargo(&["build", "--release", "-p", "afan-cli"], &[])?;
    let afan = root().join("target/release/afan");
    let mut list = Command::new(&afan);
    list.args(["bench", "--task", task, "--list-children"]);
    let list = String::from_utf8(captured(list, "afan bench --list-children")?)?;
    let mut rows: Vec<RoundsRow> = list
        .lines()
        .map(|spec| RoundsRow {
            spec: spec.to_string(),
            afan: Vec::new(),
            torch: Vec::new(),
        })
        .collect();
    for round in 0..rounds {
        for row in &mut rows {
            eprintln!(
                "round {}/{rounds}, {}: load average {}",
                round + 1,
                row.spec,
                load_average()
            );
            for afan_side in [round % 2 == 0, round % 2 == 1] {
                if afan_side {
                    let mut cmd = Command::new(&afan);
                    cmd.arg("bench")
                        .args(args)
                        .args(["--child", &row.spec])
                        .envs(envs.iter().copied());
                    let out: serde_json::Value =
                        serde_json::from_slice(&captured(cmd, "afan bench --child")?)
                            .context("afan bench --child printed no JSON row")?;
                    row.afan.push(step_seconds(&out, "afan")?);
                } else {
                    let (backbone, method) = backbone_and_method(&row.spec);
                    let mut cmd = torch_command(&python, task, args, python_threads);
                    cmd.args(["--json", "--methods", method])
                        .args(backbone.iter().flat_map(|b| ["--backbones", b]));
                    let out: serde_json::Value =
                        serde_json::from_slice(&captured(cmd, "the PyTorch reference")?)
                            .context("the PyTorch reference printed no JSON")?;
                    row.torch.push(step_seconds(&out["rows"][0], "PyTorch")?);
                }
            }
        }
    }
    println!(
        "{task} training step, afan (`afan bench {}`) vs PyTorch, {rounds} rounds of each row \
         back to back (order swapped every round); seconds: median of the rounds' step medians; \
         CPU: process CPU seconds of a step, all threads (the work done on 1 thread; on more it \
         also counts threads spinning for work)",
        args.join(" ")
    );
    println!(
        "{:<34} {:>9} {:>9} {:>7} {:>9} {:>9} {:>7}  wall ratio per round",
        "row", "afan (s)", "torch (s)", "ratio", "afan CPU", "torch CPU", "ratio"
    );
    for row in &rows {
        let side = |v: &[[f64; 2]], i: usize| v.iter().map(|x| x[i]).collect::<Vec<f64>>();
        let ratios = |i: usize| -> Vec<f64> {
            let (a, t) = (side(&row.afan, i), side(&row.torch, i));
            a.iter().zip(&t).map(|(a, t)| a / t).collect()
        };
        let listed: Vec<String> = ratios(0).iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "{:<34} {:>9.3} {:>9.3} {:>7.2} {:>9.3} {:>9.3} {:>7.2}  {}",
            row.spec,
            median(&side(&row.afan, 0)),
            median(&side(&row.torch, 0)),
            median(&ratios(0)),
            median(&side(&row.afan, 1)),
            median(&side(&row.torch, 1)),
            median(&ratios(1)),
            listed.join(" ")
        );
    }
    Ok(())
}

/// A row's `--child` value as the PyTorch script selects it: segmentation's
/// `backbone,point,method` gives `--backbones backbone --methods method` (the script times the
/// same point), detection's `method` only `--methods method`.
fn backbone_and_method(spec: &str) -> (Option<&str>, &str) {
    let parts: Vec<&str> = spec.split(',').collect();
    match parts[..] {
        [backbone, _, method] => (Some(backbone), method),
        _ => (None, spec),
    }
}

/// `step_s` and `cpu_s` (NaN when absent) of one JSON row, or an error naming `who`.
fn step_seconds(row: &serde_json::Value, who: &str) -> Result<[f64; 2]> {
    let wall = row
        .get("step_s")
        .and_then(serde_json::Value::as_f64)
        .with_context(|| format!("{who}'s row has no step_s: {row}"))?;
    let cpu = row.get("cpu_s").and_then(serde_json::Value::as_f64);
    Ok([wall, cpu.unwrap_or(f64::NAN)])
}

/// The median (the mean of the two middle values of an even count; NaN when empty).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The 1-minute load average, to read each figure against (Linux; `?` elsewhere).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::{backbone_and_method, median, with_task_defaults};

    #[test]
    fn median_of_odd_even_and_no_rounds() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn child_specs_select_the_pytorch_row() {
        assert_eq!(
            backbone_and_method("resnet50,layer3,afan"),
            (Some("resnet50"), "afan")
        );
        assert_eq!(backbone_and_method("baseline"), (None, "baseline"));
    }

    #[test]
    fn task_sizes_fill_only_what_is_not_given() {
        let given = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            with_task_defaults("segment", &given(&["--batch", "4"])),
            given(&["--batch", "4", "--size", "129"])
        );
        assert_eq!(with_task_defaults("detect", &[]), given(&["--batch", "1"]));
    }
}
