//! The engine's one error type: every failure a user can cause names the file, field or flag and
//! what was expected, in one line (the binary prints it after `error:`).

use std::path::{Path, PathBuf};

/// Why training, evaluation, inference or a checkpoint operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A configuration value that cannot work, named by its field.
    #[error("{0}")]
    Config(String),
    /// A file that cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A checkpoint that is not one, is corrupt, or does not fit.
    #[error("checkpoint {}: {problem}", path.display())]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A run directory that may not be written now.
    #[error("{0}")]
    RunDir(String),
    /// A loss, an evaluation or the weights became NaN or infinite.
    #[error("{0}")]
    NonFinite(String),
    /// A dataset file or layout.
    #[error(transparent)]
    Data(#[from] afan_data::DataError),
    /// A model name, split point, weight file or detector setting.
    #[error("{0}")]
    Model(String),
    /// A device name or a backend that cannot do what was asked.
    #[error(transparent)]
    Device(#[from] afan_core::device::DeviceError),
    /// Another error with what was being done.
    #[error("{context}: {source}")]
    Context {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: Box<TrainError>,
    },
}

/// Results of the engine.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

impl TrainError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A problem with the checkpoint at `path`.
    pub fn checkpoint(path: &Path, problem: impl Into<String>) -> Self {
        Self::Checkpoint {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }

    /// A model-side error (unknown name, split point, import), as its message.
    pub fn model(e: impl std::fmt::Display) -> Self {
        Self::Model(e.to_string())
    }
}

/// `Config` errors from a format string: `bail_config!("batch_size must be at least 1")`.
#[macro_export]
#[doc(hidden)]
macro_rules! config_error {
    ($($t:tt)*) => { $crate::TrainError::Config(format!($($t)*)) };
}

/// Adds what was being done to an error, as `anyhow::Context` does for applications.
pub trait Context<T> {
    /// Wraps the error with `context`.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Wraps the error with a lazily built context.
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<TrainError>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| TrainError::Context {
            context: context.into(),
            source: Box::new(e.into()),
        })
    }

    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| TrainError::Context {
            context: f().into(),
            source: Box::new(e.into()),
        })
    }
}

macro_rules! model_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for TrainError {
            fn from(e: $t) -> Self {
                Self::Model(e.to_string())
            }
        }
    )*};
}

model_errors!(
    afan_models::UnknownModel,
    afan_models::ImportError,
    afan_core::SplitError,
    afan_core::config::AfanConfigError,
    afan_models::detection::faster_rcnn::DetectionConfigError,
    afan_models::detection::afan::DetectionAfanError,
    afan_models::detection::step::DetectionInputError
);

impl From<toml::ser::Error> for TrainError {
    fn from(e: toml::ser::Error) -> Self {
        Self::Config(format!("cannot write the configuration as TOML: {e}"))
    }
}
