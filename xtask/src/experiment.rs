//! `cargo xtask experiment`: does A-FAN help? Baseline and A-FAN (the release presets' method
//! settings) trained at equal length on each task's generated data, several seeds each, every run
//! evaluated clean and under noise, blur and contrast (`afan eval --corrupt`); one markdown table
//! per task of mean ± std and the A-FAN minus baseline difference. docs/benchmarks.md ("Does A-FAN
//! help?") records a run.
//!
//! Flags: `--seeds N` (3), `--tasks classification,detection,segmentation` (all), `--scale F`
//! (multiplies every training length; 1 = the CI-class sizes below), `--out DIR` (created; it must
//! not exist; default: a new folder in the system's temp dir), `--afan PATH` (an `afan` binary;
//! default: `cargo build --release -p afan-cli` once and its `target/release/afan`).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The evaluation conditions, in table order (`none`: the clean test images).
const CONDITIONS: [&str; 4] = ["none", "noise", "blur", "contrast"];

/// One task's runs: the flags every run gets (on top of the task's generated-data preset, whose
/// method settings are the release's), the A-FAN runs' own, the length flag and its value at
/// `--scale 1`, and the headline figure of `afan eval --json` (with its factor to percent).
struct TaskPlan {
    name: &'static str,
    metric: &'static str,
    field: &'static str,
    percent: f64,
    length_flag: &'static str,
    length: f64,
    flags: &'static [&'static str],
    afan_flags: &'static [&'static str],
}

/// Sized for 2 shared CPU cores (the whole experiment in about half an hour); `--scale` for more.
static PLANS: [TaskPlan; 3] = [
    TaskPlan {
        name: "classification",
        metric: "top-1 %",
        field: "top1",
        percent: 1.0,
        length_flag: "--epochs",
        length: 3.0,
        flags: &[
            "--model",
            "resnet20",
            "--set",
            "synthetic.train=2048",
            "--set",
            "synthetic.test=1024",
            "--set",
            "eval_every=\"end\"",
        ],
        // The release's 5 PGD steps (Classification/main_perturb.py --steps); the quick start
        // takes 3.
        afan_flags: &["--pgd-steps", "5"],
    },
    TaskPlan {
        name: "detection",
        metric: "VOC07 mAP@0.5 %",
        field: "map07",
        percent: 1.0,
        length_flag: "--iterations",
        length: 100.0,
        flags: &["--set", "eval_every=\"end\""],
        afan_flags: &[],
    },
    TaskPlan {
        name: "segmentation",
        metric: "mIoU %",
        field: "mean_iou",
        percent: 100.0,
        length_flag: "--iterations",
        length: 100.0,
        flags: &["--set", "eval_every=\"end\""],
        afan_flags: &[],
    },
];

/// The methods compared, as `afan train --method` names them and as the table shows them.
const METHODS: [(&str, &str); 2] = [("baseline", "baseline"), ("afan", "A-FAN")];

struct Options {
    seeds: u64,
    tasks: Vec<&'static TaskPlan>,
    scale: f64,
    out: PathBuf,
    afan: Option<PathBuf>,
}

/// Runs the experiment with the command-line `args` (after `experiment`).
pub fn main(args: &[String], root: &Path) -> Result<()> {
    let o = options(args)?;
    let afan = match &o.afan {
        Some(p) => p.clone(),
        None => build(root)?,
    };
    std::fs::create_dir_all(o.out.parent().unwrap_or(Path::new(".")))?;
    std::fs::create_dir(&o.out)
        .with_context(|| format!("cannot create {} (it must not exist)", o.out.display()))?;
    eprintln!("runs under {}", o.out.display());
    let mut all = serde_json::Map::new();
    let mut tables = Vec::new();
    for plan in &o.tasks {
        // scores[method][condition][seed]
        let mut scores = vec![vec![Vec::new(); CONDITIONS.len()]; METHODS.len()];
        let mut seconds = vec![0f64; METHODS.len()];
        for seed in 0..o.seeds {
            for (m, (method, _)) in METHODS.iter().enumerate() {
                let run = o.out.join(format!("{}-{method}-seed{seed}", plan.name));
                let start = Instant::now();
                train(&afan, plan, method, seed, o.scale, &run)?;
                seconds[m] += start.elapsed().as_secs_f64();
                for (c, v) in evaluate(&afan, plan, &run)?.into_iter().enumerate() {
                    scores[m][c].push(v);
                }
                eprintln!(
                    "{} {method} seed {seed}: {:?} ({:.0} s with its evaluations)",
                    plan.name,
                    scores[m].iter().map(|s| s[s.len() - 1]).collect::<Vec<_>>(),
                    start.elapsed().as_secs_f64()
                );
            }
        }
        let table = table(plan, &scores, &seconds, o.seeds);
        println!("{table}");
        tables.push(table);
        all.insert(plan.name.into(), serde_json::json!(scores));
    }
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "conditions": CONDITIONS,
        "methods": METHODS.map(|m| m.0),
        "scores": all,
    }))?;
    std::fs::write(o.out.join("results.json"), json)?;
    std::fs::write(o.out.join("results.md"), tables.join("\n"))?;
    eprintln!("results: {}", o.out.join("results.md").display());
    Ok(())
}

fn options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        seeds: 3,
        tasks: PLANS.iter().collect(),
        scale: 1.0,
        out: std::env::temp_dir().join(format!(
            "afan-experiment-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs()
        )),
        afan: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else {
            bail!("{flag} needs a value (experiment flags: --seeds --tasks --scale --out --afan)");
        };
        match flag.as_str() {
            "--seeds" => o.seeds = value.parse().context("--seeds takes a number")?,
            "--scale" => o.scale = value.parse().context("--scale takes a number")?,
            "--out" => o.out = value.into(),
            "--afan" => o.afan = Some(value.into()),
            "--tasks" => {
                o.tasks = value
                    .split(',')
                    .map(|t| {
                        PLANS.iter().find(|p| p.name == t.trim()).with_context(|| {
                            format!("--tasks {t}: expected classification, detection, segmentation")
                        })
                    })
                    .collect::<Result<_>>()?
            }
            _ => bail!("unknown flag {flag}; expected --seeds --tasks --scale --out --afan"),
        }
    }
    if o.seeds < 2 || o.scale.is_nan() || o.scale <= 0.0 {
        bail!("--seeds must be at least 2 (for a deviation) and --scale positive");
    }
    Ok(o)
}

/// `cargo build --release -p afan-cli`; the binary's path.
fn build(root: &Path) -> Result<PathBuf> {
    eprintln!("+ cargo build --release -p afan-cli");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "-p", "afan-cli"])
        .current_dir(root)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build --release -p afan-cli failed ({status})");
    }
    Ok(root.join("target/release/afan"))
}

/// Runs `afan args`; fails with its stderr's tail; returns its stdout.
fn afan(bin: &Path, args: &[String]) -> Result<String> {
    let out = Command::new(bin)
        .args(args)
        .env_remove("BURN_DEVICE")
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        bail!("afan {} failed: {}", args.join(" "), tail.join(" | "));
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn train(
    bin: &Path,
    plan: &TaskPlan,
    method: &str,
    seed: u64,
    scale: f64,
    run: &Path,
) -> Result<()> {
    let length = ((plan.length * scale).round() as u64).max(1).to_string();
    let mut args: Vec<String> = [
        "train", "--task", plan.name, "--method", method, "--quiet", "--json",
    ]
    .map(String::from)
    .to_vec();
    args.extend(["--seed".into(), seed.to_string(), "--out".into()]);
    args.push(run.display().to_string());
    args.extend([plan.length_flag.to_string(), length]);
    args.extend(plan.flags.iter().map(|s| s.to_string()));
    if method == "afan" {
        args.extend(plan.afan_flags.iter().map(|s| s.to_string()));
    }
    afan(bin, &args).map(|_| ())
}

/// The run's last checkpoint (equal length: no choice on the test set) under every condition,
/// in percent.
fn evaluate(bin: &Path, plan: &TaskPlan, run: &Path) -> Result<Vec<f64>> {
    let ckpt = run.join("last.ckpt").display().to_string();
    let args = [
        "eval",
        "--checkpoint",
        &ckpt,
        "--corrupt",
        &CONDITIONS.join(","),
        "--quiet",
        "--json",
    ]
    .map(String::from);
    let stdout = afan(bin, &args)?;
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()?;
    if rows.len() != CONDITIONS.len() {
        bail!(
            "afan eval printed {} results, not {}",
            rows.len(),
            CONDITIONS.len()
        );
    }
    rows.iter()
        .map(|r| {
            r[plan.field]
                .as_f64()
                .map(|v| v * plan.percent)
                .with_context(|| format!("no {} in {r}", plan.field))
        })
        .collect()
}

/// Mean and sample standard deviation.
fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// One task's markdown table: a row per method and the A-FAN minus baseline row (mean ± std of
/// the per-seed differences: a seed gives both methods the same data and initial draw).
fn table(plan: &TaskPlan, scores: &[Vec<Vec<f64>>], seconds: &[f64], seeds: u64) -> String {
    let mut s = format!(
        "{} ({}, mean ± std over {seeds} seeds, last checkpoint)\n\n| method | {} | train s/seed |\n|---|{}---|\n",
        plan.name,
        plan.metric,
        CONDITIONS
            .map(|c| if c == "none" { "clean" } else { c })
            .join(" | "),
        "---|".repeat(CONDITIONS.len())
    );
    let cell = |v: &[f64]| {
        let (m, sd) = mean_std(v);
        format!("{m:.2} ± {sd:.2}")
    };
    for (m, (_, label)) in METHODS.iter().enumerate() {
        let cells: Vec<String> = scores[m].iter().map(|v| cell(v)).collect();
        s += &format!(
            "| {label} | {} | {:.0} |\n",
            cells.join(" | "),
            seconds[m] / seeds as f64
        );
    }
    let diffs: Vec<String> = (0..CONDITIONS.len())
        .map(|c| {
            let d: Vec<f64> = scores[1][c]
                .iter()
                .zip(&scores[0][c])
                .map(|(a, b)| a - b)
                .collect();
            cell(&d)
        })
        .collect();
    s += &format!("| A-FAN − baseline | {} | |\n", diffs.join(" | "));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_means_deviations_and_paired_differences() {
        let scores = vec![
            vec![
                vec![50.0, 52.0, 54.0],
                vec![40.0; 3],
                vec![30.0; 3],
                vec![20.0; 3],
            ],
            vec![
                vec![51.0, 54.0, 57.0],
                vec![41.0; 3],
                vec![29.0; 3],
                vec![20.0; 3],
            ],
        ];
        let t = table(&PLANS[0], &scores, &[30.0, 90.0], 3);
        assert!(
            t.contains("| baseline | 52.00 ± 2.00 | 40.00 ± 0.00 |"),
            "{t}"
        );
        assert!(t.contains("| A-FAN | 54.00 ± 3.00 |"), "{t}");
        assert!(
            t.contains("| A-FAN − baseline | 2.00 ± 1.00 | 1.00 ± 0.00 | -1.00 ± 0.00 |"),
            "{t}"
        );
        assert!(t.contains("| 10 |") && t.contains("| 30 |"), "{t}");
    }

    #[test]
    fn flags_are_checked() {
        let o = options(&[
            "--tasks".into(),
            "detection".into(),
            "--seeds".into(),
            "2".into(),
        ])
        .unwrap();
        assert_eq!(o.tasks.len(), 1);
        assert_eq!(o.seeds, 2);
        assert!(options(&["--tasks".into(), "detect".into()]).is_err());
        assert!(options(&["--seeds".into(), "1".into()]).is_err());
        assert!(options(&["--bogus".into(), "1".into()]).is_err());
    }
}
