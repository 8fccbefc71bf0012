use super::*;

fn parts<'a>(model: &'a [u8], optim: Option<&'a [u8]>) -> CheckpointParts<'a> {
    CheckpointParts {
        task: TaskKind::Detection,
        config: "task = \"detection\"\nseed = 3\n",
        model_info: serde_json::json!({"class_names": ["a", "b"]}),
        state: Some(serde_json::json!({"iteration": 7})),
        model,
        optim,
    }
}

#[test]
fn a_checkpoint_reads_back_and_corruption_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("last.ckpt");
    write(&path, parts(b"model bytes", Some(b"optimizer"))).unwrap();
    let c = Checkpoint::read(&path).unwrap();
    assert_eq!((c.format, c.task), (FORMAT, TaskKind::Detection));
    assert_eq!(c.config["seed"].as_integer(), Some(3));
    assert_eq!(c.state.as_ref().unwrap()["iteration"], 7);
    assert_eq!(&*c.model, b"model bytes");
    assert_eq!(c.optim.as_deref(), Some(&b"optimizer"[..]));
    assert!(c.expect_task(TaskKind::Segmentation).is_err());

    // One flipped byte inside the model entry: the checksum names it.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(11).position(|w| w == b"model bytes").unwrap();
    bytes[at] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let e = Checkpoint::read(&path).unwrap_err().to_string();
    assert!(
        e.contains("last.ckpt") && e.contains("model.bpk is corrupt"),
        "{e}"
    );

    // Truncated: one sentence naming the file, no raw bytes.
    std::fs::write(&path, &bytes[..700]).unwrap();
    let e = Checkpoint::read(&path).unwrap_err().to_string();
    assert!(e.contains("last.ckpt") && e.contains("truncated"), "{e}");
    assert!(
        e.chars().all(|c| !c.is_control()) && !e.contains("\\x"),
        "{e}"
    );

    std::fs::write(&path, "not a checkpoint").unwrap();
    let e = Checkpoint::read(&path).unwrap_err().to_string();
    assert!(e.contains("not a tar archive"), "{e}");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = Checkpoint::read(&empty).unwrap_err().to_string();
    assert!(
        e.contains("holds no checkpoint") && e.contains(&*empty.to_string_lossy()),
        "{e}"
    );
    // A run directory is read through its checkpoint.
    assert!(
        Checkpoint::read(dir.path())
            .unwrap_err()
            .to_string()
            .contains("not a tar archive")
    );
}
