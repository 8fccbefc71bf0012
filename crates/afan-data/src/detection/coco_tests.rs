use super::*;
use serde_json::json;
use std::fs;

/// An instances file in the official layout (`annotations/instances_val.json`, images in
/// `val/`), with files for every image.
fn write_coco(root: &Path, value: serde_json::Value) -> PathBuf {
    fs::create_dir_all(root.join("annotations")).unwrap();
    fs::create_dir_all(root.join("val")).unwrap();
    for img in value["images"].as_array().unwrap() {
        fs::write(
            root.join("val").join(img["file_name"].as_str().unwrap()),
            b"jpeg",
        )
        .unwrap();
    }
    let path = root.join("annotations/instances_val.json");
    fs::write(&path, value.to_string()).unwrap();
    path
}

fn instances() -> serde_json::Value {
    json!({
        "images": [
            {"id": 42, "file_name": "a.jpg", "width": 100, "height": 80},
            {"id": 7, "file_name": "b.jpg", "width": 50, "height": 50},
            {"id": 9, "file_name": "c.jpg", "width": 50, "height": 50}
        ],
        "annotations": [
            {"id": 1, "image_id": 42, "category_id": 18, "bbox": [10, 20, 30, 40], "area": 900, "iscrowd": 0},
            {"id": 2, "image_id": 42, "category_id": 1, "bbox": [0, 0, 100, 80], "area": 5000, "iscrowd": 1},
            {"id": 3, "image_id": 42, "category_id": 1, "bbox": [5, 5, 0, 10], "area": 0, "iscrowd": 0},
            {"id": 4, "image_id": 9, "category_id": 1, "bbox": [1, 1, 2, 2], "area": 4, "iscrowd": 1}
        ],
        "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}]
    })
}

#[test]
fn training_set_maps_categories_and_keeps_crowds_apart() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_coco(dir.path(), instances());
    let inst = CocoInstances::read(&path).unwrap();
    let image_dir = default_image_dir(&path).unwrap();
    assert_eq!(image_dir, dir.path().join("val"));
    let ds = inst.to_dataset(&path, &image_dir).unwrap();
    // Ascending category ids: person (1) -> 0, dog (18) -> 1.
    assert_eq!(ds.class_names, vec!["person", "dog"]);
    // Image 7 has no annotation, image 9 only a crowd: both left out of training.
    assert_eq!(ds.len(), 1);
    let r = &ds.records[0];
    assert_eq!(r.image_id, 42);
    assert_eq!(r.boxes, vec![BoxXyxy::new(10.0, 20.0, 40.0, 60.0)]);
    assert_eq!(r.labels, vec![1]);
    assert_eq!(r.crowd, vec![BoxXyxy::new(0.0, 0.0, 100.0, 80.0)]);
    // The zero-width box is skipped and counted.
    assert_eq!(ds.skipped_boxes, 1);
    // The evaluation set keeps every listed image, in file order: COCOeval scores them all.
    let eval = inst.to_eval_dataset(&path, &image_dir).unwrap();
    let ids: Vec<u64> = eval.records.iter().map(|r| r.image_id).collect();
    assert_eq!(ids, vec![42, 7, 9]);
    assert!(eval.records[1].boxes.is_empty() && eval.records[1].crowd.is_empty());
    assert_eq!(
        eval.records[2].crowd,
        vec![BoxXyxy::new(1.0, 1.0, 3.0, 3.0)]
    );
    assert_eq!(eval.records[0], ds.records[0]);
    // Evaluation keeps everything, with the file's own ids and areas.
    let gt = inst.ground_truth();
    assert_eq!(gt.image_ids, vec![42, 7, 9]);
    assert_eq!(gt.annotations.len(), 4);
    assert_eq!(gt.annotations[1].area, 5000.0);
    assert!(gt.annotations[1].iscrowd);
}

fn read_error(value: serde_json::Value) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write_coco(dir.path(), value);
    match CocoInstances::read(&path) {
        Err(e) => e.to_string(),
        Ok(inst) => inst
            .to_dataset(&path, &dir.path().join("val"))
            .unwrap_err()
            .to_string(),
    }
}

#[test]
fn unknown_category_and_image_are_errors() {
    let mut v = instances();
    v["annotations"][2]["category_id"] = json!(5);
    let msg = read_error(v);
    assert!(
        msg.contains("instances_val.json") && msg.contains("annotations[2].category_id"),
        "{msg}"
    );
    let mut v = instances();
    v["annotations"][0]["image_id"] = json!(1234);
    let msg = read_error(v);
    assert!(
        msg.contains("annotations[0].image_id") && msg.contains("1234"),
        "{msg}"
    );
}

#[test]
fn box_outside_the_image_is_an_error() {
    let mut v = instances();
    v["annotations"][0]["bbox"] = json!([90, 20, 30, 40]);
    let msg = read_error(v);
    assert!(
        msg.contains("annotations[0].bbox") && msg.contains("100x80"),
        "{msg}"
    );
}

#[test]
fn malformed_json_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instances_x.json");
    fs::write(&path, "{\"images\": [\n{\"id\": \"one\"}]}").unwrap();
    let msg = CocoInstances::read(&path).unwrap_err().to_string();
    assert!(
        msg.contains("instances_x.json") && msg.contains("line 2"),
        "{msg}"
    );
}

#[test]
fn missing_image_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_coco(dir.path(), instances());
    fs::remove_file(dir.path().join("val/a.jpg")).unwrap();
    let inst = CocoInstances::read(&path).unwrap();
    let msg = inst
        .to_dataset(&path, &dir.path().join("val"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("a.jpg") && msg.contains("images[0]"), "{msg}");
}

#[test]
fn results_are_checked_against_the_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let gt = CocoInstances::read(&write_coco(dir.path(), instances()))
        .unwrap()
        .ground_truth();
    let res = dir.path().join("res.json");
    fs::write(
        &res,
        json!([{"image_id": 7, "category_id": 18, "bbox": [1, 2, 3, 4], "score": 0.5}]).to_string(),
    )
    .unwrap();
    let dets = read_results(&res, &gt).unwrap();
    assert_eq!(dets[0].bbox, [1.0, 2.0, 3.0, 4.0]);
    fs::write(
        &res,
        json!([{"image_id": 7, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.5}]).to_string(),
    )
    .unwrap();
    let msg = read_results(&res, &gt).unwrap_err().to_string();
    assert!(
        msg.contains("res.json") && msg.contains("[0].category_id"),
        "{msg}"
    );
}

#[test]
fn written_results_read_back_with_category_ids() {
    let dir = tempfile::tempdir().unwrap();
    let inst = CocoInstances::read(&write_coco(dir.path(), instances())).unwrap();
    let det = Detection {
        image_id: 42,
        label: 1, // dog, category 18
        bbox: BoxXyxy::new(1.0, 2.0, 4.0, 8.0),
        score: 0.25,
    };
    let res = dir.path().join("detections.json");
    let result = CocoResult::from_detection(&det, &inst.label_map()).unwrap();
    write_results(&res, &[result]).unwrap();
    let bad = Detection {
        label: 2,
        ..det.clone()
    };
    assert!(CocoResult::from_detection(&bad, &inst.label_map()).is_err());
    let back = read_results(&res, &inst.ground_truth()).unwrap();
    assert_eq!(
        back,
        vec![DetBox {
            image_id: 42,
            category_id: 18,
            bbox: [1.0, 2.0, 3.0, 6.0],
            score: 0.25
        }]
    );
}
