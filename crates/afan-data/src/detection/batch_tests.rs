use super::*;
use crate::detection::{BoxXyxy, DetectionDataset, DetectionRecord};
use std::path::Path;

fn config(batch_size: usize) -> DetectionLoaderConfig {
    DetectionLoaderConfig {
        batch_size,
        resize: None,
        hflip: false,
        shuffle: true,
        size_divisibility: 1,
        seed: 3,
    }
}

#[test]
fn aspect_groups_are_homogeneous_and_cover_every_image_once() {
    // Even indices landscape, odd portrait or square.
    let sizes: Vec<(usize, usize)> = (0..23)
        .map(|i| if i % 2 == 0 { (40, 30) } else { (30, 30 + i) })
        .collect();
    let batches = aspect_grouped_batches(&sizes, &config(4), 0);
    let mut seen: Vec<usize> = batches.concat();
    seen.sort_unstable();
    assert_eq!(seen, (0..23).collect::<Vec<_>>());
    for b in &batches {
        assert!(b.len() <= 4);
        let landscape = b[0] % 2 == 0;
        assert!(b.iter().all(|&i| (i % 2 == 0) == landscape), "{b:?}");
    }
    // 12 landscape -> 3 full; 11 others -> 2 full + 1 of 3.
    assert_eq!(batches.iter().filter(|b| b.len() == 4).count(), 5);
    // Same seed and epoch, same batches; another epoch, another order.
    assert_eq!(batches, aspect_grouped_batches(&sizes, &config(4), 0));
    assert_ne!(batches, aspect_grouped_batches(&sizes, &config(4), 1));
}

fn sample(h: usize, w: usize, value: f32) -> DetectionSample {
    DetectionSample {
        pixels: vec![value; 3 * h * w],
        height: h,
        width: w,
        boxes: vec![BoxXyxy::new(0.5, 1.0, 2.0, 2.5)],
        labels: vec![1],
        image_id: h as u64,
        scale: 1.0,
    }
}

#[test]
fn collate_pads_with_zeros_to_a_multiple() {
    let b = collate(vec![sample(2, 3, 1.0), sample(3, 2, 2.0)], 4);
    assert_eq!((b.height, b.width), (4, 4));
    assert_eq!(b.images.len(), 2 * 3 * 16);
    // Image 0, channel 2, row 1: three ones then padding.
    assert_eq!(&b.images[(2 * 4 + 1) * 4..][..4], &[1.0, 1.0, 1.0, 0.0]);
    // Image 1, channel 0, row 2: two twos then padding; row 3 is padding.
    assert_eq!(
        &b.images[(3 * 4 + 2) * 4..][..8],
        &[2.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    );
    assert_eq!(b.image_sizes, vec![(2, 3), (3, 2)]);
    assert_eq!(b.boxes[1], vec![[0.5, 1.0, 2.0, 2.5]]);
    assert_eq!(b.image_ids, vec![2, 3]);
}

/// A 4x2 PNG whose red channel encodes the column, with one box on the left half.
fn png_dataset(dir: &Path, width: u32) -> DetectionDataset {
    let img = image::RgbImage::from_fn(width, 2, |x, y| image::Rgb([x as u8 * 50, y as u8, 255]));
    let path = dir.join("img.png");
    img.save(&path).unwrap();
    DetectionDataset {
        class_names: vec!["thing".into()],
        records: vec![DetectionRecord {
            image: path,
            image_id: 5,
            width: 4,
            height: 2,
            boxes: vec![BoxXyxy::new(0.0, 0.0, 2.0, 2.0)],
            labels: vec![0],
            difficult: vec![false],
            crowd: vec![],
        }],
        skipped_boxes: 0,
    }
}

#[test]
fn batches_decode_files_and_flip_boxes_with_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let ds = png_dataset(dir.path(), 4);
    let mut cfg = config(1);
    let b = detection_batches(&ds, cfg, 0).next().unwrap().unwrap();
    assert_eq!(
        &b.images[..4],
        &[0.0, 50.0 / 255.0, 100.0 / 255.0, 150.0 / 255.0]
    );
    assert_eq!(b.images[2 * 8], 1.0); // blue channel
    cfg.hflip = true;
    // Over a few epochs the flip happens for some and not others, deterministically.
    let flips: Vec<bool> = (0..8)
        .map(|e| {
            let b = load_batch(&ds, &[0], &cfg, e).unwrap();
            let flipped = b.boxes[0][0] == [2.0, 0.0, 4.0, 2.0];
            assert!(flipped || b.boxes[0][0] == [0.0, 0.0, 2.0, 2.0]);
            // The box follows the pixels: the red ramp runs the other way when flipped.
            assert_eq!(b.images[0] == 150.0 / 255.0, flipped);
            flipped
        })
        .collect();
    assert!(flips.contains(&true) && flips.contains(&false), "{flips:?}");
    let again: Vec<bool> = (0..8)
        .map(|e| load_batch(&ds, &[0], &cfg, e).unwrap().boxes[0][0][0] == 2.0)
        .collect();
    assert_eq!(flips, again);
}

#[test]
fn resize_in_the_loader_scales_boxes() {
    let dir = tempfile::tempdir().unwrap();
    let ds = png_dataset(dir.path(), 4);
    let mut cfg = config(1);
    cfg.resize = Some(ResizeConfig {
        min_size: 4,
        max_size: 100,
    });
    let b = load_batch(&ds, &[0], &cfg, 0).unwrap();
    assert_eq!(b.image_sizes, vec![(4, 8)]);
    assert_eq!(b.boxes[0], vec![[0.0, 0.0, 4.0, 4.0]]);
    assert_eq!(b.scales, vec![2.0]);
}

#[test]
fn wrong_size_or_broken_image_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let ds = png_dataset(dir.path(), 5);
    let msg = load_batch(&ds, &[0], &config(1), 0)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("img.png") && msg.contains("5x2") && msg.contains("4x2"),
        "{msg}"
    );
    std::fs::write(dir.path().join("img.png"), b"not a png").unwrap();
    let msg = load_batch(&ds, &[0], &config(1), 0)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("img.png"), "{msg}");
}
