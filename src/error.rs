//! The crate's one error type, [`Error`], and its conversion into
//! [`DataFusionError`] at the engine boundary. Messages name what is wrong:
//! the file, the line, the field path and the value.

use std::path::PathBuf;

use datafusion::error::DataFusionError;

use crate::store::BundleError;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `nusomi_export`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A recording bundle was refused; nothing of it was written.
    #[error(transparent)]
    Bundle(#[from] BundleError),

    /// An export spec was refused; every problem is listed.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecErrors),

    /// A session id is already sealed in the store with a different digest.
    #[error(
        "session {session_id}: already sealed with different content \
         (stored seal {stored}, this bundle {offered}); a session id is sealed once"
    )]
    SealConflict {
        /// The session id both bundles claim.
        session_id: String,
        /// Digest of what the store holds.
        stored: String,
        /// Digest of the refused bundle.
        offered: String,
    },

    /// A store location (path or URL) that cannot be used.
    #[error("store location {location:?}: {message}")]
    Location {
        /// The location as given.
        location: String,
        /// What is wrong with it.
        message: String,
    },

    /// The store holds something that does not follow the store layout.
    #[error("corrupt store object {path}: {message}")]
    Corrupt {
        /// Object path inside the store.
        path: String,
        /// What is wrong with it.
        message: String,
    },

    /// A local file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An object store operation failed.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),

    /// Configuration (a flag, an environment variable, a destination
    /// setting) that cannot be used.
    #[error("{field}: {message}")]
    Config {
        /// The setting, as a field path or variable name.
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// An operation on an export destination failed.
    #[error("{operation} {key}: {source}")]
    Destination {
        /// The operation (`put`, `upload part`, `complete upload`, `get`, …).
        operation: &'static str,
        /// The object key.
        key: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },

    /// Parquet encoding or decoding failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),

    /// Arrow failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    /// The query engine failed.
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),

    /// The export was cancelled.
    #[error("cancelled")]
    Cancelled,

    /// The job service failed (its database, a worker).
    #[error("{0}")]
    Jobs(String),

    /// A background task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Error {
    /// Maps an object-store error of `operation` on `key` to
    /// [`Error::Destination`], for `map_err`.
    pub fn destination(
        operation: &'static str,
        key: &dyn std::fmt::Display,
    ) -> impl FnOnce(object_store::Error) -> Error {
        let key = key.to_string();
        move |source| Error::Destination {
            operation,
            key,
            source,
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        match e {
            Error::DataFusion(e) => e,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}
