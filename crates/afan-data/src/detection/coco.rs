//! COCO: `annotations/instances_*.json` and result files, read with serde_json.
//!
//! One reader serves both training (a [`DetectionDataset`] with contiguous labels)
//! and evaluation (a [`CocoGroundTruth`] with the file's own ids, as pycocotools
//! uses them). Result files are the official list of
//! `{image_id, category_id, bbox: [x, y, w, h], score}`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::boxes::BoxXyxy;
use super::eval::coco_eval::{CocoGroundTruth, DetBox, GtBox};
use super::eval::voc_map::Detection;
use super::record::{DetectionDataset, DetectionRecord, check_box};
use crate::DataError;

/// `images[]` of an instances file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct CocoImage {
    /// Image id.
    pub id: u64,
    /// File name inside the image folder (needed for training only).
    #[serde(default)]
    pub file_name: String,
    /// Width in pixels (needed for training only).
    #[serde(default)]
    pub width: u32,
    /// Height in pixels (needed for training only).
    #[serde(default)]
    pub height: u32,
}

/// `annotations[]` of an instances file (segmentations are not read).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct CocoAnnotation {
    /// Annotation id.
    pub id: u64,
    /// Image it belongs to.
    pub image_id: u64,
    /// Category id.
    pub category_id: u64,
    /// `[x, y, w, h]`.
    pub bbox: [f64; 4],
    /// Object area (mask area in COCO); when absent, the box area.
    #[serde(default)]
    pub area: Option<f64>,
    /// 1 for a crowd region.
    #[serde(default)]
    pub iscrowd: u8,
}

/// `categories[]` of an instances file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct CocoCategory {
    /// Category id (COCO's 80 ids run from 1 to 90 with gaps).
    pub id: u64,
    /// Category name.
    pub name: String,
}

/// An instances file, checked: every annotation names a listed image and category.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct CocoInstances {
    /// All images, including those without objects.
    pub images: Vec<CocoImage>,
    /// All annotations.
    #[serde(default)]
    pub annotations: Vec<CocoAnnotation>,
    /// All categories.
    pub categories: Vec<CocoCategory>,
}

/// One entry of a result file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct CocoResult {
    /// Image id, as in the ground truth.
    pub image_id: u64,
    /// Category id, as in the ground truth.
    pub category_id: u64,
    /// `[x, y, w, h]`.
    pub bbox: [f64; 4],
    /// Confidence.
    pub score: f64,
}

/// The image and category ids a file may refer to.
struct KnownIds {
    images: HashSet<u64>,
    categories: HashSet<u64>,
}

impl KnownIds {
    fn new(images: impl Iterator<Item = u64>, categories: impl Iterator<Item = u64>) -> Self {
        KnownIds {
            images: images.collect(),
            categories: categories.collect(),
        }
    }

    /// One clear error for an entry (`entry` names it) with an unknown image or category.
    fn check(&self, path: &Path, entry: &str, image: u64, category: u64) -> Result<(), DataError> {
        if !self.images.contains(&image) {
            return Err(DataError::invalid(
                path,
                format!("{entry}.image_id"),
                format!("{image} is not an image of the ground truth"),
            ));
        }
        if !self.categories.contains(&category) {
            return Err(DataError::invalid(
                path,
                format!("{entry}.category_id"),
                format!("{category} is not a category of the ground truth"),
            ));
        }
        Ok(())
    }
}

/// Parses `path`; `what` names the expected kind of file for the message.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| DataError::malformed(path, format!("not {what}: {e}")))
}

impl CocoInstances {
    /// Reads and checks an instances file.
    pub fn read(path: &Path) -> Result<Self, DataError> {
        let inst: CocoInstances = read_json(path, "a COCO instances file")?;
        let ids = KnownIds::new(
            inst.images.iter().map(|i| i.id),
            inst.categories.iter().map(|c| c.id),
        );
        for (i, a) in inst.annotations.iter().enumerate() {
            ids.check(
                path,
                &format!("annotations[{i}]"),
                a.image_id,
                a.category_id,
            )?;
        }
        Ok(inst)
    }

    /// The ground truth as pycocotools evaluates it (boxes as given, degenerate or not).
    pub fn ground_truth(&self) -> CocoGroundTruth {
        CocoGroundTruth {
            image_ids: self.images.iter().map(|i| i.id).collect(),
            category_ids: self.categories.iter().map(|c| c.id).collect(),
            annotations: self
                .annotations
                .iter()
                .map(|a| GtBox {
                    image_id: a.image_id,
                    category_id: a.category_id,
                    bbox: a.bbox,
                    area: a.area.unwrap_or(a.bbox[2] * a.bbox[3]),
                    iscrowd: a.iscrowd != 0,
                })
                .collect(),
        }
    }

    /// Category ids in ascending order: label `k` is the `k`-th (Detectron's mapping).
    pub fn label_map(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.categories.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids
    }

    /// A training set: images under `image_dir`, labels contiguous in ascending
    /// category id, crowd boxes kept apart, degenerate boxes skipped and counted,
    /// and (as in Detectron/torchvision training) images without any non-crowd
    /// object left out. `path` is the instances file, for messages.
    pub fn to_dataset(&self, path: &Path, image_dir: &Path) -> Result<DetectionDataset, DataError> {
        self.records(path, image_dir, false)
    }

    /// An evaluation set: as [`Self::to_dataset`] but with every listed image, objects or
    /// not, because COCOeval scores every image id of the ground truth and a detection on
    /// an image without objects is a false positive there.
    pub fn to_eval_dataset(
        &self,
        path: &Path,
        image_dir: &Path,
    ) -> Result<DetectionDataset, DataError> {
        self.records(path, image_dir, true)
    }

    fn records(
        &self,
        path: &Path,
        image_dir: &Path,
        keep_empty: bool,
    ) -> Result<DetectionDataset, DataError> {
        let ids = self.label_map();
        let label_of: HashMap<u64, usize> = ids.iter().enumerate().map(|(k, &c)| (c, k)).collect();
        let name_of: HashMap<u64, &str> = self
            .categories
            .iter()
            .map(|c| (c.id, c.name.as_str()))
            .collect();
        let mut by_image: HashMap<u64, Vec<(usize, &CocoAnnotation)>> = HashMap::new();
        for (i, a) in self.annotations.iter().enumerate() {
            by_image.entry(a.image_id).or_default().push((i, a));
        }
        let mut records = Vec::new();
        let mut skipped = 0;
        for (n, img) in self.images.iter().enumerate() {
            if img.file_name.is_empty() || img.width == 0 || img.height == 0 {
                return Err(DataError::invalid(
                    path,
                    format!("images[{n}]"),
                    "training needs file_name, width and height",
                ));
            }
            let mut rec = DetectionRecord {
                image: image_dir.join(&img.file_name),
                image_id: img.id,
                width: img.width,
                height: img.height,
                boxes: vec![],
                labels: vec![],
                difficult: vec![],
                crowd: vec![],
            };
            for &(i, a) in by_image.get(&img.id).map_or(&[][..], |v| v) {
                let field = format!("annotations[{i}].bbox");
                let Some(b) = check_box(
                    BoxXyxy::from_xywh(a.bbox),
                    img.width,
                    img.height,
                    path,
                    &field,
                )?
                else {
                    skipped += 1;
                    continue;
                };
                if a.iscrowd != 0 {
                    rec.crowd.push(b);
                } else {
                    let Some(&label) = label_of.get(&a.category_id) else {
                        return Err(DataError::invalid(
                            path,
                            format!("annotations[{i}].category_id"),
                            format!("{} is not listed in categories", a.category_id),
                        ));
                    };
                    rec.boxes.push(b);
                    rec.labels.push(label);
                    rec.difficult.push(false);
                }
            }
            if rec.boxes.is_empty() && !keep_empty {
                continue;
            }
            if !rec.image.is_file() {
                return Err(DataError::MissingFile {
                    path: rec.image,
                    hint: format!("listed as images[{n}] in {}", path.display()),
                });
            }
            records.push(rec);
        }
        Ok(DetectionDataset {
            class_names: ids.iter().map(|c| name_of[c].to_string()).collect(),
            records,
            skipped_boxes: skipped,
        })
    }
}

/// Reads a result file and checks it against the ground truth: pycocotools (and
/// we) reject an empty list and detections on images the ground truth lacks; a
/// category the ground truth lacks is rejected too, where pycocotools would drop
/// those detections silently.
pub fn read_results(path: &Path, gt: &CocoGroundTruth) -> Result<Vec<DetBox>, DataError> {
    let results: Vec<CocoResult> = read_json(
        path,
        "a COCO result list [{image_id, category_id, bbox, score}]",
    )?;
    if results.is_empty() {
        return Err(DataError::invalid(
            path,
            "[]",
            "the result list is empty; expected at least one {image_id, category_id, bbox, score}",
        ));
    }
    let ids = KnownIds::new(
        gt.image_ids.iter().copied(),
        gt.category_ids.iter().copied(),
    );
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            ids.check(path, &format!("[{i}]"), r.image_id, r.category_id)?;
            Ok(DetBox {
                image_id: r.image_id,
                category_id: r.category_id,
                bbox: r.bbox,
                score: r.score,
            })
        })
        .collect()
}

impl CocoResult {
    /// A detection in contiguous labels (original image coordinates), with its label
    /// mapped back to the category id by `label_map` (from [`CocoInstances::label_map`]).
    pub fn from_detection(d: &Detection, label_map: &[u64]) -> Result<Self, DataError> {
        let Some(&category_id) = label_map.get(d.label) else {
            return Err(DataError::Inconsistent(format!(
                "detection of label {} but only {} categories",
                d.label,
                label_map.len()
            )));
        };
        Ok(CocoResult {
            image_id: d.image_id,
            category_id,
            bbox: d.bbox.to_xywh(),
            score: d.score,
        })
    }
}

/// Writes a result file in the official format (what `afan eval-detections` and
/// pycocotools read).
pub fn write_results(path: &Path, results: &[CocoResult]) -> Result<(), DataError> {
    let text = serde_json::to_string(results).map_err(|e| DataError::malformed(path, e))?;
    std::fs::write(path, text).map_err(|e| DataError::io(path, e))
}

/// Where an instances file keeps its images in the official layout:
/// `annotations/instances_val2017.json` -> `val2017/`.
pub fn default_image_dir(instances: &Path) -> Option<PathBuf> {
    let stem = instances.file_stem()?.to_str()?;
    let split = stem.strip_prefix("instances_")?;
    Some(instances.parent()?.parent()?.join(split))
}

#[cfg(test)]
#[path = "coco_tests.rs"]
mod tests;
