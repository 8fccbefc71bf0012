//! VOC mAP (11-point and area rules) against the independent numpy copy of
//! py-faster-rcnn's voc_eval in xtask/reference/voc_map_fixtures.py. The fixtures use
//! the devkit's 1-based pixel boxes; they are converted here exactly as the VOC reader
//! converts annotations, so this also checks that the conversion keeps the devkit's IoU.

use afan_data::detection::eval::{ApRule, Detection, voc_map};
use afan_data::detection::voc::{VOC_CLASSES, load_voc, voc_classes};
use afan_data::detection::{BoxXyxy, DetectionRecord};
use serde::Deserialize;
use std::collections::HashMap;

#[derive(Deserialize)]
struct Object {
    #[serde(rename = "box")]
    bbox: [f64; 4],
    cls: usize,
    difficult: bool,
}

#[derive(Deserialize)]
struct Image {
    id: u64,
    width: u32,
    height: u32,
    objects: Vec<Object>,
}

#[derive(Deserialize)]
struct Det {
    image: u64,
    cls: usize,
    #[serde(rename = "box")]
    bbox: [f64; 4],
    score: f64,
}

#[derive(Deserialize)]
struct Case {
    num_classes: usize,
    images: Vec<Image>,
    dets: Vec<Det>,
    ap07: Vec<Option<f64>>,
    ap_area: Vec<Option<f64>>,
    map07: f64,
    map_area: f64,
}

fn pixels(b: [f64; 4]) -> BoxXyxy {
    BoxXyxy::from_voc_pixels(b[0], b[1], b[2], b[3])
}

fn cases() -> HashMap<String, Case> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/voc_map/cases.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn records_of(case: &Case) -> Vec<DetectionRecord> {
    case.images
        .iter()
        .map(|im| DetectionRecord {
            image: format!("{}.jpg", im.id).into(),
            image_id: im.id,
            width: im.width,
            height: im.height,
            boxes: im.objects.iter().map(|o| pixels(o.bbox)).collect(),
            labels: im.objects.iter().map(|o| o.cls).collect(),
            difficult: im.objects.iter().map(|o| o.difficult).collect(),
            crowd: vec![],
        })
        .collect()
}

fn check(name: &str) {
    let case = &cases()[name];
    let records = records_of(case);
    check_against(name, case, &records);
}

fn check_against(name: &str, case: &Case, records: &[DetectionRecord]) {
    let dets: Vec<Detection> = case
        .dets
        .iter()
        .map(|d| Detection {
            image_id: d.image,
            label: d.cls,
            bbox: pixels(d.bbox),
            score: d.score,
        })
        .collect();
    for (rule, want, want_map) in [
        (ApRule::ElevenPoint, &case.ap07, case.map07),
        (ApRule::Area, &case.ap_area, case.map_area),
    ] {
        let got = voc_map(records, &dets, case.num_classes, rule).unwrap();
        assert_eq!(got.per_class.len(), want.len());
        for (c, (g, w)) in got.per_class.iter().zip(want).enumerate() {
            match (g, w) {
                (Some(g), Some(w)) => assert!(
                    (g - w).abs() < 1e-9,
                    "{name} {rule:?} class {c}: {g} vs {w}"
                ),
                _ => assert_eq!(g, w, "{name} {rule:?} class {c}"),
            }
        }
        assert!(
            (got.map - want_map).abs() < 1e-9,
            "{name} {rule:?}: {} vs {want_map}",
            got.map
        );
    }
}

#[test]
fn plain_case_matches_voc_eval() {
    check("plain");
}

#[test]
fn difficult_objects_match_voc_eval() {
    check("difficult");
}

#[test]
fn class_without_ground_truth_is_left_out() {
    check("absent_class");
}

#[test]
fn crowded_images_match_voc_eval() {
    check("crowded");
}

#[test]
fn unknown_image_is_an_error() {
    let dets = [Detection {
        image_id: 7,
        label: 0,
        bbox: BoxXyxy::new(0.0, 0.0, 1.0, 1.0),
        score: 1.0,
    }];
    let err = voc_map(&[], &dets, 1, ApRule::Area)
        .unwrap_err()
        .to_string();
    assert!(err.contains("image 7"), "{err}");
}

/// The same case written as a VOCdevkit (XML annotations, image list) and read back by
/// the VOC reader: its box conversion and difficult flags give voc_eval's numbers.
#[test]
fn devkit_on_disk_matches_voc_eval() {
    let case = &cases()["difficult"];
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("VOC2007");
    for d in ["Annotations", "JPEGImages", "ImageSets/Main"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let mut list = String::new();
    for im in &case.images {
        let objects: String = im
            .objects
            .iter()
            .map(|o| {
                let [x1, y1, x2, y2] = o.bbox;
                format!(
                    "<object><name>{}</name><difficult>{}</difficult><bndbox><xmin>{x1}</xmin>\
                     <ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>",
                    VOC_CLASSES[o.cls], o.difficult as u8
                )
            })
            .collect();
        let xml = format!(
            "<annotation><size><width>{}</width><height>{}</height><depth>3</depth></size>\
             {objects}</annotation>",
            im.width, im.height
        );
        let id = format!("{:06}", im.id);
        std::fs::write(root.join(format!("Annotations/{id}.xml")), xml).unwrap();
        std::fs::write(root.join(format!("JPEGImages/{id}.jpg")), b"").unwrap();
        list.push_str(&id);
        list.push('\n');
    }
    std::fs::write(root.join("ImageSets/Main/test.txt"), list).unwrap();
    let ds = load_voc(dir.path(), "2007", "test", &voc_classes()).unwrap();
    assert_eq!(
        ds.records.iter().map(|r| r.image_id).collect::<Vec<_>>(),
        (0..case.images.len() as u64).collect::<Vec<_>>()
    );
    let mut records = ds.records;
    for r in &mut records {
        r.image = Default::default();
    }
    // Same records as built in memory, up to the image paths.
    let mut expected = records_of(case);
    for r in &mut expected {
        r.image = Default::default();
    }
    assert_eq!(records, expected);
    check_against("difficult (on disk)", case, &records);
}
