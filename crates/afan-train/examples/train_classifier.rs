//! A Rust program that trains a classifier with A-FAN on its own images, through the engine.
//! `cargo run --release -p afan-train --example train_classifier`; `cargo test` runs it too.

use afan_train::classification::{ClassificationTask, config};
use afan_train::{TrainOptions, train};

/// Trains ResNet-20 with A-FAN on images held in memory; returns the test top-1 (percent).
fn run(out: &std::path::Path) -> afan_train::Result<f64> {
    // Any images the application holds: here the generated shapes, 10 classes.
    let (train_images, test_images) = afan_data::shapes10(512, 256, 7);
    let mut run = config::quickstart(); // ResNet-20, A-FAN after layer1, SGD
    run.common.epochs = Some(3);
    run.common.batch_size = 32;
    run.common.schedule.milestones = vec![];
    run.task.afan.pgd.steps = 1;
    let task = ClassificationTask::with_data(run, train_images, test_images)?;
    let device = afan_core::device::parse_device("cpu")?; // or "wgpu", "cuda:0"
    let summary = train(&task, &TrainOptions::new(out, device))?;
    Ok(summary.last.unwrap_or(0.0))
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> afan_train::Result<()> {
    let top1 = run(std::path::Path::new("runs/embedded"))?;
    println!("test top-1 {top1:.1}% (checkpoints in runs/embedded)");
    Ok(())
}

#[test]
fn the_embedded_run_learns() {
    let dir = tempfile::tempdir().unwrap();
    let top1 = run(&dir.path().join("run")).unwrap();
    eprintln!("embedded run: test top-1 {top1}%");
    // 10 balanced classes: chance is 10%.
    assert!(top1 > 25.0, "top-1 {top1}%");
}
