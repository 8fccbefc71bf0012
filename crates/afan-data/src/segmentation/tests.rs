//! Transforms, the generated set and the metrics (by hand and against numpy).

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;

/// A 3x2 sample whose pixel i has RGB (i, 10 + i, 20 + i) and label i.
fn small() -> SegSample {
    SegSample {
        width: 3,
        height: 2,
        rgb: (0..6u8).flat_map(|i| [i, 10 + i, 20 + i]).collect(),
        mask: (0..6).collect(),
    }
}

#[test]
fn crop_pads_labels_with_ignore_and_flip_mirrors() {
    let aug = SegAugment {
        scale: [1.0, 1.0],
        crop: 4,
        flip: false,
        color_jitter: 0.0,
    };
    let out = augment(&small(), &aug, &mut ChaCha8Rng::seed_from_u64(0));
    assert_eq!((out.width, out.height), (4, 4));
    #[rustfmt::skip]
    let expected = vec![0, 1, 2, 255,  3, 4, 5, 255,  255, 255, 255, 255,  255, 255, 255, 255];
    assert_eq!(out.mask, expected);
    assert_eq!(&out.rgb[..6], &[0, 10, 20, 1, 11, 21]);
    assert_eq!(&out.rgb[9..12], &[0, 0, 0]); // padded image pixels are 0
    let flip = SegAugment {
        crop: 0,
        flip: true,
        ..aug
    };
    let flips: Vec<SegSample> = (0..16)
        .map(|s| augment(&small(), &flip, &mut ChaCha8Rng::seed_from_u64(s)))
        .collect();
    let mirrored = flips
        .iter()
        .find(|s| s.mask != small().mask)
        .expect("some flip");
    assert_eq!(mirrored.mask, vec![2, 1, 0, 5, 4, 3]);
    assert_eq!(&mirrored.rgb[..3], &[2, 12, 22]);
    assert!(
        flips.iter().any(|s| *s == small()),
        "flip has probability 1/2"
    );
}

#[test]
fn random_scale_and_crop_keep_image_and_labels_aligned() {
    let (train, _) = shapes_seg(4, 0, 40, 3);
    let aug = SegAugment {
        crop: 32,
        color_jitter: 0.5,
        ..SegAugment::default()
    };
    let mut sizes = std::collections::BTreeSet::new();
    for seed in 0..8 {
        let s = train.get(seed as usize % 4).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a = augment(&s, &aug, &mut rng);
        assert_eq!((a.width, a.height, a.mask.len()), (32, 32, 1024));
        assert!(a.mask.iter().all(|&v| v < 4 || v == 255));
        sizes.insert(a.mask.iter().filter(|&&v| v == 255).count());
        // Same generator, same view.
        assert_eq!(a, augment(&s, &aug, &mut ChaCha8Rng::seed_from_u64(seed)));
    }
    assert!(
        sizes.len() > 2 && sizes.contains(&0),
        "scales vary, padding only when small"
    );
}

#[test]
fn val_transform_resizes_the_short_side_and_centre_crops() {
    let s = small();
    assert_eq!(val_transform(&s, None), s);
    let v = val_transform(&s, Some(4)); // 3x2 -> 6x4 -> centre 4x4 from x = 1
    assert_eq!((v.width, v.height), (4, 4));
    // Nearest upscaling by 2: columns 1..5 of the 6-wide map are source columns 0, 1, 1, 2.
    assert_eq!(&v.mask[..4], &[0, 1, 1, 2]);
    assert_eq!(&v.mask[12..], &[3, 4, 4, 5]);
}

#[test]
fn batches_are_normalized_chw() {
    let b = to_batch(&[small(), small()], [0.5, 0.0, 0.0], [0.5, 1.0, 2.0]).unwrap();
    assert_eq!((b.batch, b.height, b.width, b.images.len()), (2, 2, 3, 36));
    // Pixel 1 of image 0: R = (1/255 - 0.5) / 0.5, G = 11/255, B = 21/255 / 2.
    assert!((b.images[1] - (1.0 / 255.0 - 0.5) / 0.5).abs() < 1e-6);
    assert!((b.images[6 + 1] - 11.0 / 255.0).abs() < 1e-6);
    assert!((b.images[12 + 1] - 21.0 / 510.0).abs() < 1e-6);
    assert_eq!(&b.labels[6..], &[0, 1, 2, 3, 4, 5]);
    let mut other = small();
    other.width = 2;
    other.height = 3;
    assert!(to_batch(&[small(), other], [0.0; 3], [1.0; 3]).is_err());
}

#[test]
fn shapes_seg_is_deterministic_and_labelled() {
    let (train, test) = shapes_seg(12, 4, 24, 5);
    assert_eq!((train.len(), test.len(), train.num_classes), (12, 4, 4));
    let (again, _) = shapes_seg(12, 0, 24, 5);
    let mut counts = [0usize; 4];
    for i in 0..12 {
        let s = train.get(i).unwrap();
        assert_eq!(s, again.get(i).unwrap());
        for &v in &s.mask {
            counts[usize::from(v)] += 1;
        }
    }
    assert!(
        counts.iter().all(|&c| c > 100),
        "every class drawn: {counts:?}"
    );
    assert_ne!(train.get(0).unwrap(), test.get(0).unwrap());
    assert_ne!(
        train.get(0).unwrap(),
        shapes_seg(1, 0, 24, 6).0.get(0).unwrap()
    );
}

#[test]
fn metrics_by_hand() {
    // 3 classes; truth row-major 2x3 with one ignored pixel.
    let labels = [0, 0, 1, 1, 2, 255];
    let preds = [0, 1, 1, 1, 0, 2];
    let mut m = ConfusionMatrix::new(3);
    m.update(&preds, &labels);
    // Truth 0: {0, 1}; truth 1: {1, 1}; truth 2: {0}.
    assert_eq!(m.counts, vec![1, 1, 0, 0, 2, 0, 1, 0, 0]);
    let s = m.scores();
    assert!((s.pixel_accuracy - 3.0 / 5.0).abs() < 1e-12);
    // Recall: 1/2, 2/2, 0/1.
    assert!((s.mean_accuracy - 0.5).abs() < 1e-12);
    // IoU: class 0: 1 / (2 + 2 - 1) = 1/3; class 1: 2 / (2 + 3 - 2) = 2/3; class 2: 0 / 1.
    assert_eq!(
        s.class_iou,
        vec![Some(1.0 / 3.0), Some(2.0 / 3.0), Some(0.0)]
    );
    assert!((s.mean_iou - 1.0 / 3.0).abs() < 1e-12);
    // Frequencies 2/5, 2/5, 1/5.
    assert!((s.frequency_weighted_iou - (0.4 / 3.0 + 0.8 / 3.0)).abs() < 1e-12);
    // A class in neither labels nor predictions has no IoU and is not averaged.
    let mut m4 = ConfusionMatrix::new(4);
    m4.update(&preds, &labels);
    assert_eq!(m4.scores().class_iou[3], None);
    assert!((m4.scores().mean_iou - s.mean_iou).abs() < 1e-12);
    assert_eq!(ConfusionMatrix::new(2).scores().mean_iou, 0.0);
}

#[test]
fn argmax_of_logits_feeds_the_matrix() {
    // Batch 2, 2 classes, 2 pixels per image: [b][c][p].
    let logits = [1.0, 0.0, 0.0, 2.0, /* image 1 */ 5.0, 5.0, 1.0, 4.0];
    assert_eq!(argmax_classes(&logits, 2, 2), vec![0, 1, 0, 0]);
    let mut m = ConfusionMatrix::new(2);
    m.update_logits(&logits, 2, &[0, 1, 1, 255]);
    assert_eq!(m.counts, vec![1, 0, 1, 1]);
}

#[test]
fn metrics_match_numpy_reference() {
    // xtask/reference/seg_metrics.py (VainF's StreamSegMetrics formulas in numpy).
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("../../tests/fixtures/seg_metrics.json")).unwrap();
    let n = golden["num_classes"].as_u64().unwrap() as usize;
    let vec_u8 = |v: &serde_json::Value| -> Vec<u8> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u8)
            .collect()
    };
    let mut total = ConfusionMatrix::new(n);
    for map in golden["maps"].as_array().unwrap() {
        let mut one = ConfusionMatrix::new(n);
        one.update(&vec_u8(&map["pred"]), &vec_u8(&map["label"]));
        total.merge(&one);
    }
    let confusion: Vec<u64> = golden["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(total.counts, confusion);
    let s = total.scores();
    let close = |a: f64, key: &str| {
        let b = golden[key].as_f64().unwrap();
        assert!((a - b).abs() < 1e-12, "{key}: {a} vs numpy {b}");
    };
    close(s.pixel_accuracy, "pixel_accuracy");
    close(s.mean_accuracy, "mean_accuracy");
    close(s.mean_iou, "mean_iou");
    close(s.frequency_weighted_iou, "frequency_weighted_iou");
    for (ours, theirs) in s
        .class_iou
        .iter()
        .zip(golden["class_iou"].as_array().unwrap())
    {
        assert_eq!(ours.is_none(), theirs.is_null());
        if let Some(v) = ours {
            assert!((v - theirs.as_f64().unwrap()).abs() < 1e-12);
        }
    }
}

#[test]
fn colour_jitter_changes_colours_only() {
    // A uniform gray stays uniform gray (contrast pivots on the mean, saturation on the gray
    // value); only brightness moves it. Labels are untouched.
    let gray = SegSample {
        width: 2,
        height: 2,
        rgb: vec![100; 12],
        mask: vec![0, 1, 2, 255],
    };
    let aug = SegAugment {
        scale: [1.0, 1.0],
        crop: 0,
        flip: false,
        color_jitter: 0.5,
    };
    let mut values = std::collections::BTreeSet::new();
    for seed in 0..8 {
        let out = augment(&gray, &aug, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(out.mask, gray.mask);
        assert!(out.rgb.iter().all(|&v| v == out.rgb[0]), "{:?}", out.rgb);
        assert!(
            (50..=150).contains(&out.rgb[0]),
            "brightness within 1 +- 0.5"
        );
        values.insert(out.rgb[0]);
    }
    assert!(values.len() > 4, "the factor is random: {values:?}");
    // A coloured pixel is desaturated or saturated around its gray value.
    let red = SegSample {
        width: 1,
        height: 1,
        rgb: vec![200, 50, 50],
        mask: vec![0],
    };
    let outs: Vec<_> = (0..8)
        .map(|s| augment(&red, &aug, &mut ChaCha8Rng::seed_from_u64(s)).rgb)
        .collect();
    assert!(
        outs.iter().all(|p| p[0] >= p[1] && p[1] == p[2]),
        "{outs:?}"
    );
}
