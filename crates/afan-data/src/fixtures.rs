//! Tiny CIFAR-format data for tests.
//!
//! Real CIFAR is 160 MB and cannot be fetched in tests (there is no network),
//! so tests — ours and the command line's integration tests — write a few
//! records per file in exactly the official binary layout and load them back
//! through the real code path. Each writer also returns the datasets the
//! loader must produce, so tests can compare byte for byte.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::{Rng, RngCore};

use crate::cifar::{CIFAR_CHANNELS, CIFAR_IMAGE_BYTES, CIFAR_SIDE, CifarKind, CifarSplit};
use crate::dataset::ImageDataset;
use crate::error::DataError;
use crate::seed::{rng_for, tag};

/// What a fixture writer produced.
#[derive(Debug, Clone)]
pub struct CifarFixture {
    /// The extracted folder (`…/cifar-10-batches-bin`) or the archive file.
    pub path: PathBuf,
    /// What `load_cifar(path, kind, CifarSplit::Train)` must return.
    pub train: ImageDataset,
    /// What `load_cifar(path, kind, CifarSplit::Test)` must return.
    pub test: ImageDataset,
}

/// The files of a fixture: `(file name, contents)` in the official layout,
/// data files first, then the class-name file. Pixels and labels are random
/// but a pure function of `seed`.
pub fn cifar_fixture_files(
    kind: CifarKind,
    records_per_file: usize,
    seed: u64,
) -> Vec<(&'static str, Vec<u8>)> {
    let mut files = Vec::new();
    for split in [CifarSplit::Train, CifarSplit::Test] {
        for (f, name) in kind.split_files(split).iter().enumerate() {
            let mut rng = rng_for(&[tag::FIXTURE, seed, kind as u64, split as u64, f as u64]);
            let mut bytes = Vec::with_capacity(records_per_file * kind.record_bytes());
            for _ in 0..records_per_file {
                let fine = rng.random_range(0..kind.num_classes()) as u8;
                if kind == CifarKind::Cifar100 {
                    bytes.push(fine / 5); // coarse label, ignored by the loader
                }
                bytes.push(fine);
                let start = bytes.len();
                bytes.resize(start + CIFAR_IMAGE_BYTES, 0);
                rng.fill_bytes(&mut bytes[start..]);
            }
            files.push((*name, bytes));
        }
    }
    let mut names = kind.default_class_names().join("\n");
    names.push_str("\n\n"); // the official files end with blank lines
    files.push((kind.names_file(), names.into_bytes()));
    files
}

/// The dataset the loader must produce from the fixture files of `split`.
fn expected(kind: CifarKind, files: &[(&str, Vec<u8>)], split: CifarSplit) -> ImageDataset {
    let record = kind.record_bytes();
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for name in kind.split_files(split) {
        let (_, bytes) = files.iter().find(|(n, _)| n == name).expect("fixture file");
        for r in bytes.chunks_exact(record) {
            labels.push(u16::from(r[kind.label_bytes() - 1]));
            images.extend_from_slice(&r[kind.label_bytes()..]);
        }
    }
    ImageDataset::new(
        images,
        labels,
        kind.num_classes(),
        (CIFAR_CHANNELS, CIFAR_SIDE, CIFAR_SIDE),
        kind.default_class_names(),
    )
    .expect("fixture is consistent")
}

fn fixture(kind: CifarKind, files: &[(&str, Vec<u8>)], path: PathBuf) -> CifarFixture {
    CifarFixture {
        path,
        train: expected(kind, files, CifarSplit::Train),
        test: expected(kind, files, CifarSplit::Test),
    }
}

/// Writes `dir/<official folder>/` (e.g. `dir/cifar-10-batches-bin/`) with
/// `records_per_file` records in every data file (`records_per_file` may be 0
/// to produce invalid, empty files).
pub fn write_cifar_fixture(
    dir: &Path,
    kind: CifarKind,
    records_per_file: usize,
    seed: u64,
) -> Result<CifarFixture, DataError> {
    let files = cifar_fixture_files(kind, records_per_file, seed);
    let folder = dir.join(kind.folder_name());
    fs::create_dir_all(&folder).map_err(|e| DataError::io(&folder, e))?;
    for (name, bytes) in &files {
        let p = folder.join(name);
        fs::write(&p, bytes).map_err(|e| DataError::io(&p, e))?;
    }
    Ok(fixture(kind, &files, folder))
}

/// Writes `dir/<official archive>` (e.g. `dir/cifar-10-binary.tar.gz`) whose
/// members sit under the official folder name, as in the real download.
pub fn write_cifar_archive(
    dir: &Path,
    kind: CifarKind,
    records_per_file: usize,
    seed: u64,
) -> Result<CifarFixture, DataError> {
    let files = cifar_fixture_files(kind, records_per_file, seed);
    fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let archive = dir.join(kind.archive_name());
    let io = |e| DataError::io(&archive, e);
    let file = fs::File::create(&archive).map_err(io)?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    // An unrelated member first, as the real archive has a readme.
    let readme: &[u8] = b"<html>fixture</html>";
    let members =
        std::iter::once(("readme.html", readme)).chain(files.iter().map(|(n, b)| (*n, &b[..])));
    for (name, bytes) in members {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        let member = format!("{}/{name}", kind.folder_name());
        builder
            .append_data(&mut header, member, bytes)
            .map_err(io)?;
    }
    builder
        .into_inner()
        .map_err(io)?
        .finish()
        .map_err(io)?
        .flush()
        .map_err(io)?;
    Ok(fixture(kind, &files, archive))
}

/// Writes `train` and `test` as `dir/<official folder>/` in the official binary layout of `kind`
/// (the images spread over the split's files in order, equally, as the loader requires: a
/// remainder of `len % files` images is left out), so any 32x32 RGB dataset — such as
/// the generated `shapes10` — can exercise the real CIFAR code path, including learning tests that
/// random-pixel fixtures cannot provide.
pub fn write_cifar_dataset(
    dir: &Path,
    kind: CifarKind,
    train: &ImageDataset,
    test: &ImageDataset,
) -> Result<PathBuf, DataError> {
    let folder = dir.join(kind.folder_name());
    fs::create_dir_all(&folder).map_err(|e| DataError::io(&folder, e))?;
    for (split, data) in [(CifarSplit::Train, train), (CifarSplit::Test, test)] {
        assert_eq!(
            (data.channels, data.height, data.width),
            (CIFAR_CHANNELS, CIFAR_SIDE, CIFAR_SIDE),
            "CIFAR images are 3x32x32"
        );
        assert!(
            data.num_classes <= kind.num_classes(),
            "too many classes for {}",
            kind.name()
        );
        let files = kind.split_files(split);
        let per_file = data.len() / files.len();
        for (f, name) in files.iter().enumerate() {
            let mut bytes = Vec::new();
            for i in (f * per_file)..((f + 1) * per_file) {
                let label = data.labels[i] as u8;
                if kind == CifarKind::Cifar100 {
                    bytes.push(label / 5); // coarse label, ignored by the loader
                }
                bytes.push(label);
                bytes.extend_from_slice(data.image(i));
            }
            let p = folder.join(name);
            fs::write(&p, bytes).map_err(|e| DataError::io(&p, e))?;
        }
    }
    let mut names = train.class_names.join("\n");
    names.push_str("\n\n");
    let p = folder.join(kind.names_file());
    fs::write(&p, names).map_err(|e| DataError::io(&p, e))?;
    Ok(folder)
}
