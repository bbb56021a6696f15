//! The engine's error type. Every message names what it is about: the file
//! (`s3://bucket/key` or a path), the table and the field, so that one line in
//! a log is enough to find the problem.

use std::fmt;

/// Result alias for the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the engine, by area.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline file is wrong: names the table (if any) and the key.
    #[error("config: {0}")]
    Config(String),

    /// A file could not be read or decoded.
    #[error("reading {file}: {message}")]
    Read { file: String, message: String },

    /// A record does not fit the table's schema.
    #[error("{file}, record at byte {offset}: table '{table}': {message}")]
    Record {
        file: String,
        table: String,
        offset: u64,
        message: String,
    },

    /// The table's SQL transform is invalid or failed.
    #[error("table '{table}': transform: {message}")]
    Transform { table: String, message: String },

    /// Writing the lake failed.
    #[error("writing {path}: {message}")]
    Write { path: String, message: String },

    /// The local catalog is inconsistent or could not be updated.
    #[error("catalog: {0}")]
    Catalog(String),

    /// A service (Glue, SQS) is throttling or failing; worth retrying later.
    #[error("unavailable: {0}")]
    Unavailable(String),

    /// Storage (object_store) failed.
    #[error("storage: {0}")]
    Store(#[from] object_store::Error),
}

impl Error {
    /// Whether trying the same work again later can succeed: storage and
    /// service failures can; bad config, bad data and refused schema changes
    /// cannot, so queues and Step Functions should not retry them.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unavailable(_) | Error::Write { .. } => true,
            Error::Store(e) => !matches!(
                e,
                object_store::Error::NotFound { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotSupported { .. }
                    | object_store::Error::NotImplemented { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            ),
            Error::Config(_)
            | Error::Read { .. }
            | Error::Record { .. }
            | Error::Transform { .. }
            | Error::Catalog(_) => false,
        }
    }

    /// A config error about `key` of table `table`.
    pub fn config(table: Option<&str>, key: &str, message: impl fmt::Display) -> Self {
        match table {
            Some(t) => Error::Config(format!("table '{t}', key '{key}': {message}")),
            None => Error::Config(format!("key '{key}': {message}")),
        }
    }

    /// A read error about `file`.
    pub fn read(file: impl fmt::Display, message: impl fmt::Display) -> Self {
        Error::Read {
            file: file.to_string(),
            message: message.to_string(),
        }
    }

    /// A transform error of `table`.
    pub fn transform(table: &str, message: impl fmt::Display) -> Self {
        Error::Transform {
            table: table.to_string(),
            message: message.to_string(),
        }
    }

    /// A write error about `path`.
    pub fn write(path: impl fmt::Display, message: impl fmt::Display) -> Self {
        Error::Write {
            path: path.to_string(),
            message: message.to_string(),
        }
    }
}
