//! Turning a store root as users write it (a local path, `file://`,
//! `memory://`, `s3://`, `az://`/`azure://`/`abfs://`, `gs://`) into an
//! `object_store` plus the prefix inside it and the URL DataFusion resolves
//! that store under.

use std::sync::Arc;

use datafusion::execution::object_store::ObjectStoreUrl;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::ObjectStore;
use url::Url;

use crate::error::{Error, Result};

/// A local folder as an object-store prefix: created if missing, made
/// absolute (symlinks resolved), and returned with its `LocalFileSystem`
/// path. The one local opener for stores and export targets; `display` is
/// the location as the user gave it, for errors.
pub(crate) fn local_folder(
    display: &str,
    path: &std::path::Path,
) -> Result<(std::path::PathBuf, Path)> {
    std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
    let abs = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
    let prefix = Path::from_absolute_path(&abs).map_err(|e| Error::Location {
        location: display.to_string(),
        message: e.to_string(),
    })?;
    Ok((abs, prefix))
}

/// A resolved store root.
#[derive(Debug, Clone)]
pub struct StoreLocation {
    /// The root as the user gave it.
    pub display: String,
    /// The object store holding the root.
    pub store: Arc<dyn ObjectStore>,
    /// The URL (`scheme://authority`) DataFusion finds `store` under.
    pub url: ObjectStoreUrl,
    /// The root's path inside `store`.
    pub prefix: Path,
}

impl StoreLocation {
    /// Wraps an existing object store (for tests and embedding), found by
    /// DataFusion under `url`, with the root at `prefix`.
    pub fn new(store: Arc<dyn ObjectStore>, url: ObjectStoreUrl, prefix: Path) -> Self {
        StoreLocation {
            display: format!("{}{}", url.as_str(), prefix),
            store,
            url,
            prefix,
        }
    }

    /// The root as a URL any process can open the same store from
    /// (`file:///abs/path`, `s3://bucket/prefix`): a local root is absolute.
    pub fn root_url(&self) -> String {
        format!("{}{}", self.url.as_str(), self.prefix)
    }

    /// Parses a store root. Local paths are created if missing. Cloud URLs
    /// take their credentials and options from the environment, as the
    /// `object_store` builders' `from_env()` read them (`AWS_*`, `AZURE_*`,
    /// `GOOGLE_*`).
    ///
    /// ```
    /// # use nusomi_export::store::StoreLocation;
    /// let loc = StoreLocation::parse("memory://").unwrap();
    /// assert_eq!(loc.url.as_str(), "memory:///");
    /// ```
    pub fn parse(root: &str) -> Result<Self> {
        let mut loc = Self::parse_uncounted(root)?;
        if super::counting::enabled() {
            loc.store = Arc::new(super::counting::CountingStore(loc.store));
        }
        Ok(loc)
    }

    fn parse_uncounted(root: &str) -> Result<Self> {
        let bad = |message: String| Error::Location {
            location: root.to_string(),
            message,
        };
        if !root.contains("://") {
            return Self::local(root, std::path::Path::new(root));
        }
        let url = Url::parse(root).map_err(|e| bad(format!("not a URL: {e}")))?;
        let prefix = Path::from_url_path(url.path()).map_err(|e| bad(e.to_string()))?;
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|_| bad("not a local file URL".into()))?;
                return Self::local(root, &path);
            }
            "memory" => Arc::new(InMemory::new()),
            "s3" | "s3a" => Arc::new(
                AmazonS3Builder::from_env()
                    .with_url(root)
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            "az" | "azure" | "abfs" | "abfss" => Arc::new(
                MicrosoftAzureBuilder::from_env()
                    .with_url(root)
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            "gs" => Arc::new(
                GoogleCloudStorageBuilder::from_env()
                    .with_url(root)
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            other => {
                return Err(bad(format!(
                    "unsupported scheme {other:?} (use a path, file://, memory://, s3://, az://, gs://)"
                )))
            }
        };
        let base = format!("{}://{}", url.scheme(), url.authority());
        let object_url = ObjectStoreUrl::parse(&base).map_err(|e| bad(e.to_string()))?;
        Ok(StoreLocation {
            display: root.to_string(),
            store,
            url: object_url,
            prefix,
        })
    }

    fn local(display: &str, path: &std::path::Path) -> Result<Self> {
        let (_, prefix) = local_folder(display, path)?;
        Ok(StoreLocation {
            display: display.to_string(),
            store: Arc::new(LocalFileSystem::new()),
            url: ObjectStoreUrl::local_filesystem(),
            prefix,
        })
    }
}

/// The key of `name` under `prefix`, each `/`-separated part of `name` one
/// path segment (object_store escapes a `/` inside a segment). Parts such
/// as `..` stay literal segments: they never climb out of `prefix`.
pub(crate) fn relative_key(prefix: &Path, name: &str) -> Path {
    name.split('/').fold(prefix.clone(), |p, part| p.join(part))
}
