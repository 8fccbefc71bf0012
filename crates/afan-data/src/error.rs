//! Errors of the data crate.
//!
//! Every variant names the file (or the field) it is about and what was
//! expected, so that the one-line message is enough for a user to fix the
//! problem — typically a wrong `--data` path or a damaged download — without
//! reading the source.

use std::path::PathBuf;

/// Everything that can go wrong while locating, reading or decoding a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused to read a file or a directory.
    // Not a `#[source]`: the message already includes it, and the binary prints the
    // whole chain (`{:#}`), which would repeat it.
    #[error("cannot read {}: {error}", path.display())]
    Io {
        /// The file or directory that could not be read.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },

    /// A binary file is not a whole number of records: it was cut short by an
    /// interrupted download or it is not a file of this format at all.
    #[error(
        "{}: {found_bytes} bytes is not a whole number of {record_bytes}-byte records \
         (expected {expected_bytes} bytes); the file is truncated or not in the official binary layout",
        path.display()
    )]
    Truncated {
        /// The offending file.
        path: PathBuf,
        /// The nearest size that would be a whole, non-zero number of records.
        expected_bytes: u64,
        /// The size actually found.
        found_bytes: u64,
        /// The size of one record in this format.
        record_bytes: u64,
    },

    /// A file holds a whole number of records, but not as many as the others
    /// of the same split (the CIFAR training batches all have equal size).
    #[error(
        "{}: expected {expected} records (as in the other files of this split), found {found}",
        path.display()
    )]
    RecordCount {
        /// The offending file.
        path: PathBuf,
        /// The number of records expected.
        expected: usize,
        /// The number of records found.
        found: usize,
    },

    /// A record's label is not a valid class index.
    #[error(
        "{}: record {record} has label {label}, but the dataset has only {num_classes} classes \
         (labels 0..={}); wrong dataset kind for this file?",
        path.display(),
        num_classes.saturating_sub(1)
    )]
    LabelOutOfRange {
        /// The offending file.
        path: PathBuf,
        /// Zero-based index of the record within the file.
        record: usize,
        /// The label found.
        label: usize,
        /// Number of classes of the dataset kind being loaded.
        num_classes: usize,
    },

    /// A file the dataset needs is not there.
    #[error("missing {}: {hint}", path.display())]
    MissingFile {
        /// The file that was looked for (inside an archive: `archive/member`).
        path: PathBuf,
        /// Which layouts are accepted, or what to do about it.
        hint: String,
    },

    /// A class-name file does not list one name per class.
    #[error(
        "{}: expected {expected} class names (one per line), found {found}",
        path.display()
    )]
    ClassNames {
        /// The class-name file.
        path: PathBuf,
        /// Number of classes of the dataset kind.
        expected: usize,
        /// Number of non-empty lines found.
        found: usize,
    },

    /// A dataset name that this crate does not know.
    #[error("unknown dataset {0:?}; valid options are \"cifar10\" and \"cifar100\"")]
    UnknownDataset(String),

    /// A `.tar.gz` archive could not be decoded.
    #[error("{}: not a readable .tar.gz archive: {message}", path.display())]
    Archive {
        /// The archive file.
        path: PathBuf,
        /// What the decoder reported.
        message: String,
    },

    /// A JSON or XML file that does not parse into the expected structure.
    #[error("{}: {message}", path.display())]
    Malformed {
        /// The offending file.
        path: PathBuf,
        /// What the parser reported, with its line and column where it has them.
        message: String,
    },

    /// A file parses, but a field holds a value that cannot be right (a box outside
    /// its image, an unknown class or image, an empty result list).
    #[error("{}: {field}: {problem}", path.display())]
    InvalidField {
        /// The offending file.
        path: PathBuf,
        /// Where in the file: e.g. `annotations[3].bbox` or `object[1]/name`.
        field: String,
        /// What was found and what was expected.
        problem: String,
    },

    /// An image or mask file that could not be decoded.
    #[error("{}: cannot decode {what}: {message}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// What was expected (`a JPEG/PNG image`, `an 8-bit palette or grayscale PNG mask`).
        what: &'static str,
        /// What the decoder reported.
        message: String,
    },

    /// A mask whose size is not its image's.
    #[error(
        "{}: mask is {mask_w}x{mask_h} but its image {} is {image_w}x{image_h}",
        mask.display(),
        image.display()
    )]
    MaskSize {
        /// The mask file.
        mask: PathBuf,
        /// The image file.
        image: PathBuf,
        /// Mask width and height.
        mask_w: usize,
        /// Mask height.
        mask_h: usize,
        /// Image width.
        image_w: usize,
        /// Image height.
        image_h: usize,
    },

    /// A mask pixel that is neither a class of the dataset nor the ignore label 255.
    #[error(
        "{}: pixel (x={x}, y={y}) has label {value}, expected {expected} or 255 (ignore)",
        path.display()
    )]
    BadLabel {
        /// The mask file.
        path: PathBuf,
        /// Column of the first offending pixel.
        x: usize,
        /// Row of the first offending pixel.
        y: usize,
        /// The value found.
        value: u8,
        /// The valid values, in words (`0..=20`).
        expected: String,
    },

    /// In-memory buffers whose sizes do not agree (a programming error in the
    /// caller that built an [`crate::ImageDataset`] by hand).
    #[error("inconsistent dataset: {0}")]
    Inconsistent(String),

    /// An image cannot be cropped as asked (decoding failures are `Decode`).
    #[error("{}: {reason}", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// What went wrong (the decoder's message, or the size problem).
        reason: String,
    },
}

impl DataError {
    /// A parse failure of `path`.
    pub fn malformed(path: impl Into<PathBuf>, message: impl ToString) -> Self {
        DataError::Malformed {
            path: path.into(),
            message: message.to_string(),
        }
    }

    /// A bad value of `field` in `path`.
    pub fn invalid(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        DataError::InvalidField {
            path: path.into(),
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            error: source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_single_lines_that_name_the_file() {
        let errors = [
            DataError::Truncated {
                path: "x/data_batch_1.bin".into(),
                expected_bytes: 3073,
                found_bytes: 3000,
                record_bytes: 3073,
            },
            DataError::LabelOutOfRange {
                path: "x/data_batch_1.bin".into(),
                record: 2,
                label: 10,
                num_classes: 10,
            },
            DataError::MissingFile {
                path: "x/data_batch_1.bin".into(),
                hint: "give the folder".into(),
            },
            DataError::RecordCount {
                path: "x/data_batch_1.bin".into(),
                expected: 3,
                found: 2,
            },
        ];
        for e in errors {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "{msg}");
            assert!(msg.contains("data_batch_1.bin"), "{msg}");
        }
        let msg =
            DataError::malformed("x/instances_val.json", "EOF at line 1 column 3").to_string();
        assert_eq!(msg, "x/instances_val.json: EOF at line 1 column 3");
        let msg =
            DataError::invalid("x/1.xml", "object[2]/name", "unknown class \"dragon\"").to_string();
        assert_eq!(msg, "x/1.xml: object[2]/name: unknown class \"dragon\"");
        let msg = DataError::UnknownDataset("mnist".into()).to_string();
        assert!(msg.contains("mnist") && msg.contains("cifar100"), "{msg}");
    }
}
