//! Pascal VOC 2012 segmentation in the devkit layout, optionally with the SBD-augmented training
//! list (`SegmentationClassAug`, 10,582 images) that DeepLab papers train on.
//!
//! ```text
//! VOCdevkit/VOC2012/JPEGImages/<id>.jpg
//! VOCdevkit/VOC2012/SegmentationClass/<id>.png        palette PNG, index = class, 255 = border
//! VOCdevkit/VOC2012/SegmentationClassAug/<id>.png     grayscale PNG (train_aug only)
//! VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval,train_aug}.txt
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use super::{LabelMap, SegDataset, SegEntry, require_file};
use crate::error::DataError;

/// The 21 segmentation labels: background, then the 20 VOC object classes of the detection
/// devkit in their order (label `k` is object class `k - 1`).
pub fn voc_seg_classes() -> Vec<&'static str> {
    std::iter::once("background")
        .chain(crate::detection::voc::VOC_CLASSES)
        .collect()
}

/// `root` may be `VOCdevkit/<folder>`, `VOCdevkit` or the folder holding `VOCdevkit`.
fn voc_root(root: &Path, folder: &str) -> Result<PathBuf, DataError> {
    [
        root.to_path_buf(),
        root.join(folder),
        root.join("VOCdevkit").join(folder),
    ]
    .into_iter()
    .find(|p| p.join("JPEGImages").is_dir())
    .ok_or_else(|| DataError::MissingFile {
        path: root.join("VOCdevkit").join(folder).join("JPEGImages"),
        hint: format!(
            "expected the VOC devkit layout (VOCdevkit/{folder}/JPEGImages, SegmentationClass, \
             ImageSets/Segmentation)"
        ),
    })
}

/// Opens split `split` (`train`, `val`, `trainval`; with `aug`, the training split is
/// `train_aug.txt` with masks from `SegmentationClassAug`). Every listed image and mask must exist.
pub fn load_voc(root: &Path, split: &str, aug: bool) -> Result<SegDataset, DataError> {
    let classes: Vec<String> = voc_seg_classes().iter().map(|s| s.to_string()).collect();
    load_voc_folder(root, "VOC2012", split, aug, &classes)
}

/// [`load_voc`] for any folder in the VOC layout (`VOC2012`, or a custom set's own name) with
/// its own labels: `classes[k]` is mask value `k` (background first), 255 is ignored.
pub fn load_voc_folder(
    root: &Path,
    folder: &str,
    split: &str,
    aug: bool,
    classes: &[String],
) -> Result<SegDataset, DataError> {
    if classes.is_empty() || classes.len() > 255 {
        return Err(DataError::Inconsistent(format!(
            "{} segmentation classes; expected 1 to 255 (mask values 0..=254, 255 ignored)",
            classes.len()
        )));
    }
    let voc = voc_root(root, folder)?;
    let (list_name, mask_dir) = if aug {
        (format!("{split}_aug.txt"), "SegmentationClassAug")
    } else {
        (format!("{split}.txt"), "SegmentationClass")
    };
    let list = require_file(
        voc.join("ImageSets/Segmentation").join(&list_name),
        "the split list of the VOC devkit (train_aug.txt comes with the SBD augmentation)",
    )?;
    let text = fs::read_to_string(&list).map_err(|e| DataError::io(&list, e))?;
    let hint = format!("listed in {}", list.display());
    let entries = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|id| {
            // train_aug lists of some distributions hold `/JPEGImages/x.jpg /SegmentationClassAug/x.png`.
            let id = id.split_whitespace().next().unwrap_or(id);
            let stem = Path::new(id)
                .file_stem()
                .map_or(id.into(), |s| s.to_string_lossy());
            Ok(SegEntry {
                image: require_file(voc.join("JPEGImages").join(format!("{stem}.jpg")), &hint)?,
                mask: require_file(voc.join(mask_dir).join(format!("{stem}.png")), &hint)?,
            })
        })
        .collect::<Result<Vec<_>, DataError>>()?;
    let names: Vec<&str> = classes.iter().map(String::as_str).collect();
    Ok(SegDataset::files(
        entries,
        LabelMap::identity(classes.len()),
        &names,
    ))
}
