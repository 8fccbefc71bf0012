use super::*;

#[test]
fn thresholds_are_numpys_linspace() {
    let iou = linspace(0.5, 0.95, 10);
    // The 6th threshold must compare equal to .75 (pycocotools selects AP75 by `==`).
    assert_eq!(iou[5], 0.75);
    assert_eq!(iou[0], 0.5);
    assert_eq!(iou[9], 0.95);
    let rec = linspace(0.0, 1.0, 101);
    assert_eq!(rec[1], 0.01);
    assert_eq!(rec[100], 1.0);
}

#[test]
fn crowd_iou_divides_by_the_detection_area() {
    let d = [0.0, 0.0, 2.0, 2.0];
    let g = [1.0, 0.0, 10.0, 10.0];
    // Intersection 1x2 = 2; regular union 4 + 100 - 2, crowd union = detection area 4.
    assert_eq!(bb_iou(&d, &g, false), 2.0 / 102.0);
    assert_eq!(bb_iou(&d, &g, true), 0.5);
}

fn gt(image_id: u64, bbox: [f64; 4], iscrowd: bool) -> GtBox {
    GtBox {
        image_id,
        category_id: 1,
        bbox,
        area: bbox[2] * bbox[3],
        iscrowd,
    }
}

fn det(image_id: u64, bbox: [f64; 4], score: f64) -> DetBox {
    DetBox {
        image_id,
        category_id: 1,
        bbox,
        score,
    }
}

#[test]
fn hand_computed_case() {
    // Two large objects; one perfect detection, one false positive ranked above
    // it, and one detection inside a crowd region (ignored, neither TP nor FP).
    let truth = CocoGroundTruth {
        image_ids: vec![1, 2],
        category_ids: vec![1, 2],
        annotations: vec![
            gt(1, [0.0, 0.0, 100.0, 100.0], false),
            gt(2, [0.0, 0.0, 100.0, 100.0], false),
            gt(2, [200.0, 200.0, 100.0, 100.0], true),
        ],
    };
    let dets = [
        det(1, [500.0, 500.0, 100.0, 100.0], 0.9),
        det(1, [0.0, 0.0, 100.0, 100.0], 0.8),
        det(2, [210.0, 210.0, 50.0, 50.0], 0.7),
    ];
    let s = coco_evaluate(&truth, &dets).stats;
    // Ranked: FP, TP (recall 1/2, precision 1/2), crowd-ignored. The envelope gives
    // precision 1/2 for recall points 0..=0.5 (51 points), 0 beyond: AP = 51/101 / 2
    // at every threshold.
    let ap = 51.0 / 101.0 / 2.0;
    for i in [0, 1, 2, 5] {
        assert!((s[i] - ap).abs() < 1e-12, "stat {i}: {}", s[i]);
    }
    // No small or medium objects; category 2 has no ground truth at all.
    assert_eq!(s[3], -1.0);
    assert_eq!(s[4], -1.0);
    // maxDets=1 keeps only the FP on image 1: recall 0; with 10 or 100: 1/2.
    assert_eq!(s[6], 0.0);
    assert_eq!(s[7], 0.5);
    assert_eq!(s[8], 0.5);
}
