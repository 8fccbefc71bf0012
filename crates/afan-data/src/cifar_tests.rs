//! Tests of the CIFAR reader against tiny fixtures in the official layout.

use std::fs;
use std::path::Path;

use super::*;
use crate::fixtures::{write_cifar_archive, write_cifar_fixture};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn kind_parses_and_names_valid_options() {
    assert_eq!("cifar10".parse::<CifarKind>().unwrap(), CifarKind::Cifar10);
    assert_eq!(
        "CIFAR-100".parse::<CifarKind>().unwrap(),
        CifarKind::Cifar100
    );
    let err = "mnist".parse::<CifarKind>().unwrap_err().to_string();
    assert!(
        err.contains("mnist") && err.contains("cifar10") && err.contains("cifar100"),
        "{err}"
    );
    assert_eq!(CifarKind::Cifar100.num_classes(), 100);
    assert_eq!(CIFAR100_FINE_NAMES.len(), 100);
    assert!(
        CIFAR100_FINE_NAMES.windows(2).all(|w| w[0] < w[1]),
        "official order is alphabetical"
    );
}

#[test]
fn loads_cifar10_from_folder_parent_and_archive() {
    let dir = tmp();
    let fx = write_cifar_fixture(dir.path(), CifarKind::Cifar10, 3, 7).unwrap();
    let ar = write_cifar_archive(&dir.path().join("dl"), CifarKind::Cifar10, 3, 7).unwrap();
    assert_eq!(fx.train.len(), 15);
    assert_eq!(fx.test.len(), 3);
    for path in [&fx.path, dir.path(), &ar.path, &dir.path().join("dl")] {
        let train = load_cifar(path, CifarKind::Cifar10, CifarSplit::Train).unwrap();
        let test = load_cifar(path, CifarKind::Cifar10, CifarSplit::Test).unwrap();
        assert_eq!(train, fx.train, "train from {}", path.display());
        assert_eq!(test, fx.test, "test from {}", path.display());
    }
    // Independent check of the layout: record 4 of the concatenation is
    // record 1 of data_batch_2.bin.
    let raw = fs::read(fx.path.join("data_batch_2.bin")).unwrap();
    assert_eq!(fx.train.labels[4], u16::from(raw[3073]));
    assert_eq!(fx.train.image(4), &raw[3073 + 1..2 * 3073]);
    assert_eq!(fx.train.class_names[0], "airplane");
}

#[test]
fn loads_cifar100_fine_labels() {
    let dir = tmp();
    let fx = write_cifar_fixture(dir.path(), CifarKind::Cifar100, 4, 1).unwrap();
    let train = load_cifar(dir.path(), CifarKind::Cifar100, CifarSplit::Train).unwrap();
    assert_eq!(train, fx.train);
    let raw = fs::read(fx.path.join("train.bin")).unwrap();
    assert_eq!(
        train.labels[2],
        u16::from(raw[2 * 3074 + 1]),
        "the fine label is the second byte"
    );
    assert_eq!(train.image(2), &raw[2 * 3074 + 2..3 * 3074]);
    assert_eq!(train.num_classes, 100);
    let ar = write_cifar_archive(dir.path(), CifarKind::Cifar100, 4, 1).unwrap();
    assert_eq!(
        load_cifar(&ar.path, CifarKind::Cifar100, CifarSplit::Test).unwrap(),
        fx.test
    );
}

fn expect_err(path: &Path, kind: CifarKind, split: CifarSplit) -> (DataError, String) {
    let err = load_cifar(path, kind, split).unwrap_err();
    let msg = err.to_string();
    (err, msg)
}

#[test]
fn truncated_file_names_file_and_sizes() {
    let dir = tmp();
    let fx = write_cifar_fixture(dir.path(), CifarKind::Cifar10, 3, 7).unwrap();
    let p = fx.path.join("data_batch_3.bin");
    let bytes = fs::read(&p).unwrap();
    fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let (err, msg) = expect_err(&fx.path, CifarKind::Cifar10, CifarSplit::Train);
    assert!(
        matches!(
            err,
            DataError::Truncated {
                expected_bytes: 9219,
                found_bytes: 9119,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        msg.contains("data_batch_3.bin") && msg.contains("9119") && msg.contains("3073"),
        "{msg}"
    );
    // The test split does not read that file.
    load_cifar(&fx.path, CifarKind::Cifar10, CifarSplit::Test).unwrap();
}

#[test]
fn unequal_record_counts_are_reported() {
    let dir = tmp();
    let fx = write_cifar_fixture(dir.path(), CifarKind::Cifar10, 3, 7).unwrap();
    let p = fx.path.join("data_batch_5.bin");
    let bytes = fs::read(&p).unwrap();
    fs::write(&p, &bytes[..2 * 3073]).unwrap();
    let (err, msg) = expect_err(&fx.path, CifarKind::Cifar10, CifarSplit::Train);
    assert!(
        matches!(
            err,
            DataError::RecordCount {
                expected: 3,
                found: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(msg.contains("data_batch_5.bin"), "{msg}");
}

#[test]
fn missing_test_batch_is_named() {
    let dir = tmp();
    let fx = write_cifar_fixture(dir.path(), CifarKind::Cifar10, 2, 7).unwrap();
    fs::remove_file(fx.path.join("test_batch.bin")).unwrap();
    for path in [&fx.path, dir.path()] {
        let (err, msg) = expect_err(path, CifarKind::Cifar10, CifarSplit::Test);
        assert!(matches!(err, DataError::MissingFile { .. }), "{err:?}");
        assert!(msg.contains("test_batch.bin"), "{msg}");
    }
    load_cifar(&fx.path, CifarKind::Cifar10, CifarSplit::Train).unwrap();
}

#[test]
fn missing_data_lists_accepted_layouts() {
    let dir = tmp();
    let (err, msg) = expect_err(dir.path(), CifarKind::Cifar10, CifarSplit::Train);
    assert!(matches!(err, DataError::MissingFile { .. }), "{err:?}");
    assert!(
        msg.contains("cifar-10-batches-bin") && msg.contains("cifar-10-binary.tar.gz"),
        "{msg}"
    );
    let (err, _) = expect_err(
        &dir.path().join("nowhere"),
        CifarKind::Cifar100,
        CifarSplit::Train,
    );
    assert!(matches!(err, DataError::MissingFile { .. }), "{err:?}");
    // A CIFAR-10 folder is no CIFAR-100 data.
    write_cifar_fixture(dir.path(), CifarKind::Cifar10, 1, 0).unwrap();
    let (_, msg) = expect_err(dir.path(), CifarKind::Cifar100, CifarSplit::Train);
    assert!(msg.contains("cifar-100-binary"), "{msg}");
}

#[test]
fn label_out_of_range_names_record() {
    let dir = tmp();
    let fx = write_cifar_fixture(dir.path(), CifarKind::Cifar10, 3, 7).unwrap();
    let p = fx.path.join("data_batch_2.bin");
    let mut bytes = fs::read(&p).unwrap();
    bytes[2 * 3073] = 10;
    fs::write(&p, &bytes).unwrap();
    let (err, msg) = expect_err(&fx.path, CifarKind::Cifar10, CifarSplit::Train);
    assert!(
        matches!(
            err,
            DataError::LabelOutOfRange {
                record: 2,
                label: 10,
                num_classes: 10,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(msg.contains("data_batch_2.bin"), "{msg}");
}

#[test]
fn garbage_archive_is_an_archive_error() {
    let dir = tmp();
    let p = dir.path().join("cifar-10-binary.tar.gz");
    fs::write(&p, b"this is not gzip at all, just some bytes").unwrap();
    for path in [&p, dir.path()] {
        let (err, msg) = expect_err(path, CifarKind::Cifar10, CifarSplit::Train);
        assert!(matches!(err, DataError::Archive { .. }), "{err:?}");
        assert!(msg.contains("cifar-10-binary.tar.gz"), "{msg}");
    }
    // A valid archive cut in the middle of a member.
    let ar = write_cifar_archive(&dir.path().join("cut"), CifarKind::Cifar10, 3, 7).unwrap();
    let bytes = fs::read(&ar.path).unwrap();
    fs::write(&ar.path, &bytes[..bytes.len() / 2]).unwrap();
    let (err, _) = expect_err(&ar.path, CifarKind::Cifar10, CifarSplit::Test);
    assert!(matches!(err, DataError::Archive { .. }), "{err:?}");
}

#[test]
fn archive_without_member_is_missing_file() {
    let dir = tmp();
    let ar = write_cifar_archive(dir.path(), CifarKind::Cifar10, 1, 7).unwrap();
    // Loading CIFAR-100 from a CIFAR-10 archive given explicitly.
    let (err, msg) = expect_err(&ar.path, CifarKind::Cifar100, CifarSplit::Train);
    assert!(matches!(err, DataError::MissingFile { .. }), "{err:?}");
    assert!(msg.contains("train.bin"), "{msg}");
}

#[test]
fn wrong_names_file_is_reported() {
    let dir = tmp();
    let fx = write_cifar_fixture(dir.path(), CifarKind::Cifar10, 1, 7).unwrap();
    fs::write(fx.path.join("batches.meta.txt"), "a\nb\n").unwrap();
    let (err, _) = expect_err(&fx.path, CifarKind::Cifar10, CifarSplit::Test);
    assert!(
        matches!(
            err,
            DataError::ClassNames {
                expected: 10,
                found: 2,
                ..
            }
        ),
        "{err:?}"
    );
    // Without the file, the official names are used.
    fs::remove_file(fx.path.join("batches.meta.txt")).unwrap();
    let test = load_cifar(&fx.path, CifarKind::Cifar10, CifarSplit::Test).unwrap();
    assert_eq!(test.class_names[9], "truck");
}

#[test]
fn any_dataset_written_in_cifar_layout_loads_back_identically() {
    let dir = tmp();
    let (train, test) = crate::shapes10(25, 7, 3);
    let folder =
        crate::fixtures::write_cifar_dataset(dir.path(), CifarKind::Cifar10, &train, &test)
            .unwrap();
    let back = load_cifar(&folder, CifarKind::Cifar10, CifarSplit::Train).unwrap();
    // 25 images over 5 files: all of them; the class names come from the names file.
    assert_eq!(back.images, train.images);
    assert_eq!(back.labels, train.labels);
    assert_eq!(back.class_names, train.class_names);
    let back = load_cifar(&folder, CifarKind::Cifar10, CifarSplit::Test).unwrap();
    assert_eq!((back.images, back.labels), (test.images, test.labels));
}
