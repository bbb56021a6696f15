//! The engine's error type. Every message names what it is about: the file
//! (`s3://bucket/key` or a path), the table and the field, so that one line in
//! a log is enough to find the problem.
//!
//! Errors keep their cause: a variant about a file or an object holds the
//! error that caused it as its `source`, and whether trying again can succeed
//! is read from that cause (`retry::classify`: the object store's
//! error kind, the HTTP client's error kind, the I/O error kind), never from
//! the message a variant adds.

use std::fmt;

use crate::retry::{Verdict, classify};

/// Result alias for the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The cause of an error: any error, or a message (`String` and `&str`
/// convert into one) when there is no error value to keep.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the engine, by area.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline file is wrong: names the table (if any) and the key.
    #[error("config: {0}")]
    Config(String),

    /// An event or a message between functions (S3 notification, SQS body,
    /// task payload) is not what the function takes.
    #[error("event: {0}")]
    Event(String),

    /// A file could not be read or decoded.
    #[error("reading {file}: {source}")]
    Read {
        file: String,
        #[source]
        source: Cause,
    },

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

    /// Rows could not be split by their partition values.
    #[error("partitioning: {0}")]
    Partition(String),

    /// Writing the lake failed.
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: Cause,
    },

    /// The catalog (local or Glue) is inconsistent or refused a change.
    #[error("catalog: {0}")]
    Catalog(String),

    /// A service (Glue, SQS) is throttling or failing; worth retrying later.
    #[error("unavailable: {0}")]
    Unavailable(String),

    /// A Delta table operation (commit, optimize, vacuum, load) failed.
    #[error("table '{table}': delta: {source}")]
    Delta {
        table: String,
        #[source]
        source: Cause,
    },

    /// Storage (object_store) failed.
    #[error("storage: {0}")]
    Store(#[from] object_store::Error),
}

impl Error {
    /// Whether trying the same work again later can succeed. Read from the
    /// cause: a storage or service failure that is not an answer about the
    /// object (missing, forbidden, exists) can; bad config, bad events, bad
    /// data and refused schema changes cannot, so queues and Step Functions
    /// should not retry them.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unavailable(_) => true,
            // A storage call that failed for a reason we cannot name is worth
            // another try (the functions' retries are bounded); an answer
            // about the object is not.
            Error::Store(e) => classify(e) != Verdict::Permanent,
            // A read or write fails for good unless its cause is transient:
            // an undecodable file stays undecodable.
            // A conflict with another committer was already retried by the
            // committer; past that, only a storage failure is worth another try.
            Error::Read { source, .. }
            | Error::Write { source, .. }
            | Error::Delta { source, .. } => classify(source.as_ref()) == Verdict::Transient,
            Error::Config(_)
            | Error::Event(_)
            | Error::Record { .. }
            | Error::Transform { .. }
            | Error::Partition(_)
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

    /// A read error about `file`, caused by `cause` (an error, kept as the
    /// source, or a message).
    pub fn read(file: impl fmt::Display, cause: impl Into<Cause>) -> Self {
        Error::Read {
            file: file.to_string(),
            source: cause.into(),
        }
    }

    /// A transform error of `table`.
    pub fn transform(table: &str, message: impl fmt::Display) -> Self {
        Error::Transform {
            table: table.to_string(),
            message: message.to_string(),
        }
    }

    /// A write error about `path`, caused by `cause` (an error, kept as the
    /// source, or a message).
    pub fn write(path: impl fmt::Display, cause: impl Into<Cause>) -> Self {
        Error::Write {
            path: path.to_string(),
            source: cause.into(),
        }
    }
}

/// An error and its causes as one line: each cause is added unless the text
/// before already says it (most errors repeat their source's message).
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !t.is_empty() && !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::client::{HttpError, HttpErrorKind};

    fn store_503(path: &str) -> object_store::Error {
        // What object_store's S3 client gives once its own retries are spent:
        // a `Generic` error whose source prints the status line.
        object_store::Error::Generic {
            store: "S3",
            source: format!(
                "Error performing GET http://127.0.0.1/{path} in 2s, after 10 retries - Server returned non-2xx status code: 503 Service Unavailable: <Error><Code>SlowDown</Code></Error>"
            )
            .into(),
        }
    }

    fn store_403(path: &str) -> object_store::Error {
        object_store::Error::PermissionDenied {
            path: path.into(),
            source: "Server returned non-2xx status code: 403 Forbidden".into(),
        }
    }

    #[test]
    fn retryability_comes_from_the_cause_whatever_the_variant_says() {
        // Reads and writes of storage keep the storage error as their source.
        assert!(Error::read("s3://b/k", store_503("k")).is_retryable());
        assert!(!Error::read("s3://b/k", store_403("k")).is_retryable());
        assert!(Error::write("s3://b/k", store_503("k")).is_retryable());
        assert!(!Error::write("s3://b/k", store_403("k")).is_retryable());
        assert!(Error::Store(store_503("k")).is_retryable());
        assert!(!Error::Store(store_403("k")).is_retryable());
        // A transport failure the HTTP client names by kind.
        let reset = object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(
                HttpErrorKind::Interrupted,
                std::io::Error::from(std::io::ErrorKind::ConnectionReset),
            )),
        };
        assert!(Error::read("s3://b/k", reset).is_retryable());
        // Bad data is not worth a retry, whatever its words.
        assert!(!Error::read("f.jsonl.gz", "incomplete deflate stream").is_retryable());
        assert!(!Error::write("k", "the key has an empty segment").is_retryable());
        // delta-rs's kernel holds the storage error without naming it as
        // its source.
        let delta = |e: object_store::Error| Error::Delta {
            table: "t".into(),
            source: Box::new(deltalake::DeltaTableError::KernelError(
                delta_kernel::Error::ObjectStore(e),
            )),
        };
        assert!(delta(store_503("_delta_log/1.json")).is_retryable());
        let reset = object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(
                HttpErrorKind::Interrupted,
                std::io::Error::from(std::io::ErrorKind::ConnectionReset),
            )),
        };
        assert!(delta(reset).is_retryable());
        assert!(!delta(store_403("_delta_log/1.json")).is_retryable());
        // A cause several levels down is found.
        let parquet = parquet::errors::ParquetError::External(Box::new(store_503("k")));
        assert!(Error::read("s3://b/k.parquet", parquet).is_retryable());
    }

    #[test]
    fn describe_adds_each_cause_once() {
        let e = Error::read("s3://b/k", store_503("k"));
        let text = describe(&e);
        assert_eq!(text.matches("503 Service Unavailable").count(), 1, "{text}");
        assert!(text.starts_with("reading s3://b/k: "), "{text}");
    }
}
