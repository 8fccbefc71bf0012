//! Detection data the end-to-end tests write: generated `shapes-det` images as a VOCdevkit and as
//! a COCO folder, and a detector configuration small enough for seconds per step in a debug build.

#![allow(dead_code)] // each test file uses the part it needs

use afan_data::detection::voc::VOC_CLASSES;
use afan_data::detection::{DetectionSample, shapes_det};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::Path;

/// A generated sample as a JPEG file.
fn save_jpeg(s: &DetectionSample, path: &Path) {
    let (w, h) = (s.width, s.height);
    let mut rgb = vec![0u8; 3 * w * h];
    for (p, px) in rgb.chunks_mut(3).enumerate() {
        for (c, v) in px.iter_mut().enumerate() {
            *v = (s.pixels[c * w * h + p] * 255.0).round() as u8;
        }
    }
    image::save_buffer(
        path,
        &rgb,
        w as u32,
        h as u32,
        image::ExtendedColorType::Rgb8,
    )
    .unwrap();
}

/// `shapes-det` images as `VOC2007` (JPEG images, XML annotations with 1-based pixel corners,
/// shape k named after VOC class k); `trainval` holds `train` images, `test` the rest.
pub fn write_devkit(devkit: &Path, train: usize, test: usize) {
    let root = devkit.join("VOC2007");
    for d in ["Annotations", "JPEGImages", "ImageSets/Main"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let (a, b) = shapes_det(train, test, 3);
    for (split, samples, offset) in [("trainval", a, 0), ("test", b, train)] {
        let mut list = String::new();
        for (i, s) in samples.iter().enumerate() {
            let id = format!("{:06}", offset + i);
            let (w, h) = (s.width, s.height);
            save_jpeg(s, &root.join("JPEGImages").join(format!("{id}.jpg")));
            let mut xml = format!(
                "<annotation><folder>VOC2007</folder><filename>{id}.jpg</filename>\
                 <size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
            );
            for (bx, &l) in s.boxes.iter().zip(&s.labels) {
                write!(
                    xml,
                    "<object><name>{}</name><difficult>0</difficult><bndbox><xmin>{}</xmin>\
                     <ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>",
                    VOC_CLASSES[l],
                    bx.x1 + 1.0,
                    bx.y1 + 1.0,
                    bx.x2,
                    bx.y2
                )
                .unwrap();
            }
            xml.push_str("</annotation>");
            std::fs::write(root.join("Annotations").join(format!("{id}.xml")), xml).unwrap();
            list.push_str(&format!("{id}\n"));
        }
        std::fs::write(root.join(format!("ImageSets/Main/{split}.txt")), list).unwrap();
    }
}

/// A ResNet-18 detector small enough for seconds per step in a debug build; the images keep
/// their 64x64 size.
pub const TINY: &str = r#"
dataset = "voc"
method = "baseline"
batch_size = 2
iterations = 6
eval_every = 3
hflip = false
resize = { min_size = 64, max_size = 64 }
[optim]
lr = 0.02
[schedule]
steps = [1000]
warmup_iters = 0
[detector]
backbone = "resnet18"
frozen_stages = 0
# From scratch with frozen batch norm the features are unnormalised: the release's PyTorch-default
# head init (for ImageNet backbones) makes the first steps diverge (loss 2.16 -> 2.90 in six).
head_init = "normal"
[detector.rpn]
mid_channels = 32
batch_per_image = 32
pre_nms_train = 100
post_nms_train = 32
pre_nms_test = 100
post_nms_test = 16
[detector.rpn.anchors]
base_size = 16
scales = [1.0, 2.0]
ratios = [0.5, 1.0, 2.0]
[detector.roi]
batch_per_image = 16
[detector.roi.pool]
output_size = [2, 2]
"#;

/// `shapes-det` as COCO 2017 (`annotations/instances_<split>.json`, `<split>/*.jpg`) with the
/// category ids 1, 2, 3, 5 (COCO's ids have gaps; labels are contiguous inside). The last
/// `val2017` image is listed without annotations (COCO has such images; COCOeval scores them).
pub fn write_coco(root: &Path, train: usize, test: usize) {
    let ids = [1u64, 2, 3, 5];
    let (a, b) = shapes_det(train, test, 4);
    std::fs::create_dir_all(root.join("annotations")).unwrap();
    for (split, samples) in [("train2017", a), ("val2017", b)] {
        std::fs::create_dir_all(root.join(split)).unwrap();
        let (mut images, mut anns) = (vec![], vec![]);
        for (i, smp) in samples.iter().enumerate() {
            let name = format!("{:012}.jpg", i + 1);
            let (w, h) = (smp.width, smp.height);
            save_jpeg(smp, &root.join(split).join(&name));
            images
                .push(serde_json::json!({"id": i + 1, "file_name": name, "width": w, "height": h}));
            if split == "val2017" && i + 1 == samples.len() {
                continue;
            }
            for (bx, &l) in smp.boxes.iter().zip(&smp.labels) {
                anns.push(serde_json::json!({
                    "id": anns.len() + 1, "image_id": i + 1, "category_id": ids[l],
                    "bbox": bx.to_xywh(), "area": bx.area(), "iscrowd": 0
                }));
            }
        }
        let cats: Vec<Value> = ids
            .iter()
            .zip(["circle", "square", "triangle", "cross"])
            .map(|(id, n)| serde_json::json!({"id": id, "name": n}))
            .collect();
        let doc = serde_json::json!({"images": images, "annotations": anns, "categories": cats});
        std::fs::write(
            root.join(format!("annotations/instances_{split}.json")),
            doc.to_string(),
        )
        .unwrap();
    }
}
