//! Errors a user can act on: each names the thing that is wrong.

use std::path::PathBuf;

/// advtrain's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or parsing a data set failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A model file could not be loaded or saved.
    #[error("model file {path}: {message}")]
    ModelFile { path: PathBuf, message: String },
    /// A run record (JSON/TOML) is malformed.
    #[error("{path}: {message}")]
    Record { path: PathBuf, message: String },
    /// Training produced a non-finite loss.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// A training checkpoint is missing, corrupt or does not fit the run.
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
}

/// advtrain's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for a configuration error.
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }

    /// Wrap an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Why a data set could not be read. Every variant names the file (or directory) at fault,
/// so the CLI can print the error as is.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A required file or directory does not exist.
    #[error("{path}: not found; {hint}")]
    Missing { path: PathBuf, hint: String },
    /// The file does not start with the expected magic number: probably the wrong file.
    #[error("{path}: bad magic number 0x{found:08x} (expected 0x{expected:08x}); is this the right file?")]
    BadMagic {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    /// The file (after decompression) is shorter than its header says.
    #[error("{path}: truncated: expected {expected} bytes, got {got}")]
    Truncated {
        path: PathBuf,
        expected: usize,
        got: usize,
    },
    /// The image and label files disagree on the number of examples.
    #[error("{images} has {n_images} images but {labels} has {n_labels} labels")]
    CountMismatch {
        images: PathBuf,
        n_images: usize,
        labels: PathBuf,
        n_labels: usize,
    },
    /// A label is not a valid class index.
    #[error("{path}: label {label} of example {index} is out of range (there are {num_classes} classes)")]
    BadLabel {
        path: PathBuf,
        index: usize,
        label: usize,
        num_classes: usize,
    },
    /// The content is malformed in some other way (zero dimensions, trailing bytes, ...).
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// The file looks gzipped but its stream is corrupt or cut off.
    #[error("{path}: corrupt gzip stream: {message}")]
    Gzip { path: PathBuf, message: String },
    /// The operating system refused the read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DataError {
    pub(crate) fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
