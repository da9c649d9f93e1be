//! The crate's one error type, [`Error`], and its conversion into
//! [`DataFusionError`] at the engine boundary. Messages name what is wrong:
//! the file, the line, the field path and the value. The two input errors
//! that list places ([`BundleError`] for recording bundles, [`SpecErrors`]
//! for export specs) live here too, so this module imports nothing of the
//! crate and every layer can use it.

mod bundle;
mod spec;

use std::path::PathBuf;

use datafusion::error::DataFusionError;

pub use bundle::BundleError;
pub use spec::{SpecError, SpecErrors};

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
    Spec(#[from] SpecErrors),

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

    /// A Delta Lake log of the store (`sessions/_delta_log`,
    /// `frames/_delta_log`) could not be read or committed to.
    #[error("store table {table}: {message}")]
    Catalog {
        /// `sessions` or `frames`.
        table: &'static str,
        /// The Delta Lake error.
        message: String,
    },

    /// The store has session files but no Delta log: the layout of
    /// releases before the Delta Lake catalog.
    #[error(
        "store {location:?} has the layout before Delta Lake (sessions/ files, no \
         sessions/_delta_log); convert it once with `nusomi store migrate {location}`"
    )]
    LegacyStore {
        /// The store root as given.
        location: String,
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

    /// A cluster (its scheduler or executors) could not be reached or
    /// started.
    #[error("cluster: {0}")]
    Cluster(String),

    /// The query engine failed.
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),

    /// The destination prefix already holds a finished export (a
    /// `manifest.json` this export did not write); nothing was changed there.
    #[error("{url}: {message}")]
    ExportExists {
        /// URL or key of the manifest found.
        url: String,
        /// Which case: an earlier export, or one that finished meanwhile.
        message: &'static str,
    },

    /// The destination prefix holds a finished export of the same spec,
    /// but the sessions it selects have changed since (sealed or forgotten
    /// sessions): the export there is kept, nothing was changed.
    #[error(
        "{url}: holds this spec's export as of {as_of} ({then} sessions selected), but the same spec selects other sessions now ({now}); to export the new selection choose a new prefix, or pin \"as_of\": \"{as_of}\" to get that export again (an explicit \"filter.until\" keeps later sessions out of a window)"
    )]
    ExportSelectionChanged {
        /// URL of the manifest found.
        url: String,
        /// The finished export's `as_of`.
        as_of: String,
        /// Sessions it selected.
        then: u64,
        /// Sessions the same spec selects now.
        now: u64,
    },

    /// An object the export reads (a manifest or lease at the destination)
    /// is larger than such an object may be; it was not read.
    #[error("{path}: {size} bytes, more than the {limit} bytes such an object may hold; refused without reading it")]
    TooLarge {
        /// The object's key.
        path: String,
        /// Its size (reported, or read before it was cut off).
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// A frame cannot be exported as the spec asks (e.g. `smart_resize`
    /// of an image whose aspect ratio is above 200, which Qwen's own
    /// `smart_resize` refuses too).
    #[error("frame {key}: {message}")]
    Frame {
        /// The frame's key (`{session_id}_{frame_idx:06}`).
        key: String,
        /// What is wrong with it.
        message: String,
    },

    /// The rows handed to a shard writer (a `COPY` query, a DataFrame) do
    /// not have the export columns (SPEC §5) or their types.
    #[error("rows to export: {0}")]
    Rows(String),

    /// The destination prefix is claimed by another, unfinished export
    /// (its lease names a different spec); nothing was changed there.
    #[error(
        "{url}: claimed by another unfinished export ({by}); choose another prefix or wait for it"
    )]
    PrefixClaimed {
        /// URL of the prefix.
        url: String,
        /// The claiming export's id.
        by: String,
    },

    /// The destination prefix holds objects no export of this crate wrote
    /// there; nothing was changed there.
    #[error("{url}: holds objects this export did not write ({}{}); choose an empty prefix", keys.join(", "), if *more { ", …" } else { "" })]
    ForeignObjects {
        /// URL of the prefix.
        url: String,
        /// The first few of them.
        keys: Vec<String>,
        /// Whether there are more.
        more: bool,
    },

    /// The service runs as many of these as it takes at once (a
    /// verification per workspace, a few in all); retry later.
    #[error("{what}: the service is running as many as it takes at once; retry in a minute")]
    Busy {
        /// What was asked for.
        what: &'static str,
    },

    /// A bounded operation of the service ran out of its time.
    #[error("{what}: did not finish within {secs} s")]
    TimedOut {
        /// What ran.
        what: &'static str,
        /// Its time limit.
        secs: u64,
    },

    /// JSON could not be encoded or decoded.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),

    /// An internal invariant was broken: a bug, never bad input.
    #[error("internal error: {0}")]
    Internal(String),

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

impl Error {
    /// An engine error back as ours: an [`Error`] that crossed the engine
    /// boundary (a sink's, wrapped as external) comes back as it was.
    pub fn from_engine(e: DataFusionError) -> Error {
        match e {
            DataFusionError::External(b) => match b.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(b) => Error::DataFusion(DataFusionError::External(b)),
            },
            DataFusionError::Context(c, inner) => match Error::from_engine(*inner) {
                Error::DataFusion(d) => Error::DataFusion(DataFusionError::Context(c, Box::new(d))),
                ours => ours,
            },
            other => Error::DataFusion(other),
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
