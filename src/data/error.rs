//! The data layer's error type: every variant names the file (or option) and the problem in one line.
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: file not found{}", path.display(), hint)]
    Missing { path: PathBuf, hint: String },
    /// The I/O error is part of this message and deliberately not its `source`: a chained display
    /// (`{:#}`) would print "Permission denied" twice.
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    /// Something other than a readable regular file where a data file (or directory) should be.
    #[error("{}: {what}", path.display())]
    NotAFile { path: PathBuf, what: String },
    #[error("{}: gzip: {msg}", path.display())]
    Gzip { path: PathBuf, msg: String },
    #[error("{}: {msg}", path.display())]
    Format { path: PathBuf, msg: String },
    #[error("dataset spec '{spec}': {msg}")]
    Spec { spec: String, msg: String },
    #[error("data option {option}: {msg}")]
    Option { option: &'static str, msg: String },
}

impl DataError {
    pub fn format(path: &Path, msg: impl Into<String>) -> Self {
        DataError::Format {
            path: path.to_path_buf(),
            msg: msg.into(),
        }
    }

    pub fn option(option: &'static str, msg: impl Into<String>) -> Self {
        DataError::Option {
            option,
            msg: msg.into(),
        }
    }

    pub fn spec(spec: &str, msg: impl Into<String>) -> Self {
        DataError::Spec {
            spec: spec.to_string(),
            msg: msg.into(),
        }
    }

    /// Classify an I/O error met while reading `path`: flate2 reports corrupt deflate data and bad
    /// gzip headers/checksums as `InvalidInput`/`InvalidData`, and a cut-off stream as `UnexpectedEof`.
    pub fn io(path: &Path, gzip: bool, e: std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        match e.kind() {
            NotFound => DataError::Missing {
                path: path.to_path_buf(),
                hint: String::new(),
            },
            InvalidInput | InvalidData if gzip => DataError::Gzip {
                path: path.to_path_buf(),
                msg: e.to_string(),
            },
            UnexpectedEof if gzip => DataError::Gzip {
                path: path.to_path_buf(),
                msg: "stream ends early (file truncated?)".into(),
            },
            _ => DataError::Io {
                path: path.to_path_buf(),
                error: e,
            },
        }
    }
}

pub type DataResult<T> = std::result::Result<T, DataError>;
