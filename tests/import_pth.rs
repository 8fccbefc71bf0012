//! Reading the files `torch.save` writes (fixtures from `xtask/reference/pth_fixtures.py`), and
//! refusing the ones that are not state dicts with a message naming the file.

use afan_models::{ImportError, StateDict};
use std::path::{Path, PathBuf};

#[path = "support/hash_weights.rs"]
mod hash_weights;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/pth")
        .join(name)
}

const SHAPES: [(&str, &[usize]); 5] = [
    ("conv1.weight", &[4, 3, 3, 3]),
    ("bn1.weight", &[4]),
    ("bn1.running_var", &[4]),
    ("fc.weight", &[2, 4]),
    ("fc.bias", &[2]),
];

/// Every tensor the script saved, with its values (to f16 rounding when saved as f16).
fn assert_holds_the_state(dict: &StateDict, tolerance: f32, dtype: &str) {
    for (key, shape) in SHAPES {
        let entry = dict.entry(key).unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(entry.shape, shape, "{key}");
        assert_eq!(entry.dtype, dtype, "{key}");
        let want = hash_weights::value(key, shape);
        for (g, w) in entry.values.iter().zip(&want) {
            assert!(
                (g - w).abs() <= tolerance * w.abs().max(1e-3),
                "{key}: {g} vs {w}"
            );
        }
    }
    let steps = dict.entry("bn1.num_batches_tracked").unwrap();
    assert_eq!(
        (steps.dtype, steps.values.as_slice()),
        ("int64", &[7.0][..])
    );
    assert_eq!(dict.len(), SHAPES.len() + 1);
}

#[test]
fn zip_and_legacy_containers_read_the_same_state_dict() {
    for name in ["plain_zip.pth", "plain_legacy.pth"] {
        let dict = StateDict::from_file(&fixture(name)).unwrap();
        assert_holds_the_state(&dict, 0.0, "float32");
        assert_eq!(dict.stripped_prefix(), None);
    }
}

#[test]
fn training_checkpoints_are_unwrapped_and_strided_tensors_gathered() {
    // {"epoch": 3, "state_dict": {"module.conv1.weight": ...}} with a transposed view inside.
    let dict = StateDict::from_file(&fixture("nested_module.pth")).unwrap();
    assert_eq!(dict.stripped_prefix(), Some("state_dict.module."));
    assert_holds_the_state(&dict, 0.0, "float32");
}

#[test]
fn half_precision_weights_are_widened() {
    let dict = StateDict::from_file(&fixture("half.pth")).unwrap();
    assert_holds_the_state(&dict, 1e-3, "float16");
}

#[test]
fn files_that_are_not_state_dicts_are_named_in_one_error() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.pth");
    let bytes = std::fs::read(fixture("plain_zip.pth")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let garbage = dir.path().join("garbage.pt");
    std::fs::write(&garbage, b"this is not a checkpoint at all").unwrap();
    let cases = [
        (fixture("no_tensors.pth"), "holds no tensors"),
        (truncated, "not a PyTorch checkpoint"),
        (garbage, "not a PyTorch checkpoint"),
        (dir.path().join("absent.pth"), "cannot read"),
    ];
    for (path, expect) in cases {
        let err: ImportError = StateDict::from_file(&path).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(expect) && text.contains(&*path.file_name().unwrap().to_string_lossy()),
            "{}: {text}",
            path.display()
        );
    }
}
