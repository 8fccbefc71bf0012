//! From the classification section to datasets, and from host batches to tensors.

use super::config::{ClassificationConfig, ValHoldout};
use crate::config::RunConfig;

type TrainConfig = RunConfig<ClassificationConfig>;
use crate::error::{Result, TrainError};
use afan_data::{
    Batch, CifarKind, CifarSplit, FolderTransform, ImageDataset, ImageFolder, LoaderConfig,
    load_cifar, shapes10,
};
use burn::tensor::{Device, Int, Tensor, TensorData};

macro_rules! bail {
    ($($t:tt)*) => { return Err(TrainError::Config(format!($($t)*))) };
}

/// The datasets the classification path knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetName {
    /// The embedded generated set (`shapes10`).
    Synthetic,
    /// CIFAR-10 or CIFAR-100 in the official binary layout.
    Cifar(CifarKind),
    /// ImageNet or any `ROOT/{train,val}/CLASS/*.JPEG` folder, decoded batch by batch.
    ImageFolder,
}

impl DatasetName {
    /// Parses a `dataset` field.
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "synthetic" | "shapes10" => Ok(Self::Synthetic),
            "cifar10" => Ok(Self::Cifar(CifarKind::Cifar10)),
            "cifar100" => Ok(Self::Cifar(CifarKind::Cifar100)),
            "imagenet" | "imagefolder" => Ok(Self::ImageFolder),
            other => bail!(
                "unknown dataset `{other}`; expected synthetic, cifar10, cifar100 or imagefolder"
            ),
        }
    }
}

/// Which held-out images to evaluate on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EvalSplit {
    /// The official test split.
    Test,
    /// The images held out of the training split by `val_split`.
    Val,
}

impl std::str::FromStr for EvalSplit {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "test" => Ok(Self::Test),
            "val" => Ok(Self::Val),
            other => Err(format!("unknown split `{other}`; expected test or val")),
        }
    }
}

/// A classification split: images held in memory (CIFAR, the generated set) or files decoded
/// when a batch needs them (ImageFolder).
pub enum ClassData {
    /// Decoded images.
    Memory(ImageDataset),
    /// Files, with the crop sizes.
    Folder(ImageFolder, FolderTransform),
}

impl ClassData {
    /// Number of images.
    pub fn len(&self) -> usize {
        match self {
            ClassData::Memory(d) => d.len(),
            ClassData::Folder(f, _) => f.len(),
        }
    }

    /// Whether it holds no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        match self {
            ClassData::Memory(d) => d.num_classes,
            ClassData::Folder(f, _) => f.num_classes(),
        }
    }

    /// The batches of epoch `epoch` from batch `start` on; a file that fails to decode ends the
    /// epoch with its error.
    pub fn batches<'a>(
        &'a self,
        config: &'a LoaderConfig,
        epoch: usize,
        start: usize,
    ) -> Box<dyn Iterator<Item = Result<Batch>> + 'a> {
        match self {
            ClassData::Memory(d) => {
                Box::new(afan_data::batches(d, config, epoch).skip(start).map(Ok))
            }
            // Skipping through `epoch()` would decode the skipped batches; a resumed epoch asks
            // for its batches by index instead.
            ClassData::Folder(f, t) if start > 0 => Box::new(
                (start..f.num_batches(config)).map(move |i| Ok(f.batch(config, *t, epoch, i)?)),
            ),
            ClassData::Folder(f, t) => Box::new(f.epoch(config, *t, epoch).map(|b| Ok(b?))),
        }
    }

    /// Class names, when the dataset has them.
    pub fn class_names(&self) -> Vec<String> {
        match self {
            ClassData::Memory(d) => d.class_names.clone(),
            ClassData::Folder(f, _) => f.class_names.clone(),
        }
    }
}

/// Training images and the images evaluated after each epoch.
pub struct Splits {
    /// What the model trains on.
    pub train: ClassData,
    /// What it is evaluated on.
    pub eval: ClassData,
    /// `test` or `val`.
    pub eval_split: EvalSplit,
    /// The test split, evaluated beside a validation split.
    pub test: Option<ClassData>,
}

fn full_split(config: &TrainConfig, train: bool) -> Result<ImageDataset> {
    match DatasetName::parse(&config.task.dataset)? {
        DatasetName::ImageFolder => unreachable!("folders are opened by `split`"),
        DatasetName::Synthetic => {
            let (tr, te) = shapes10(
                config.task.synthetic.train,
                config.task.synthetic.test,
                config.common.seed,
            );
            Ok(if train { tr } else { te })
        }
        DatasetName::Cifar(kind) => {
            let Some(path) = config.task.data.as_ref() else {
                bail!(
                    "dataset `{}` needs --data pointing at the extracted folder or the downloaded .tar.gz",
                    config.task.dataset
                );
            };
            let split = if train {
                CifarSplit::Train
            } else {
                CifarSplit::Test
            };
            Ok(load_cifar(path, kind, split)?)
        }
    }
}

/// `ROOT/train` or `ROOT/val` of an ImageFolder dataset.
fn folder_split(config: &TrainConfig, train: bool) -> Result<ClassData> {
    let Some(root) = config.task.data.as_ref() else {
        bail!("dataset `imagefolder` needs --data pointing at the folder holding train/ and val/");
    };
    let split = root.join(if train { "train" } else { "val" });
    let folder = ImageFolder::open(&split)?;
    Ok(ClassData::Folder(folder, config.task.folder))
}

/// The training split and the evaluation split the configuration describes.
pub fn load_splits(config: &TrainConfig) -> Result<Splits> {
    if DatasetName::parse(&config.task.dataset)? == DatasetName::ImageFolder {
        if config.task.val_split > 0 {
            bail!(
                "val_split applies to CIFAR; an ImageFolder dataset evaluates on its val/ folder"
            );
        }
        let (train, eval) = (folder_split(config, true)?, folder_split(config, false)?);
        if train.num_classes() != eval.num_classes() {
            bail!(
                "train/ has {} class folders but val/ has {}; they must hold the same classes",
                train.num_classes(),
                eval.num_classes()
            );
        }
        return Ok(Splits {
            train,
            eval,
            eval_split: EvalSplit::Test,
            test: None,
        });
    }
    let train = full_split(config, true)?;
    if config.task.val_split > 0 {
        let (train, val) = split_val(config, train)?;
        Ok(Splits {
            train: ClassData::Memory(train),
            eval: ClassData::Memory(val),
            eval_split: EvalSplit::Val,
            test: Some(ClassData::Memory(full_split(config, false)?)),
        })
    } else {
        Ok(Splits {
            train: ClassData::Memory(train),
            eval: ClassData::Memory(full_split(config, false)?),
            eval_split: EvalSplit::Test,
            test: None,
        })
    }
}

fn split_val(config: &TrainConfig, train: ImageDataset) -> Result<(ImageDataset, ImageDataset)> {
    if config.task.val_split >= train.len() {
        bail!(
            "val_split = {} leaves no training images (the training split has {})",
            config.task.val_split,
            train.len()
        );
    }
    let n = config.task.val_split;
    Ok(match config.task.val_holdout {
        ValHoldout::Random => train.train_val_split(n, config.common.seed),
        ValHoldout::Last => {
            let cut = train.len() - n;
            let (head, tail): (Vec<usize>, Vec<usize>) =
                ((0..cut).collect(), (cut..train.len()).collect());
            (train.subset(&head), train.subset(&tail))
        }
    })
}

/// One evaluation split, as `afan eval` asks for it.
pub fn load_eval(config: &TrainConfig, split: EvalSplit) -> Result<ClassData> {
    if DatasetName::parse(&config.task.dataset)? == DatasetName::ImageFolder {
        return folder_split(config, false);
    }
    match split {
        EvalSplit::Test => full_split(config, false).map(ClassData::Memory),
        EvalSplit::Val => {
            if config.task.val_split == 0 {
                bail!(
                    "--split val needs a run trained with val_split > 0 (this one used the test split)"
                );
            }
            Ok(ClassData::Memory(
                split_val(config, full_split(config, true)?)?.1,
            ))
        }
    }
}

/// A host batch as an image tensor `[B, C, H, W]` in 0..1 and a label tensor `[B]`.
pub fn to_tensors(batch: Batch, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let shape = [batch.batch_size, batch.channels, batch.height, batch.width];
    let labels = batch.labels.len();
    let x = Tensor::from_data(TensorData::new(batch.images, shape), device);
    let y = Tensor::from_data(TensorData::new(batch.labels, [labels]), device);
    (x, y)
}
