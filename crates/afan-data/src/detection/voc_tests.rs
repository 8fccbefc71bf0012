use super::*;
use std::fs;

const OBJ_DOG: &str = "<object><name>dog</name><pose>Left</pose><truncated>0</truncated>\
    <difficult>0</difficult><bndbox><xmin>48</xmin><ymin>240</ymin><xmax>195</xmax>\
    <ymax>371</ymax></bndbox></object>";
const OBJ_PERSON_DIFFICULT: &str = "<object><name>person</name><difficult>1</difficult>\
    <bndbox><xmin>8</xmin><ymin>12</ymin><xmax>352</xmax><ymax>498</ymax></bndbox>\
    <part><name>head</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax>\
    </bndbox></part></object>";

fn xml(objects: &[&str]) -> String {
    format!(
        "<annotation><folder>VOC2007</folder><filename>x.jpg</filename>\
         <size><width>353</width><height>500</height><depth>3</depth></size>\
         <segmented>0</segmented>{}</annotation>",
        objects.concat()
    )
}

/// Writes `VOC<year>` with the given `(id, xml)` annotations, all listed in `split`.
fn write_year(devkit: &Path, year: &str, split: &str, items: &[(&str, String)]) {
    let root = devkit.join(format!("VOC{year}"));
    for d in ["Annotations", "JPEGImages", "ImageSets/Main"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    let mut list = String::new();
    for (id, text) in items {
        fs::write(root.join("Annotations").join(format!("{id}.xml")), text).unwrap();
        fs::write(root.join("JPEGImages").join(format!("{id}.jpg")), b"jpeg").unwrap();
        list.push_str(&format!("{id}\n"));
    }
    fs::write(
        root.join("ImageSets/Main").join(format!("{split}.txt")),
        list,
    )
    .unwrap();
}

#[test]
fn reads_boxes_classes_and_difficult() {
    let dir = tempfile::tempdir().unwrap();
    write_year(
        dir.path(),
        "2007",
        "test",
        &[
            ("000001", xml(&[OBJ_DOG, OBJ_PERSON_DIFFICULT])),
            ("000002", xml(&[])),
        ],
    );
    let ds = load_voc(dir.path(), "2007", "test", &voc_classes()).unwrap();
    assert_eq!(ds.len(), 2);
    let r = &ds.records[0];
    assert_eq!((r.width, r.height), (353, 500));
    assert!(r.image.ends_with("VOC2007/JPEGImages/000001.jpg"));
    // xmin/ymin minus one: pixels 48..=195 (1-based) span [47, 195).
    assert_eq!(r.boxes[0], BoxXyxy::new(47.0, 239.0, 195.0, 371.0));
    assert_eq!(r.labels, vec![11, 14]); // dog, person
    assert_eq!(r.difficult, vec![false, true]);
    assert!(ds.records[1].boxes.is_empty());
    assert_eq!(ds.skipped_boxes, 0);
}

#[test]
fn voc07_plus_12_concatenates_and_renumbers() {
    let dir = tempfile::tempdir().unwrap();
    write_year(
        dir.path(),
        "2007",
        "trainval",
        &[("000005", xml(&[OBJ_DOG]))],
    );
    write_year(
        dir.path(),
        "2012",
        "trainval",
        &[
            ("2008_000002", xml(&[OBJ_DOG])),
            ("2008_000003", xml(&[OBJ_DOG])),
        ],
    );
    let sets = voc_preset("voc07+12-trainval").unwrap();
    let ds = load_voc_sets(dir.path(), sets, &voc_classes()).unwrap();
    assert_eq!(ds.len(), 3);
    let ids: Vec<u64> = ds.records.iter().map(|r| r.image_id).collect();
    assert_eq!(ids, vec![0, 1, 2]);
    assert!(
        ds.records[2]
            .image
            .ends_with("VOC2012/JPEGImages/2008_000003.jpg")
    );
}

#[test]
fn custom_classes() {
    let dir = tempfile::tempdir().unwrap();
    write_year(
        dir.path(),
        "2007",
        "train",
        &[("a", xml(&[OBJ_PERSON_DIFFICULT, OBJ_DOG]))],
    );
    let classes = vec!["person".to_string(), "dog".to_string()];
    let ds = load_voc(dir.path(), "2007", "train", &classes).unwrap();
    assert_eq!(ds.records[0].labels, vec![0, 1]);
    assert_eq!(ds.class_names, classes);
}

fn error_of(items: &[(&str, String)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_year(dir.path(), "2007", "test", items);
    load_voc(dir.path(), "2007", "test", &voc_classes())
        .unwrap_err()
        .to_string()
}

#[test]
fn malformed_xml_names_the_file() {
    let msg = error_of(&[("000001", "<annotation><size><width>3".into())]);
    assert!(msg.contains("000001.xml"), "{msg}");
    let msg = error_of(&[("000002", "<annotation></annotation>".into())]);
    assert!(
        msg.contains("000002.xml") && msg.contains("`size`"),
        "{msg}"
    );
    let no_box = xml(&["<object><name>dog</name></object>"]);
    let msg = error_of(&[("000008", no_box)]);
    assert!(
        msg.contains("000008.xml") && msg.contains("`bndbox`"),
        "{msg}"
    );
    let bad_number = xml(&[&OBJ_DOG.replace(">48<", ">forty<")]);
    let msg = error_of(&[("000009", bad_number)]);
    assert!(msg.contains("000009.xml"), "{msg}");
}

#[test]
fn unknown_class_names_the_object() {
    let msg = error_of(&[("000003", xml(&[OBJ_DOG, &OBJ_DOG.replace("dog", "dragon")]))]);
    assert!(
        msg.contains("000003.xml") && msg.contains("object[1]/name") && msg.contains("dragon"),
        "{msg}"
    );
}

#[test]
fn box_outside_the_image_is_an_error() {
    let msg = error_of(&[("000004", xml(&[&OBJ_DOG.replace(">195<", ">900<")]))]);
    assert!(
        msg.contains("000004.xml") && msg.contains("object[0]/bndbox") && msg.contains("353x500"),
        "{msg}"
    );
}

#[test]
fn degenerate_box_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let flipped = OBJ_DOG.replace(">48<", ">300<"); // xmin 300 > xmax 195
    write_year(
        dir.path(),
        "2007",
        "test",
        &[("000006", xml(&[&flipped, OBJ_DOG]))],
    );
    let ds = load_voc(dir.path(), "2007", "test", &voc_classes()).unwrap();
    assert_eq!(ds.skipped_boxes, 1);
    assert_eq!(ds.records[0].boxes.len(), 1);
}

#[test]
fn listed_but_missing_image_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_year(dir.path(), "2007", "test", &[("000007", xml(&[OBJ_DOG]))]);
    fs::remove_file(dir.path().join("VOC2007/JPEGImages/000007.jpg")).unwrap();
    let msg = load_voc(dir.path(), "2007", "test", &voc_classes())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("000007.jpg") && msg.contains("test.txt"),
        "{msg}"
    );
    let msg = load_voc(dir.path(), "2007", "val", &voc_classes())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("ImageSets/Main/val.txt"), "{msg}");
}

#[test]
fn training_view_drops_difficult_objects_and_empty_images() {
    let dir = tempfile::tempdir().unwrap();
    write_year(
        dir.path(),
        "2007",
        "trainval",
        &[
            ("a", xml(&[OBJ_PERSON_DIFFICULT, OBJ_DOG])),
            ("b", xml(&[OBJ_PERSON_DIFFICULT])),
            ("c", xml(&[])),
        ],
    );
    let ds = load_voc(dir.path(), "2007", "trainval", &voc_classes()).unwrap();
    assert_eq!(ds.len(), 3);
    let train = ds.for_training();
    assert_eq!(train.len(), 1);
    assert_eq!(train.records[0].labels, vec![11]);
    assert_eq!(
        train.records[0].boxes,
        vec![BoxXyxy::new(47.0, 239.0, 195.0, 371.0)]
    );
    assert_eq!(train.records[0].difficult, vec![false]);
}
