//! Cityscapes fine annotations in the official layout, mapped to the 19 evaluation ("train")
//! ids; every other label id becomes 255.
//!
//! ```text
//! leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
//! gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use super::{LabelMap, SegDataset, SegEntry, require_file};
use crate::error::DataError;

/// The 19 evaluated classes, in train-id order.
pub const CITYSCAPES_CLASSES: [&str; 19] = [
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
];

/// The train id of label id `id` (0..=33) from cityscapesScripts' `labels.py`: 255 for the
/// classes that are not evaluated; `None` past id 33.
pub fn cityscapes_train_id(id: u8) -> Option<u8> {
    const TRAIN_IDS: [u8; 34] = [
        255, 255, 255, 255, 255, 255, 255, // unlabeled .. ground
        0, 1, 255, 255, // road, sidewalk, parking, rail track
        2, 3, 4, 255, 255, 255, // building, wall, fence, guard rail, bridge, tunnel
        5, 255, 6, 7, 8, 9,
        10, // pole, polegroup, traffic light/sign, vegetation, terrain, sky
        11, 12, 13, 14, 15, 255, 255, // person, rider, car, truck, bus, caravan, trailer
        16, 17, 18, // train, motorcycle, bicycle
    ];
    TRAIN_IDS.get(usize::from(id)).copied()
}

fn label_map() -> LabelMap {
    let mut table = [None; 256];
    for (id, slot) in table.iter_mut().enumerate().take(34) {
        *slot = cityscapes_train_id(id as u8);
    }
    table[255] = Some(255);
    LabelMap::table(table, "a Cityscapes label id 0..=33".into())
}

fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut paths = fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|err| DataError::io(dir, err)))
        .collect::<Result<Vec<_>, _>>()?;
    paths.sort();
    Ok(paths)
}

/// Opens split `split` (`train`, `val`) under `root` (the folder holding `leftImg8bit` and
/// `gtFine`). Every image must have its `gtFine_labelIds` mask.
pub fn load_cityscapes(root: &Path, split: &str) -> Result<SegDataset, DataError> {
    let images = root.join("leftImg8bit").join(split);
    if !images.is_dir() {
        return Err(DataError::MissingFile {
            path: images,
            hint: "expected the Cityscapes layout leftImg8bit/<split>/<city>/*_leftImg8bit.png \
                   with gtFine/<split>/<city>/*_gtFine_labelIds.png"
                .into(),
        });
    }
    let mut entries = Vec::new();
    for city in sorted_dir(&images)?.into_iter().filter(|p| p.is_dir()) {
        let city_name = city.file_name().unwrap_or_default().to_owned();
        for image in sorted_dir(&city)? {
            let name = image.file_name().unwrap_or_default().to_string_lossy();
            let Some(stem) = name.strip_suffix("_leftImg8bit.png") else {
                continue;
            };
            let mask = root
                .join("gtFine")
                .join(split)
                .join(&city_name)
                .join(format!("{stem}_gtFine_labelIds.png"));
            let hint = format!("the fine annotation of {}", image.display());
            entries.push(SegEntry {
                mask: require_file(mask, &hint)?,
                image,
            });
        }
    }
    Ok(SegDataset::files(entries, label_map(), &CITYSCAPES_CLASSES))
}
