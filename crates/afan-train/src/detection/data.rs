//! The detection sets of a run, from the generated set, a VOCdevkit or a COCO folder, and the
//! ground truth each is evaluated against.

use super::config::{DetectionConfig, DetectionDataset as DetDataset};
use crate::error::{Result, TrainError};
use afan_data::DataError;
use afan_data::detection::coco::{
    CocoAnnotation, CocoCategory, CocoImage, CocoInstances, default_image_dir,
};
use afan_data::detection::synthetic::records_of;
use afan_data::detection::voc::{load_voc_sets, voc_classes};
use afan_data::detection::{
    DetectionDataset, DetectionRecord, DetectionSample, DetectionSource, SHAPES_DET_CLASSES,
    shapes_det,
};
use std::path::Path;

type DetectConfig = DetectionConfig;

macro_rules! bail {
    ($($t:tt)*) => { return Err(TrainError::Config(format!($($t)*))) };
}

/// Images in memory (the generated set) or on disk.
pub enum Source {
    /// Generated samples.
    Memory(Vec<DetectionSample>),
    /// Records whose images are decoded on demand.
    Disk(DetectionDataset),
}

impl DetectionSource for Source {
    fn len(&self) -> usize {
        match self {
            Source::Memory(s) => s.len(),
            Source::Disk(d) => d.len(),
        }
    }

    fn size(&self, i: usize) -> (usize, usize) {
        match self {
            Source::Memory(s) => s.as_slice().size(i),
            Source::Disk(d) => d.size(i),
        }
    }

    fn sample(&self, i: usize) -> std::result::Result<DetectionSample, DataError> {
        match self {
            Source::Memory(s) => s.as_slice().sample(i),
            Source::Disk(d) => d.sample(i),
        }
    }
}

/// The evaluation side of a run.
pub struct TestSet {
    /// The images.
    pub source: Source,
    /// Their ground truth (with VOC's `difficult` flags), for the VOC mAP.
    pub records: Vec<DetectionRecord>,
    /// The ground truth as a COCO instances file: the file's own for COCO, a conversion for
    /// VOC and the generated set (category id = label + 1), so the written result file can be
    /// scored by `afan eval-detections`.
    pub instances: CocoInstances,
    /// True for COCO data (report COCO's 12 numbers rather than VOC mAP).
    pub coco: bool,
}

impl TestSet {
    /// Category id of each contiguous label.
    pub fn label_map(&self) -> Vec<u64> {
        self.instances.label_map()
    }
}

/// The class names of a configuration's dataset.
pub fn class_names(config: &DetectConfig) -> Result<Vec<String>> {
    Ok(match config.dataset {
        DetDataset::Synthetic => SHAPES_DET_CLASSES.iter().map(|s| s.to_string()).collect(),
        DetDataset::Voc => config.classes.clone().unwrap_or_else(voc_classes),
        DetDataset::Coco => {
            let i = coco_instances(config, &config.test_set)?;
            let mut c = i.categories.clone();
            c.sort_by_key(|c| c.id);
            c.into_iter().map(|c| c.name).collect()
        }
    })
}

fn data_dir(config: &DetectConfig) -> Result<&Path> {
    let Some(dir) = config.data.as_deref() else {
        bail!("this dataset needs --data (a VOCdevkit or COCO folder)");
    };
    if !dir.is_dir() {
        bail!(
            "--data {}: no such folder (expected a {})",
            dir.display(),
            match config.dataset {
                DetDataset::Coco => "COCO folder with annotations/instances_<split>.json",
                _ => "VOCdevkit folder holding VOC2007/, VOC2012/ or the folders train_sets names",
            }
        );
    }
    Ok(dir)
}

fn voc_sets(sets: &[String]) -> Result<Vec<(&str, &str)>> {
    sets.iter()
        .map(|s| {
            s.split_once(':').ok_or_else(|| {
                TrainError::Config(format!(
                    "VOC set {s:?} must be year:split (e.g. 2007:trainval) or folder:split"
                ))
            })
        })
        .collect()
}

fn coco_instances(config: &DetectConfig, split: &str) -> Result<CocoInstances> {
    let path = data_dir(config)?
        .join("annotations")
        .join(format!("instances_{split}.json"));
    Ok(CocoInstances::read(&path)?)
}

/// A COCO split as a training set (images without objects left out) or, with `eval`, as an
/// evaluation set (every image of the instances file, as COCOeval scores them).
fn coco_set(
    config: &DetectConfig,
    split: &str,
    eval: bool,
) -> Result<(CocoInstances, DetectionDataset)> {
    let inst = coco_instances(config, split)?;
    let path = data_dir(config)?
        .join("annotations")
        .join(format!("instances_{split}.json"));
    let Some(images) = default_image_dir(&path) else {
        bail!("{} does not name its split", path.display());
    };
    let set = if eval {
        inst.to_eval_dataset(&path, &images)?
    } else {
        inst.to_dataset(&path, &images)?
    };
    Ok((inst, set))
}

/// The training images of `config` (difficult VOC objects dropped).
pub fn train_set(config: &DetectConfig, seed: u64) -> Result<Source> {
    let source = match config.dataset {
        DetDataset::Synthetic => {
            let (train, _) = shapes_det(config.synthetic.train, 0, seed);
            Source::Memory(train)
        }
        DetDataset::Voc => {
            let sets = voc_sets(&config.train_sets)?;
            let set = load_voc_sets(data_dir(config)?, &sets, &class_names(config)?)?;
            Source::Disk(set.for_training())
        }
        DetDataset::Coco => {
            let mut all: Option<DetectionDataset> = None;
            for split in &config.train_sets {
                let (_, set) = coco_set(config, split, false)?;
                all = Some(match all {
                    Some(a) => a.concat(set)?,
                    None => set,
                });
            }
            let Some(all) = all else {
                bail!("train_sets is empty");
            };
            Source::Disk(all)
        }
    };
    if source.is_empty() {
        bail!("the training set has no images with objects");
    }
    Ok(source)
}

/// The evaluation images and their ground truth.
pub fn test_set(config: &DetectConfig, seed: u64) -> Result<TestSet> {
    let classes = class_names(config)?;
    let (source, records, instances) = match config.dataset {
        DetDataset::Synthetic => {
            let (_, test) = shapes_det(0, config.synthetic.test, seed);
            let records = records_of(&test);
            let inst = instances_of(&records, &classes);
            (Source::Memory(test), records, inst)
        }
        DetDataset::Voc => {
            let sets = voc_sets(std::slice::from_ref(&config.test_set))?;
            let set = load_voc_sets(data_dir(config)?, &sets, &classes)?;
            let inst = instances_of(&set.records, &classes);
            (Source::Disk(set.clone()), set.records, inst)
        }
        DetDataset::Coco => {
            let (inst, set) = coco_set(config, &config.test_set, true)?;
            (Source::Disk(set.clone()), set.records, inst)
        }
    };
    if source.is_empty() {
        bail!("the evaluation set {:?} has no images", config.test_set);
    }
    Ok(TestSet {
        source,
        records,
        instances,
        coco: config.dataset == DetDataset::Coco,
    })
}

/// VOC-style records as a COCO instances file: category id = label + 1, boxes as `[x, y, w,
/// h]`, and `difficult` objects as crowd regions (COCOeval's way of neither counting nor
/// penalising them, the closest match to VOC's rule).
pub fn instances_of(records: &[DetectionRecord], classes: &[String]) -> CocoInstances {
    let mut annotations = Vec::new();
    for r in records {
        for (k, (b, &l)) in r.boxes.iter().zip(&r.labels).enumerate() {
            annotations.push(CocoAnnotation {
                id: annotations.len() as u64 + 1,
                image_id: r.image_id,
                category_id: l as u64 + 1,
                bbox: b.to_xywh(),
                area: Some(b.area()),
                iscrowd: u8::from(r.difficult.get(k).copied().unwrap_or(false)),
            });
        }
    }
    CocoInstances {
        images: records
            .iter()
            .map(|r| CocoImage {
                id: r.image_id,
                file_name: r
                    .image
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                width: r.width,
                height: r.height,
            })
            .collect(),
        annotations,
        categories: classes
            .iter()
            .enumerate()
            .map(|(i, name)| CocoCategory {
                id: i as u64 + 1,
                name: name.clone(),
            })
            .collect(),
    }
}
