//! `afan eval-detections` on files the test writes from the pycocotools fixtures: the
//! printed numbers are pycocotools', and bad input gets one clear error line.

use serde_json::Value;
use std::path::{Path, PathBuf};

#[path = "support/cli.rs"]
mod cli;
use cli::afan;

/// Runs a command that must fail with exactly one `error:` line (no panic); returns it.
fn fails(args: &[&str]) -> String {
    let out = afan(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let one_error_line = stderr.lines().count() == 1 && stderr.starts_with("error: ");
    assert!(
        out.status.code() == Some(1) && one_error_line,
        "{args:?} should fail with one error line:\n{stderr}"
    );
    stderr.trim_end().to_string()
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/coco_eval")
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Writes the fixture's ground truth and detections as the two files of the command.
fn write_case(dir: &Path, f: &Value) -> (PathBuf, PathBuf) {
    let (gt, dt) = (dir.join("instances_val.json"), dir.join("results.json"));
    std::fs::write(&gt, f["gt"].to_string()).unwrap();
    std::fs::write(&dt, f["dt"].to_string()).unwrap();
    (gt, dt)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn json_output_equals_pycocotools() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture("mixed");
    let (gt, dt) = write_case(dir.path(), &f);
    let out = afan(&["eval-detections", "--gt", s(&gt), "--dt", s(&dt), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = f["stats"].as_array().unwrap();
    for (i, w) in want.iter().enumerate() {
        let g = got["stats"][i].as_f64().unwrap();
        assert!(
            (g - w.as_f64().unwrap()).abs() < 1e-6,
            "stat {i}: {g} vs {w}"
        );
    }
    assert_eq!(got["AP"], got["stats"][0]);
    assert_eq!(got["ARl"], got["stats"][11]);
    assert_eq!(got["per_category"][0]["name"], "class1");
}

#[test]
fn table_is_pycocotools_printout() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture("empty");
    let (gt, dt) = write_case(dir.path(), &f);
    let out = afan(&["eval-detections", "--gt", s(&gt), "--dt", s(&dt)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 12, "{text}");
    let ap = f["stats"][0].as_f64().unwrap();
    assert_eq!(
        lines[0],
        format!(
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = {ap:.3}"
        )
    );
    // No large objects in this case: pycocotools prints -1.000.
    assert_eq!(
        lines[11],
        " Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = -1.000"
    );
}

#[test]
fn bad_files_get_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture("basic");
    let (gt, dt) = write_case(dir.path(), &f);
    let run = |gt: &Path, dt: &Path| fails(&["eval-detections", "--gt", s(gt), "--dt", s(dt)]);

    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"images\": [").unwrap();
    let msg = run(&broken, &dt);
    assert!(
        msg.contains("broken.json") && msg.contains("line 1"),
        "{msg}"
    );

    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, "[]").unwrap();
    let msg = run(&gt, &empty);
    assert!(msg.contains("empty.json") && msg.contains("empty"), "{msg}");

    let stray = dir.path().join("stray.json");
    std::fs::write(
        &stray,
        r#"[{"image_id": 999, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}]"#,
    )
    .unwrap();
    let msg = run(&gt, &stray);
    assert!(
        msg.contains("stray.json") && msg.contains("[0].image_id") && msg.contains("999"),
        "{msg}"
    );

    let no_bbox = dir.path().join("no_bbox.json");
    std::fs::write(
        &no_bbox,
        r#"[{"image_id": 10, "category_id": 1, "score": 0.5}]"#,
    )
    .unwrap();
    let msg = run(&gt, &no_bbox);
    assert!(
        msg.contains("no_bbox.json") && msg.contains("bbox"),
        "{msg}"
    );

    let msg = run(&dir.path().join("nowhere.json"), &dt);
    assert!(msg.contains("nowhere.json"), "{msg}");
    assert_eq!(msg.matches("os error").count(), 1, "{msg}");
}
