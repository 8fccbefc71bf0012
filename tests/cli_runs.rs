//! The engine's promises about a run directory, through the binary and real processes: one
//! writer (a second is refused with the holder's pid), no run replaced unasked (every task), a
//! crash between a record and its checkpoint loses neither, a NaN at the end of an epoch is never
//! saved, `--resume` refuses every flag that would change the run, and `eval` checks its flags.
//! The runs are a ResNet-20 on 64 generated images: 4 steps an epoch.

use std::path::Path;
use std::process::{Command, Stdio};

#[path = "support/cli.rs"]
mod cli;
use cli::{fail, json, records, s, succeed};

/// A ResNet-20 with A-FAN on 64 generated images, 4 steps an epoch, into `out`.
fn tiny<'a>(out: &'a str, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--out",
        out,
        "--epochs",
        epochs,
        "--batch-size",
        "16",
        "--pgd-steps",
        "1",
        "--set",
        "synthetic.train=64",
        "--set",
        "synthetic.test=32",
        "--set",
        "schedule.warmup=0",
        "--quiet",
        "--json",
    ]
}

#[test]
fn a_second_writer_is_refused_with_the_holders_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    // A run long enough to be caught in the act.
    let mut child = Command::new(env!("CARGO_BIN_EXE_afan"))
        .args(tiny(s(&out), "200"))
        .env_remove("BURN_DEVICE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let lock = out.join(".lock");
    let t = std::time::Instant::now();
    // Its lock, and its first checkpoint (so a --resume gets as far as the lock).
    while std::fs::read_to_string(&lock).map_or(true, |l| l.trim() != pid)
        || !out.join("last.ckpt").exists()
    {
        assert!(t.elapsed().as_secs() < 120, "the run never took its lock");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut second = tiny(s(&out), "1");
    second.push("--overwrite");
    let e = fail(&second);
    assert!(
        e.contains(&format!("process {pid}")) && e.contains("in use"),
        "{e}"
    );
    let e = fail(&["train", "--out", s(&out), "--resume", "--quiet"]);
    assert!(e.contains(&format!("process {pid}")), "{e}");
    child.kill().unwrap();
    child.wait().unwrap();
    // The OS released the lock with the process: the run can be replaced now.
    succeed(&second);
}

#[test]
fn an_existing_run_is_replaced_only_when_asked_whatever_the_task() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("config.toml"), "task = \"segmentation\"\n").unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    for task in ["classification", "detection", "segmentation"] {
        let e = fail(&["train", "--task", task, "--out", s(&out), "--quiet"]);
        assert!(
            e.contains("already holds a run") && e.contains("--overwrite"),
            "{task}: {e}"
        );
    }
    let mut replace = tiny(s(&out), "1");
    replace.push("--overwrite");
    assert_eq!(json(&succeed(&replace).0)["iterations"], 4);
    assert!(
        out.join("notes.txt").exists(),
        "--overwrite removes only the run's files"
    );
}

/// `AFAN_CRASH_AT=record:8` aborts the process after the record of iteration 8 is on disk and
/// before `last.ckpt` of iteration 8 replaces that of iteration 4. The resumed run drops the
/// orphan record, keeps the first one byte for byte, and ends as the uninterrupted run.
#[test]
fn a_crash_between_record_and_checkpoint_loses_neither() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, crashed) = (tmp.path().join("whole"), tmp.path().join("crashed"));
    let reference = json(&succeed(&tiny(s(&whole), "2")).0);
    let status = Command::new(env!("CARGO_BIN_EXE_afan"))
        .args(tiny(s(&crashed), "2"))
        .env_remove("BURN_DEVICE")
        .env("AFAN_CRASH_AT", "record:8")
        .output()
        .unwrap();
    assert!(!status.status.success(), "the fault was not injected");
    let lines = std::fs::read_to_string(crashed.join("metrics.jsonl")).unwrap();
    assert_eq!(
        lines.lines().count(),
        2,
        "the record of iteration 8 is on disk"
    );
    let last = json(
        &succeed(&[
            "eval",
            "--checkpoint",
            s(&crashed.join("last.ckpt")),
            "--json",
        ])
        .0,
    );
    assert!(last["top1"].is_number());
    let resumed = json(
        &succeed(&[
            "train",
            "--out",
            s(&crashed),
            "--resume",
            "--quiet",
            "--json",
        ])
        .0,
    );
    assert_eq!(resumed["last"], reference["last"]);
    let after = std::fs::read_to_string(crashed.join("metrics.jsonl")).unwrap();
    let first = lines.lines().next().unwrap();
    assert!(
        after.starts_with(&format!("{first}\n")),
        "the first record was rewritten"
    );
    assert_eq!(cli::without_times(&crashed), cli::without_times(&whole));
}

/// The rate jumps ×1e300 at the last step of epoch 2 (iteration 7): that step's loss is finite,
/// its update is not. The run stops without writing the model, names the checkpoint it kept
/// (epoch 1's), and that checkpoint and the records stay usable.
#[test]
fn weights_that_diverge_at_the_end_of_an_epoch_are_not_saved() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut args = tiny(s(&out), "2");
    args.extend([
        "--set",
        "schedule.unit=\"iterations\"",
        "--set",
        "schedule.milestones=[7]",
        "--set",
        "schedule.gamma=1e300",
    ]);
    let e = fail(&args);
    assert!(
        e.contains("NaN or infinite") && e.contains("iteration 8"),
        "{e}"
    );
    assert!(e.contains("last.ckpt (after iteration 4) is kept"), "{e}");
    assert_eq!(records(&out).len(), 1);
    let kept = json(&succeed(&["eval", "--checkpoint", s(&out.join("last.ckpt")), "--json"]).0);
    assert!(kept["loss"].as_f64().unwrap().is_finite(), "{kept}");
}

#[test]
fn resume_refuses_what_would_change_the_run_and_extends_its_length() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut first = tiny(s(&out), "2");
    first.extend(["--stop-after", "4"]);
    let stopped = json(&succeed(&first).0);
    assert_eq!(
        (
            stopped["iterations"].as_u64(),
            stopped["complete"].as_bool()
        ),
        (Some(4), Some(false))
    );
    for (flag, value) in [
        ("--lr", "5"),
        ("--data", "/elsewhere"),
        ("--seed", "3"),
        ("--set", "seed=3"),
    ] {
        let e = fail(&["train", "--out", s(&out), "--resume", flag, value]);
        assert!(
            e.contains(flag) && e.contains("cannot change a run being resumed"),
            "{e}"
        );
    }
    let e = fail(&["train", "--out", s(&out), "--resume", "--task", "detection"]);
    assert!(
        e.contains("--task detection") && e.contains("classification"),
        "{e}"
    );
    let done = json(
        &succeed(&[
            "train",
            "--out",
            s(&out),
            "--resume",
            "--epochs",
            "3",
            "--quiet",
            "--json",
        ])
        .0,
    );
    assert_eq!(
        (done["iterations"].as_u64(), done["epochs"].as_f64()),
        (Some(12), Some(3.0))
    );
    let cfg = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(cfg.contains("epochs = 3"), "{cfg}");
}

#[test]
fn eval_checks_its_flags_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    succeed(&tiny(s(&out), "1"));
    let ckpt = out.join("last.ckpt");
    let e = fail(&["eval", "--checkpoint", s(&ckpt), "--batch-size", "0"]);
    assert!(e.contains("--batch-size"), "{e}");
    let e = fail(&["eval", "--checkpoint", s(&ckpt), "--model", "resnet56"]);
    assert!(
        e.contains("--model resnet56") && e.contains("resnet20"),
        "{e}"
    );
    let e = fail(&["eval", "--checkpoint", s(&ckpt), "--results", "x.json"]);
    assert!(
        e.contains("--results") && e.contains("classification"),
        "{e}"
    );
    let e = fail(&["eval", "--checkpoint", s(&ckpt), "--task", "segmentation"]);
    assert!(e.contains("--task segmentation"), "{e}");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = fail(&["eval", "--checkpoint", s(&empty)]);
    assert!(
        e.contains(s(&empty)) && e.contains("holds no checkpoint"),
        "{e}"
    );
    // A damaged copy: its checksum, then its truncation, each named without raw bytes.
    let bytes = std::fs::read(&ckpt).unwrap();
    let damaged = tmp.path().join("damaged.ckpt");
    let mut flipped = bytes.clone();
    let n = flipped.len();
    flipped[n - 4096] ^= 0x55;
    std::fs::write(&damaged, &flipped).unwrap();
    let e = fail(&["eval", "--checkpoint", s(&damaged)]);
    assert!(e.contains("damaged.ckpt") && e.contains("corrupt"), "{e}");
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let e = fail(&["eval", "--checkpoint", s(&damaged)]);
    assert!(e.contains("damaged.ckpt") && e.contains("truncated"), "{e}");
    assert!(e.chars().all(|c| c.is_ascii_graphic() || c == ' '), "{e}");
    let folder = Path::new(&out);
    assert!(folder.join("curves.png").is_file());
}
