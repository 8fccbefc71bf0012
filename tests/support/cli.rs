//! Running the `afan` binary from the end-to-end tests, with the checks every CLI test makes:
//! success with its output, or failure as one `error:` line and no panic.

#![allow(dead_code)] // each test file uses the part it needs

use std::process::{Command, Output};

/// Runs `afan args` on the default (CPU) device.
pub fn afan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_afan"))
        .args(args)
        .env_remove("BURN_DEVICE")
        .output()
        .expect("the afan binary runs")
}

/// Runs a command that must succeed; returns its stdout and stderr.
pub fn succeed(args: &[&str]) -> (String, String) {
    let out = afan(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "afan {args:?} failed:\n{stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

/// Runs a command that must fail cleanly (exit status 1, no panic, the last line of stderr an
/// `error:` line); returns that line.
pub fn fail(args: &[&str]) -> String {
    let out = afan(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "afan {args:?} should fail cleanly:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("error: "), "{stderr}");
    last
}

/// The one JSON object a command printed.
pub fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// A path as the `&str` the argument lists take.
pub fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// The records of a run (`metrics.jsonl`), parsed.
pub fn records(run: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The records without their timings (`*_seconds`), which no two runs share.
pub fn without_times(run: &std::path::Path) -> Vec<serde_json::Value> {
    records(run)
        .into_iter()
        .map(|mut v| {
            v.as_object_mut()
                .unwrap()
                .retain(|k, _| !k.ends_with("seconds"));
            v
        })
        .collect()
}

/// Asserts that `got` holds exactly `want`'s keys with equal values and shapes (an exported
/// state dict against the checkpoint's model).
pub fn same_state_dict(got: &afan_models::StateDict, want: &afan_models::StateDict) {
    assert_eq!(got.len(), want.len());
    for k in want.keys() {
        assert_eq!(got.get(k), want.get(k), "{k}");
    }
}
