use super::*;

/// Per-pixel "shape, not background": differs from the image's background colour (the
/// median outside all boxes) by more than half the guaranteed contrast.
fn foreground(s: &DetectionSample) -> Vec<bool> {
    let n = s.height * s.width;
    let outside: Vec<usize> = (0..n)
        .filter(|&i| {
            let (x, y) = ((i % s.width) as f64 + 0.5, (i / s.width) as f64 + 0.5);
            s.boxes
                .iter()
                .all(|b| !(x >= b.x1 && x < b.x2 && y >= b.y1 && y < b.y2))
        })
        .collect();
    let bg: Vec<f32> = (0..3)
        .map(|c| {
            let mut v: Vec<f32> = outside.iter().map(|&i| s.pixels[c * n + i]).collect();
            v.sort_by(f32::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    (0..n)
        .map(|i| (0..3).any(|c| (s.pixels[c * n + i] - bg[c]).abs() * 255.0 > MIN_CONTRAST / 2.0))
        .collect()
}

/// 4x4 foreground fractions of a box's crop: a crude shape descriptor.
fn descriptor(s: &DetectionSample, fg: &[bool], b: &BoxXyxy) -> [f32; 16] {
    let mut sum = [0f32; 16];
    let mut count = [0f32; 16];
    for y in b.y1 as usize..b.y2 as usize {
        for x in b.x1 as usize..b.x2 as usize {
            let u = ((x as f64 + 0.5 - b.x1) / b.width() * 4.0) as usize;
            let v = ((y as f64 + 0.5 - b.y1) / b.height() * 4.0) as usize;
            sum[v * 4 + u] += fg[y * s.width + x] as u8 as f32;
            count[v * 4 + u] += 1.0;
        }
    }
    std::array::from_fn(|i| sum[i] / count[i].max(1.0))
}

#[test]
fn same_seed_same_images_and_splits_differ() {
    let (a, b) = shapes_det(3, 3, 7);
    assert_eq!(a, shapes_det(3, 0, 7).0);
    assert_ne!(a[0].pixels, b[0].pixels);
    assert_ne!(a[0].pixels, shapes_det(1, 0, 8).0[0].pixels);
    for s in a.iter().chain(&b) {
        assert!((1..=3).contains(&s.boxes.len()));
        assert_eq!(s.pixels.len(), 3 * SHAPES_DET_SIDE * SHAPES_DET_SIDE);
        assert!(s.pixels.iter().all(|&p| (0.0..=1.0).contains(&p)));
    }
}

#[test]
fn boxes_are_tight_and_background_is_plain() {
    let (train, _) = shapes_det(40, 0, 1);
    for s in &train {
        let fg = foreground(s);
        let w = s.width;
        for (i, &f) in fg.iter().enumerate() {
            let (x, y) = ((i % w) as f64 + 0.5, (i / w) as f64 + 0.5);
            let in_box = s
                .boxes
                .iter()
                .any(|b| x >= b.x1 && x < b.x2 && y >= b.y1 && y < b.y2);
            assert!(
                in_box || !f,
                "image {}: foreground at ({x}, {y}) outside boxes",
                s.image_id
            );
        }
        // Each edge of each box has foreground within one pixel of it.
        for b in &s.boxes {
            let near = |x0: f64, x1: f64, y0: f64, y1: f64| {
                (y0 as usize..y1 as usize)
                    .any(|y| (x0 as usize..x1 as usize).any(|x| fg[y * w + x]))
            };
            assert!(near(b.x1, b.x2, b.y1, b.y1 + 2.0), "top of {b:?}");
            assert!(near(b.x1, b.x2, b.y2 - 2.0, b.y2), "bottom of {b:?}");
            assert!(near(b.x1, b.x1 + 2.0, b.y1, b.y2), "left of {b:?}");
            assert!(near(b.x2 - 2.0, b.x2, b.y1, b.y2), "right of {b:?}");
        }
    }
}

#[test]
fn classes_are_separable_from_box_crops() {
    // A nearest-centroid classifier on 4x4 foreground fractions of the ground-truth
    // crops, fitted on train, must classify test crops well: the boxes hold the shapes
    // and the classes differ in shape, so a detector has something to learn.
    let (train, test) = shapes_det(150, 60, 2);
    let k = SHAPES_DET_CLASSES.len();
    let mut centroid = vec![[0f32; 16]; k];
    let mut n = vec![0f32; k];
    for s in &train {
        let fg = foreground(s);
        for (b, &l) in s.boxes.iter().zip(&s.labels) {
            let d = descriptor(s, &fg, b);
            for i in 0..16 {
                centroid[l][i] += d[i];
            }
            n[l] += 1.0;
        }
    }
    for l in 0..k {
        assert!(n[l] > 20.0, "class {l} has only {} training objects", n[l]);
        centroid[l].iter_mut().for_each(|v| *v /= n[l]);
    }
    let (mut right, mut total) = (0, 0);
    for s in &test {
        let fg = foreground(s);
        for (b, &l) in s.boxes.iter().zip(&s.labels) {
            let d = descriptor(s, &fg, b);
            let dist = |c: &[f32; 16]| c.iter().zip(&d).map(|(a, b)| (a - b).powi(2)).sum::<f32>();
            let pred = (0..k)
                .min_by(|&a, &b| dist(&centroid[a]).total_cmp(&dist(&centroid[b])))
                .unwrap();
            right += (pred == l) as usize;
            total += 1;
        }
    }
    let acc = right as f64 / total as f64;
    assert!(
        acc > 0.9,
        "nearest-centroid accuracy {acc} on {total} test objects"
    );
}

#[test]
fn ground_truth_views_agree_with_samples() {
    let (s, _) = shapes_det(4, 0, 3);
    let recs = records_of(&s);
    let gt = coco_ground_truth(&s, SHAPES_DET_CLASSES.len());
    let objects: usize = s.iter().map(|s| s.boxes.len()).sum();
    assert_eq!(gt.annotations.len(), objects);
    assert_eq!(recs[2].boxes, s[2].boxes);
    // Perfect detections score AP 1 under both metrics.
    let dets: Vec<_> = gt
        .annotations
        .iter()
        .map(|g| crate::detection::eval::DetBox {
            image_id: g.image_id,
            category_id: g.category_id,
            bbox: g.bbox,
            score: 1.0,
        })
        .collect();
    assert_eq!(
        crate::detection::eval::coco_evaluate(&gt, &dets).stats[0],
        1.0
    );
}
