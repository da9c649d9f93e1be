//! Destinations: where an export's shards and manifest go, as an
//! `object_store` plus a prefix. Built here: `local` (a folder) and any store
//! handed in directly (tests, embedding). The cloud kinds of SPEC §4 are
//! parsed by the spec but refused here until their issue lands.

use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;

use crate::spec::Destination;
use crate::{Error, Result};

/// An export's output location.
#[derive(Debug, Clone)]
pub struct ExportTarget {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Prefix inside it.
    pub prefix: Path,
    /// URL of the prefix, for `manifest_url` (`file:///…/`).
    pub url: String,
}

impl ExportTarget {
    /// A target over an existing store.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path, url: impl Into<String>) -> Self {
        ExportTarget {
            store,
            prefix,
            url: url.into(),
        }
    }

    /// A local folder (created if missing).
    pub fn local(path: &str) -> Result<Self> {
        let dir = std::path::Path::new(path);
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let abs = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
        let prefix = Path::from_absolute_path(&abs).map_err(|e| Error::Location {
            location: path.to_string(),
            message: e.to_string(),
        })?;
        Ok(ExportTarget {
            store: Arc::new(LocalFileSystem::new()),
            url: format!("file://{}/", abs.display()),
            prefix,
        })
    }

    /// The target of a spec destination.
    pub fn from_destination(d: &Destination) -> Result<Self> {
        match d {
            Destination::Local { path } => Self::local(path),
            other => Err(Error::Location {
                location: format!("{other:?}"),
                message: "this destination kind is not supported yet (only `local`)".into(),
            }),
        }
    }

    /// URL of an object under the prefix.
    pub fn url_of(&self, name: &str) -> String {
        format!("{}{name}", self.url)
    }
}
