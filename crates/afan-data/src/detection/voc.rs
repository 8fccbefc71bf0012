//! Pascal VOC in the devkit layout:
//! `VOCdevkit/VOC<year>/{Annotations/<id>.xml, JPEGImages/<id>.jpg, ImageSets/Main/<split>.txt}`.
//!
//! Annotations are read with quick-xml's serde support. Boxes are converted from
//! VOC's 1-based inclusive pixels to continuous corners by subtracting 1 from
//! `xmin`/`ymin` (see [`crate::detection::boxes`]). `difficult` objects are kept
//! and flagged: the VOC metric needs them. Any class list can be given, so other
//! datasets in VOC format load the same way; [`VOC_CLASSES`] is the default. Every
//! listed image is kept, with or without objects (evaluation needs them all);
//! [`DetectionDataset::for_training`] gives the training view.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Deserialize;

use super::boxes::BoxXyxy;
use super::record::{DetectionDataset, DetectionRecord, check_box};
use crate::DataError;

/// The 20 VOC classes in the devkit's (alphabetical) order: label `k` is the `k`-th.
pub const VOC_CLASSES: [&str; 20] = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
];

/// The sets of the paper's VOC experiments: `(year, split)` pairs to concatenate.
pub fn voc_preset(name: &str) -> Option<&'static [(&'static str, &'static str)]> {
    match name {
        "voc07-trainval" => Some(&[("2007", "trainval")]),
        "voc07-test" => Some(&[("2007", "test")]),
        "voc12-trainval" => Some(&[("2012", "trainval")]),
        "voc07+12-trainval" => Some(&[("2007", "trainval"), ("2012", "trainval")]),
        _ => None,
    }
}

#[derive(Deserialize)]
struct XmlAnnotation {
    size: XmlSize,
    #[serde(rename = "object", default)]
    objects: Vec<XmlObject>,
}

#[derive(Deserialize)]
struct XmlSize {
    width: u32,
    height: u32,
}

#[derive(Deserialize)]
struct XmlObject {
    name: String,
    #[serde(default)]
    difficult: Option<u8>,
    bndbox: XmlBox,
}

#[derive(Deserialize)]
struct XmlBox {
    xmin: f64,
    ymin: f64,
    xmax: f64,
    ymax: f64,
}

/// Reads one annotation file into a record (image path and id filled in by the caller).
fn read_annotation(path: &Path, classes: &[String]) -> Result<(DetectionRecord, usize), DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let ann: XmlAnnotation = quick_xml::de::from_str(&text)
        .map_err(|e| DataError::malformed(path, format!("not a VOC annotation: {e}")))?;
    let (width, height) = (ann.size.width, ann.size.height);
    if width == 0 || height == 0 {
        return Err(DataError::invalid(
            path,
            "size",
            format!("image size {width}x{height}; expected positive width and height"),
        ));
    }
    let mut rec = DetectionRecord {
        image: PathBuf::new(),
        image_id: 0,
        width,
        height,
        boxes: vec![],
        labels: vec![],
        difficult: vec![],
        crowd: vec![],
    };
    let mut skipped = 0;
    for (k, o) in ann.objects.iter().enumerate() {
        let name = o.name.trim();
        let Some(label) = classes.iter().position(|c| c == name) else {
            return Err(DataError::invalid(
                path,
                format!("object[{k}]/name"),
                format!(
                    "unknown class {name:?}; expected one of {}",
                    classes.join(", ")
                ),
            ));
        };
        let b = &o.bndbox;
        let field = format!("object[{k}]/bndbox");
        let bbox = BoxXyxy::from_voc_pixels(b.xmin, b.ymin, b.xmax, b.ymax);
        match check_box(bbox, width, height, path, &field)? {
            Some(bbox) => {
                rec.boxes.push(bbox);
                rec.labels.push(label);
                rec.difficult.push(o.difficult.unwrap_or(0) != 0);
            }
            None => skipped += 1,
        }
    }
    Ok((rec, skipped))
}

/// Image ids of `VOC<year>/ImageSets/Main/<split>.txt` (first column of each line).
fn read_ids(list: &Path) -> Result<Vec<String>, DataError> {
    let text = std::fs::read_to_string(list).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => DataError::MissingFile {
            path: list.to_path_buf(),
            hint: "expected the VOCdevkit layout VOC<year>/ImageSets/Main/<split>.txt".into(),
        },
        _ => DataError::io(list, e),
    })?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// The folder of a VOC set inside a VOCdevkit: `VOC<year>` for a year (`2007`), else the name
/// itself (a custom set in the VOC layout, `MYSET`).
pub fn voc_folder(year: &str) -> String {
    if !year.is_empty() && year.chars().all(|c| c.is_ascii_digit()) {
        format!("VOC{year}")
    } else {
        year.to_string()
    }
}

/// One `(year, split)` of a VOCdevkit folder (the folder holding `VOC2007/` etc.; a `year`
/// that is not a number names the folder itself, see [`voc_folder`]).
/// Image ids are positions in the split.
pub fn load_voc(
    devkit: &Path,
    year: &str,
    split: &str,
    classes: &[String],
) -> Result<DetectionDataset, DataError> {
    let root = devkit.join(voc_folder(year));
    let list = root.join("ImageSets/Main").join(format!("{split}.txt"));
    let ids = read_ids(&list)?;
    let loaded: Vec<(DetectionRecord, usize)> = ids
        .par_iter()
        .enumerate()
        .map(|(i, id)| {
            let xml = root.join("Annotations").join(format!("{id}.xml"));
            let image = root.join("JPEGImages").join(format!("{id}.jpg"));
            for f in [&xml, &image] {
                if !f.is_file() {
                    return Err(DataError::MissingFile {
                        path: f.clone(),
                        hint: format!("image {id:?} is listed in {}", list.display()),
                    });
                }
            }
            let (mut rec, skipped) = read_annotation(&xml, classes)?;
            rec.image = image;
            rec.image_id = i as u64;
            Ok((rec, skipped))
        })
        .collect::<Result<_, _>>()?;
    Ok(DetectionDataset {
        class_names: classes.to_vec(),
        skipped_boxes: loaded.iter().map(|(_, s)| s).sum(),
        records: loaded.into_iter().map(|(r, _)| r).collect(),
    })
}

/// Several `(year, split)` sets concatenated (e.g. VOC07+12 trainval), image ids
/// renumbered to positions in the whole.
pub fn load_voc_sets(
    devkit: &Path,
    sets: &[(&str, &str)],
    classes: &[String],
) -> Result<DetectionDataset, DataError> {
    let mut all = DetectionDataset {
        class_names: classes.to_vec(),
        records: vec![],
        skipped_boxes: 0,
    };
    for (year, split) in sets {
        all = all.concat(load_voc(devkit, year, split, classes)?)?;
    }
    for (i, r) in all.records.iter_mut().enumerate() {
        r.image_id = i as u64;
    }
    Ok(all)
}

/// [`VOC_CLASSES`] as owned strings.
pub fn voc_classes() -> Vec<String> {
    VOC_CLASSES.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
#[path = "voc_tests.rs"]
mod tests;
