//! Errors a user can act on: each names the thing that is wrong.

use std::path::PathBuf;

pub use crate::data::DataError;

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
