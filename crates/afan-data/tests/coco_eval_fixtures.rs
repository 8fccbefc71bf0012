//! COCO box evaluation against pycocotools' own numbers, read from the fixtures that
//! xtask/reference/coco_eval_fixtures.py wrote (seeded random cases: crowd regions,
//! all area ranges, images without ground truth, categories without detections, tied
//! scores, more than 100 detections on an image).

use afan_data::detection::coco::{CocoInstances, CocoResult};
use afan_data::detection::eval::{DetBox, coco_evaluate};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize)]
struct Fixture {
    gt: CocoInstances,
    dt: Vec<CocoResult>,
    stats: [f64; 12],
    per_category_ap: Vec<(u64, f64)>,
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/coco_eval")
}

fn check(name: &str) {
    let path = fixture_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap();
    let f: Fixture = serde_json::from_str(&text).unwrap();
    let dets: Vec<DetBox> =
        f.dt.iter()
            .map(|r| DetBox {
                image_id: r.image_id,
                category_id: r.category_id,
                bbox: r.bbox,
                score: r.score,
            })
            .collect();
    let got = coco_evaluate(&f.gt.ground_truth(), &dets);
    for (i, (g, want)) in got.stats.iter().zip(f.stats).enumerate() {
        assert!(
            (g - want).abs() < 1e-6,
            "{name}: stat {i}: got {g}, pycocotools {want}\n{:?}",
            got.stats
        );
    }
    assert_eq!(got.per_category_ap.len(), f.per_category_ap.len(), "{name}");
    for ((c, g), (wc, want)) in got.per_category_ap.iter().zip(&f.per_category_ap) {
        assert_eq!(c, wc, "{name}");
        assert!(
            (g - want).abs() < 1e-6,
            "{name}: category {c}: {g} vs {want}"
        );
    }
}

#[test]
fn basic_matches_pycocotools() {
    check("basic");
}

#[test]
fn crowd_regions_match_pycocotools() {
    check("crowd");
}

#[test]
fn area_ranges_match_pycocotools() {
    check("areas");
}

#[test]
fn empty_images_and_categories_match_pycocotools() {
    check("empty");
}

#[test]
fn more_than_100_detections_match_pycocotools() {
    check("many_dets");
}

#[test]
fn tied_scores_match_pycocotools() {
    check("ties");
}

#[test]
fn larger_mixed_case_matches_pycocotools() {
    check("mixed");
}
