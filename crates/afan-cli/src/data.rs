//! From a configuration to datasets, and from host batches to tensors.

use crate::config::TrainConfig;
use afan_data::{
    Batch, CifarKind, CifarSplit, FolderTransform, ImageDataset, ImageFolder, LoaderConfig,
    load_cifar, shapes10,
};
use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};

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
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EvalSplit {
    /// The official test split.
    Test,
    /// The images held out of the training split by `val_split`.
    Val,
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

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        match self {
            ClassData::Memory(d) => d.num_classes,
            ClassData::Folder(f, _) => f.num_classes(),
        }
    }

    /// The batches of epoch `epoch`; a file that fails to decode ends the epoch with its error.
    pub fn batches<'a>(
        &'a self,
        config: &'a LoaderConfig,
        epoch: usize,
    ) -> Box<dyn Iterator<Item = Result<Batch>> + 'a> {
        match self {
            ClassData::Memory(d) => Box::new(afan_data::batches(d, config, epoch).map(Ok)),
            ClassData::Folder(f, t) => Box::new(f.epoch(config, *t, epoch).map(|b| Ok(b?))),
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
}

fn full_split(config: &TrainConfig, train: bool) -> Result<ImageDataset> {
    match DatasetName::parse(&config.dataset)? {
        DatasetName::ImageFolder => unreachable!("folders are opened by `split`"),
        DatasetName::Synthetic => {
            let (tr, te) = shapes10(config.synthetic.train, config.synthetic.test, config.seed);
            Ok(if train { tr } else { te })
        }
        DatasetName::Cifar(kind) => {
            let path = config.data.as_ref().with_context(|| {
                format!("dataset `{}` needs --data pointing at the extracted folder or the downloaded .tar.gz", config.dataset)
            })?;
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
    let root = config.data.as_ref().with_context(|| {
        "dataset `imagefolder` needs --data pointing at the folder holding train/ and val/"
            .to_string()
    })?;
    let split = root.join(if train { "train" } else { "val" });
    let folder = ImageFolder::open(&split)?;
    Ok(ClassData::Folder(folder, config.folder))
}

/// The training split and the evaluation split the configuration describes.
pub fn load_splits(config: &TrainConfig) -> Result<Splits> {
    if DatasetName::parse(&config.dataset)? == DatasetName::ImageFolder {
        if config.val_split > 0 {
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
        });
    }
    let train = full_split(config, true)?;
    if config.val_split > 0 {
        let (train, val) = split_val(config, train)?;
        Ok(Splits {
            train: ClassData::Memory(train),
            eval: ClassData::Memory(val),
            eval_split: EvalSplit::Val,
        })
    } else {
        Ok(Splits {
            train: ClassData::Memory(train),
            eval: ClassData::Memory(full_split(config, false)?),
            eval_split: EvalSplit::Test,
        })
    }
}

fn split_val(config: &TrainConfig, train: ImageDataset) -> Result<(ImageDataset, ImageDataset)> {
    if config.val_split >= train.len() {
        bail!(
            "val_split = {} leaves no training images (the training split has {})",
            config.val_split,
            train.len()
        );
    }
    Ok(train.train_val_split(config.val_split, config.seed))
}

/// One evaluation split, as `afan eval` asks for it.
pub fn load_eval(config: &TrainConfig, split: EvalSplit) -> Result<ClassData> {
    if DatasetName::parse(&config.dataset)? == DatasetName::ImageFolder {
        return folder_split(config, false);
    }
    match split {
        EvalSplit::Test => full_split(config, false).map(ClassData::Memory),
        EvalSplit::Val => {
            if config.val_split == 0 {
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

/// A tensor's values on the host as `f32`, whatever the backend's float type.
pub fn to_host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("data converted to f32 reads back as f32")
}
