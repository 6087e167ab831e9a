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
    ///
    /// The operating system's message is part of the Display and deliberately not the
    /// error's `source()`: a reporter that prints the chain (anyhow's `{:#}`) would print it
    /// twice, and one that prints only the Display (`{e}`) would lose it.
    #[error("{path}: {cause}")]
    Io {
        /// The file (or directory) the operation was on.
        path: PathBuf,
        /// What the operating system reported.
        cause: std::io::Error,
    },
    /// A model file could not be loaded or saved.
    #[error("model file {path}: {message}")]
    ModelFile {
        /// The `.safetensors` model file being loaded or saved.
        path: PathBuf,
        /// What went wrong: the file is absent, unreadable as safetensors, or its tensors do not
        /// fit the architecture (the missing ones are listed).
        message: String,
    },
    /// An ONNX model could not be imported or written.
    #[error("ONNX model {path}: {message}")]
    Onnx {
        /// The `.onnx` file.
        path: PathBuf,
        /// What is wrong, naming the node, the operator and the opset when one node is at
        /// fault.
        message: String,
    },
    /// A run record (JSON/TOML) is malformed.
    #[error("{path}: {message}")]
    Record {
        /// The record file (JSON, JSON Lines or TOML) that failed to parse or serialise.
        path: PathBuf,
        /// The parser's or serialiser's message, naming the line where it has one.
        message: String,
    },
    /// Training produced a non-finite loss.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// A filter reached through `--target-cmd` or `--target-url` failed: it could not be
    /// started, crashed, hung past its timeout, or answered something that is not a reply.
    #[error("filter ({target}): {message}")]
    Target {
        /// The command or URL, as the user gave it.
        target: String,
        /// What went wrong, naming the id of the text it went wrong on.
        message: String,
    },
    /// A training checkpoint is missing, corrupt or does not fit the run.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file (or where it was expected, inside the run directory).
        path: PathBuf,
        /// Why it cannot be used: absent, failed its checksum, or saved by a different run.
        message: String,
    },
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
            cause: source,
        }
    }
}

/// Why a data set could not be read. Every variant names the file (or directory) at fault,
/// so the CLI can print the error as is.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A required file or directory does not exist.
    #[error("{path}: not found; {hint}")]
    Missing {
        /// The path that was looked for.
        path: PathBuf,
        /// What was expected there and how to provide it, for the user to act on.
        hint: String,
    },
    /// The file does not start with the expected magic number: probably the wrong file.
    #[error("{path}: bad magic number 0x{found:08x} (expected 0x{expected:08x}); is this the right file?")]
    BadMagic {
        /// The IDX file whose header was read.
        path: PathBuf,
        /// The first four bytes of the file, read big-endian.
        found: u32,
        /// The magic number of the IDX format asked for (images or labels).
        expected: u32,
    },
    /// The file (after decompression) is shorter than its header says.
    #[error("{path}: truncated: expected {expected} bytes, got {got}")]
    Truncated {
        /// The short file.
        path: PathBuf,
        /// Bytes the header promises, header included (decompressed size for a `.gz`).
        expected: usize,
        /// Bytes actually present, header included (decompressed size for a `.gz`).
        got: usize,
    },
    /// The image and label files disagree on the number of examples.
    #[error("{images} has {n_images} images but {labels} has {n_labels} labels")]
    CountMismatch {
        /// The images file.
        images: PathBuf,
        /// Number of images its header declares.
        n_images: usize,
        /// The labels file.
        labels: PathBuf,
        /// Number of labels it holds.
        n_labels: usize,
    },
    /// A label is not a valid class index.
    #[error("{path}: label {label} of example {index} is out of range (there are {num_classes} classes)")]
    BadLabel {
        /// The file holding the label.
        path: PathBuf,
        /// 0-based position of the offending example in that file.
        index: usize,
        /// The label value found.
        label: usize,
        /// Number of classes; valid labels are `0..num_classes`.
        num_classes: usize,
    },
    /// The content is malformed in some other way (zero dimensions, trailing bytes, ...).
    #[error("{path}: {message}")]
    Invalid {
        /// The malformed file or directory.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The file looks gzipped but its stream is corrupt or cut off.
    #[error("{path}: corrupt gzip stream: {message}")]
    Gzip {
        /// The gzipped file.
        path: PathBuf,
        /// The decompressor's message.
        message: String,
    },
    /// The operating system refused the read. As in [`Error::Io`], its message is in the
    /// Display and not the `source()`, so a printed chain names it once.
    #[error("{path}: {cause}")]
    Io {
        /// The file or directory being read.
        path: PathBuf,
        /// What the operating system reported.
        cause: std::io::Error,
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
            cause: source,
        }
    }

    /// A failure to open or read a data file: `Missing` when it does not exist (so the
    /// message says so plainly), `Io` otherwise.
    pub(crate) fn reading(path: &std::path::Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::Missing {
                path: path.to_path_buf(),
                hint: "the file does not exist".to_string(),
            }
        } else {
            DataError::io(path, source)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Display, then every `source()` joined with ": ", as anyhow's `{:#}` prints an error.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut text = e.to_string();
        let mut next = e.source();
        while let Some(cause) = next {
            text = format!("{text}: {cause}");
            next = cause.source();
        }
        text
    }

    fn is_a_directory() -> std::io::Error {
        std::io::Error::other("Is a directory (os error 21)")
    }

    #[test]
    fn io_errors_name_their_cause_once() {
        for e in [
            Error::io("/x/train-images", is_a_directory()),
            Error::from(DataError::io("/x/train-images", is_a_directory())),
        ] {
            let text = chain(&e);
            assert_eq!(text.matches("Is a directory").count(), 1, "{text}");
            assert!(e.to_string().contains("Is a directory"), "{e}");
        }
    }
}
