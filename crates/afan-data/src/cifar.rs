//! CIFAR-10 and CIFAR-100 in their official *binary* layouts.
//!
//! The release trains on the torchvision copies, which are the same pixels as
//! the binary versions distributed at <https://www.cs.toronto.edu/~kriz/cifar.html>.
//! We read those binary files directly so that no Python pickle decoder is
//! needed:
//!
//! * CIFAR-10: `cifar-10-batches-bin/data_batch_{1..5}.bin` and
//!   `test_batch.bin`; a record is 1 label byte + 3072 pixel bytes (the red,
//!   green and blue 32x32 planes, row-major). `batches.meta.txt` names the
//!   classes.
//! * CIFAR-100: `cifar-100-binary/train.bin` and `test.bin`; a record is
//!   1 coarse label byte + 1 fine label byte + 3072 pixel bytes. We use the
//!   fine label (100 classes), named by `fine_label_names.txt`.
//!
//! The data path may be the extracted folder, a directory containing it, the
//! downloaded `.tar.gz` (decoded in a single streaming pass, nothing written
//! to disk), or a directory containing that archive. Record counts are not
//! hard-coded: a file must be a whole number of records, and the files of one
//! split must agree, which lets tests use tiny files in the same layout.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rayon::prelude::*;

use crate::dataset::ImageDataset;
use crate::error::DataError;

/// Channels of a CIFAR image.
pub const CIFAR_CHANNELS: usize = 3;
/// Height and width of a CIFAR image.
pub const CIFAR_SIDE: usize = 32;
/// Pixel bytes of one CIFAR record.
pub const CIFAR_IMAGE_BYTES: usize = CIFAR_CHANNELS * CIFAR_SIDE * CIFAR_SIDE;

/// Which of the two CIFAR datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CifarKind {
    /// 10 classes, `cifar-10-batches-bin`.
    Cifar10,
    /// 100 fine classes, `cifar-100-binary`.
    Cifar100,
}

/// Training or test part of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CifarSplit {
    /// The 50 000 training images.
    Train,
    /// The 10 000 test images.
    Test,
}

impl CifarKind {
    /// Number of classes (10 or 100, the fine labels of CIFAR-100).
    pub fn num_classes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 10,
            CifarKind::Cifar100 => 100,
        }
    }

    /// The name accepted by [`FromStr`]: `cifar10` or `cifar100`.
    pub fn name(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "cifar10",
            CifarKind::Cifar100 => "cifar100",
        }
    }

    /// Folder created by extracting the official binary archive.
    pub fn folder_name(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "cifar-10-batches-bin",
            CifarKind::Cifar100 => "cifar-100-binary",
        }
    }

    /// File name of the official binary archive.
    pub fn archive_name(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "cifar-10-binary.tar.gz",
            CifarKind::Cifar100 => "cifar-100-binary.tar.gz",
        }
    }

    /// Label bytes before the pixels of each record (the label used is the last one).
    pub fn label_bytes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1,
            CifarKind::Cifar100 => 2,
        }
    }

    /// Bytes of one record: labels then 3072 pixel bytes.
    pub fn record_bytes(self) -> usize {
        self.label_bytes() + CIFAR_IMAGE_BYTES
    }

    /// The data files of `split`, in the order their records are concatenated.
    pub fn split_files(self, split: CifarSplit) -> &'static [&'static str] {
        match (self, split) {
            (CifarKind::Cifar10, CifarSplit::Train) => &[
                "data_batch_1.bin",
                "data_batch_2.bin",
                "data_batch_3.bin",
                "data_batch_4.bin",
                "data_batch_5.bin",
            ],
            (CifarKind::Cifar10, CifarSplit::Test) => &["test_batch.bin"],
            (CifarKind::Cifar100, CifarSplit::Train) => &["train.bin"],
            (CifarKind::Cifar100, CifarSplit::Test) => &["test.bin"],
        }
    }

    /// The file naming the classes, one per line.
    pub fn names_file(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "batches.meta.txt",
            CifarKind::Cifar100 => "fine_label_names.txt",
        }
    }

    /// The official class names, used when the names file is absent.
    pub fn default_class_names(self) -> Vec<String> {
        let names: &[&str] = match self {
            CifarKind::Cifar10 => &CIFAR10_NAMES,
            CifarKind::Cifar100 => &CIFAR100_FINE_NAMES,
        };
        names.iter().map(|s| s.to_string()).collect()
    }

    /// What a user may pass as the data path, for error hints.
    fn accepted_layouts(self) -> String {
        format!(
            "give the extracted folder `{f}`, a directory containing it, the archive `{a}`, \
             or a directory containing that archive (the *binary* version from \
             https://www.cs.toronto.edu/~kriz/cifar.html, not the Python or MATLAB one)",
            f = self.folder_name(),
            a = self.archive_name()
        )
    }
}

impl FromStr for CifarKind {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, DataError> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['-', '_'], "")
            .as_str()
        {
            "cifar10" => Ok(CifarKind::Cifar10),
            "cifar100" => Ok(CifarKind::Cifar100),
            _ => Err(DataError::UnknownDataset(s.to_string())),
        }
    }
}

impl fmt::Display for CifarKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for CifarSplit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CifarSplit::Train => "train",
            CifarSplit::Test => "test",
        })
    }
}

/// Loads one split of CIFAR-10 or CIFAR-100 from `path` (see the module
/// documentation for the accepted layouts).
pub fn load_cifar(
    path: &Path,
    kind: CifarKind,
    split: CifarSplit,
) -> Result<ImageDataset, DataError> {
    let (files, names) = match locate(path, kind)? {
        Source::Folder(dir) => read_folder(&dir, kind, split)?,
        Source::Archive(archive) => read_archive(&archive, kind, split)?,
    };
    decode(kind, &files, names)
}

/// A named file's bytes, the name used in error messages.
type NamedBytes = (PathBuf, Vec<u8>);

enum Source {
    Folder(PathBuf),
    Archive(PathBuf),
}

/// Decides which of the accepted layouts `path` is.
fn locate(path: &Path, kind: CifarKind) -> Result<Source, DataError> {
    if path.is_file() {
        // Any file is taken for the archive; a wrong one fails with a clear
        // "not a readable .tar.gz" or "archive has no member" message.
        return Ok(Source::Archive(path.to_path_buf()));
    }
    if !path.is_dir() {
        return Err(DataError::MissingFile {
            path: path.to_path_buf(),
            hint: format!("no such file or directory; {}", kind.accepted_layouts()),
        });
    }
    let known = [CifarSplit::Train, CifarSplit::Test]
        .iter()
        .flat_map(|&s| kind.split_files(s).iter().copied())
        .chain([kind.names_file()]);
    let is_extracted = path.file_name().is_some_and(|n| n == kind.folder_name())
        || known.into_iter().any(|f| path.join(f).is_file());
    if is_extracted {
        return Ok(Source::Folder(path.to_path_buf()));
    }
    let inner = path.join(kind.folder_name());
    if inner.is_dir() {
        return Ok(Source::Folder(inner));
    }
    let archive = path.join(kind.archive_name());
    if archive.is_file() {
        return Ok(Source::Archive(archive));
    }
    Err(DataError::MissingFile {
        path: inner,
        hint: format!(
            "{} has no {kind} data; {}",
            path.display(),
            kind.accepted_layouts()
        ),
    })
}

fn read_folder(
    dir: &Path,
    kind: CifarKind,
    split: CifarSplit,
) -> Result<(Vec<NamedBytes>, Option<NamedBytes>), DataError> {
    let files = kind
        .split_files(split)
        .iter()
        .map(|name| {
            let p = dir.join(name);
            if !p.is_file() {
                return Err(DataError::MissingFile {
                    path: p,
                    hint: format!(
                        "the folder has other {kind} files but not this one; re-extract `{}` \
                         or {}",
                        kind.archive_name(),
                        kind.accepted_layouts()
                    ),
                });
            }
            let bytes = std::fs::read(&p).map_err(|e| DataError::io(&p, e))?;
            Ok((p, bytes))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let names_path = dir.join(kind.names_file());
    let names = if names_path.is_file() {
        let bytes = std::fs::read(&names_path).map_err(|e| DataError::io(&names_path, e))?;
        Some((names_path, bytes))
    } else {
        None
    };
    Ok((files, names))
}

/// Streams through the archive once, keeping only the members this split
/// needs. Members are matched by file name, wherever they sit in the archive.
fn read_archive(
    archive: &Path,
    kind: CifarKind,
    split: CifarSplit,
) -> Result<(Vec<NamedBytes>, Option<NamedBytes>), DataError> {
    let wanted: Vec<&str> = kind
        .split_files(split)
        .iter()
        .copied()
        .chain([kind.names_file()])
        .collect();
    let file = File::open(archive).map_err(|e| DataError::io(archive, e))?;
    let bad = |e: std::io::Error| DataError::Archive {
        path: archive.to_path_buf(),
        message: e.to_string(),
    };
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
    let mut found: HashMap<&str, (PathBuf, Vec<u8>)> = HashMap::new();
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let member = entry.path().map_err(bad)?.into_owned();
        let Some(name) = member.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(&w) = wanted.iter().find(|&&w| w == name) {
            let size = entry.size();
            let mut bytes = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut bytes).map_err(bad)?;
            // A cut gzip stream can end silently; the tar header knows better.
            if bytes.len() as u64 != size {
                return Err(DataError::Archive {
                    path: archive.to_path_buf(),
                    message: format!(
                        "member {} is cut short ({} of {size} bytes); the download is incomplete",
                        member.display(),
                        bytes.len()
                    ),
                });
            }
            found.insert(w, (archive.join(&member), bytes));
            if found.len() == wanted.len() {
                break;
            }
        }
    }
    let files = kind
        .split_files(split)
        .iter()
        .map(|name| {
            found.remove(name).ok_or_else(|| DataError::MissingFile {
                path: archive.join(kind.folder_name()).join(name),
                hint: format!(
                    "the archive has no member `{name}`; {}",
                    kind.accepted_layouts()
                ),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((files, found.remove(kind.names_file())))
}

/// Validates and concatenates the records of `files`.
fn decode(
    kind: CifarKind,
    files: &[NamedBytes],
    names: Option<NamedBytes>,
) -> Result<ImageDataset, DataError> {
    let record = kind.record_bytes();
    let mut counts = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        let len = bytes.len();
        if len == 0 || len % record != 0 {
            return Err(DataError::Truncated {
                path: path.clone(),
                expected_bytes: ((len / record + 1) * record) as u64,
                found_bytes: len as u64,
                record_bytes: record as u64,
            });
        }
        let count = len / record;
        if let Some(&first) = counts.first()
            && count != first
        {
            return Err(DataError::RecordCount {
                path: path.clone(),
                expected: first,
                found: count,
            });
        }
        counts.push(count);
        let label_at = kind.label_bytes() - 1;
        if let Some((i, r)) = bytes
            .chunks_exact(record)
            .enumerate()
            .find(|(_, r)| usize::from(r[label_at]) >= kind.num_classes())
        {
            return Err(DataError::LabelOutOfRange {
                path: path.clone(),
                record: i,
                label: usize::from(r[label_at]),
                num_classes: kind.num_classes(),
            });
        }
    }

    let total: usize = counts.iter().sum();
    let mut images = vec![0u8; total * CIFAR_IMAGE_BYTES];
    let mut labels = Vec::with_capacity(total);
    let mut offset = 0;
    for (_, bytes) in files {
        let n = bytes.len() / record;
        images[offset * CIFAR_IMAGE_BYTES..(offset + n) * CIFAR_IMAGE_BYTES]
            .par_chunks_exact_mut(CIFAR_IMAGE_BYTES)
            .zip(bytes.par_chunks_exact(record))
            .for_each(|(dst, src)| dst.copy_from_slice(&src[kind.label_bytes()..]));
        labels.extend(
            bytes
                .chunks_exact(record)
                .map(|r| u16::from(r[kind.label_bytes() - 1])),
        );
        offset += n;
    }

    let class_names = match names {
        Some((path, bytes)) => parse_names(&path, &bytes, kind.num_classes())?,
        None => kind.default_class_names(),
    };
    ImageDataset::new(
        images,
        labels,
        kind.num_classes(),
        (CIFAR_CHANNELS, CIFAR_SIDE, CIFAR_SIDE),
        class_names,
    )
}

/// One name per non-empty line (the official files end with blank lines).
fn parse_names(path: &Path, bytes: &[u8], expected: usize) -> Result<Vec<String>, DataError> {
    let names: Vec<String> = String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != expected {
        return Err(DataError::ClassNames {
            path: path.to_path_buf(),
            expected,
            found: names.len(),
        });
    }
    Ok(names)
}

/// CIFAR-10 class names, in label order (as in `batches.meta.txt`).
pub const CIFAR10_NAMES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// CIFAR-100 fine class names, in label order (as in `fine_label_names.txt`).
pub const CIFAR100_FINE_NAMES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

#[cfg(test)]
#[path = "cifar_tests.rs"]
mod tests;
