//! Destinations: where an export's shards and manifest go. Every destination
//! kind of SPEC §4 becomes an [`ExportTarget`] — an `object_store`, a prefix
//! inside it, the URL users see, and for `signed_url` the way download links
//! are made. Process-wide settings (workspace id, STS endpoint, retry policy,
//! `signed_url` storage, link lifetime and key) live in [`DestConfig`].
//! Credentials are read from the environment by the object-store builders and
//! never copied into anything this crate prints or stores.

mod azure;
mod gcs;
mod s3;
mod signing;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

pub use s3::AssumedRole;
pub use signing::{capped_ttl, files_url, LinkError, UrlSigner};

use crate::sink::ShardLinks;
use crate::spec::Destination;
use crate::{Error, Result};

/// Settings for opening destinations, shared by every export of a process.
#[derive(Debug, Clone)]
pub struct DestConfig {
    /// Workspace id, sent as STS `ExternalId` when assuming a role.
    pub workspace_id: Option<String>,
    /// STS endpoint (default: the destination's `endpoint`, else AWS).
    pub sts_endpoint: Option<String>,
    /// Assumed-role sessions are renewed when less than this is left.
    pub credential_refresh: Duration,
    /// Retry policy for transient object-store errors.
    pub retry: RetryConfig,
    /// HTTP client options for cloud stores (timeouts, proxies, pooling).
    pub client: ClientOptions,
    /// Where `signed_url` exports are kept (each under `<export id>/`).
    pub signed_storage: Destination,
    /// Base URL of `nusomi serve`, for HMAC-signed links.
    pub public_url: String,
    /// Lifetime of download links (capped by the credentials' lifetime).
    pub link_ttl: Duration,
    /// Key for HMAC-signed links (needed when `signed_storage` cannot presign).
    pub signing_key: Option<UrlSigner>,
    /// Multipart part size for shard uploads (object stores need ≥ 5 MiB
    /// except for the last part).
    pub part_bytes: usize,
}

/// Longest presigned link S3 and GCS accept: 7 days.
pub const MAX_PRESIGN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Default multipart part size: 10 MiB.
pub const DEFAULT_PART_BYTES: usize = 10 << 20;

impl Default for DestConfig {
    fn default() -> Self {
        DestConfig {
            workspace_id: None,
            sts_endpoint: None,
            credential_refresh: Duration::from_secs(300),
            retry: RetryConfig::default(),
            client: ClientOptions::default(),
            signed_storage: Destination::Local {
                path: "nusomi-signed".into(),
            },
            public_url: "http://127.0.0.1:8080".into(),
            link_ttl: Duration::from_secs(24 * 3600),
            signing_key: None,
            part_bytes: DEFAULT_PART_BYTES,
        }
    }
}

impl DestConfig {
    /// Reads `NUSOMI_WORKSPACE_ID`, `NUSOMI_STS_ENDPOINT`,
    /// `NUSOMI_CREDENTIAL_REFRESH_SECS`, `NUSOMI_SIGNED_STORAGE` (a folder or
    /// a destination object as JSON), `NUSOMI_PUBLIC_URL`,
    /// `NUSOMI_LINK_TTL_SECS`, `NUSOMI_SIGNING_KEY`, `NUSOMI_MAX_RETRIES` and
    /// `NUSOMI_PART_BYTES` over the defaults.
    pub fn from_env() -> Result<Self> {
        let mut c = DestConfig::default();
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let secs = |k: &str| -> Result<Option<Duration>> {
            var(k)
                .map(|v| {
                    v.parse::<u64>()
                        .map(Duration::from_secs)
                        .map_err(|_| Error::Config {
                            field: k.into(),
                            message: format!("{v:?} is not a number of seconds"),
                        })
                })
                .transpose()
        };
        c.workspace_id = var("NUSOMI_WORKSPACE_ID");
        c.sts_endpoint = var("NUSOMI_STS_ENDPOINT");
        if let Some(d) = secs("NUSOMI_CREDENTIAL_REFRESH_SECS")? {
            c.credential_refresh = d;
        }
        if let Some(s) = var("NUSOMI_SIGNED_STORAGE") {
            c.signed_storage = parse_storage(&s)?;
        }
        if let Some(u) = var("NUSOMI_PUBLIC_URL") {
            c.public_url = u;
        }
        if let Some(d) = secs("NUSOMI_LINK_TTL_SECS")? {
            c.link_ttl = d;
        }
        if let Some(k) = var("NUSOMI_SIGNING_KEY") {
            c.signing_key = Some(UrlSigner::new(k.into_bytes()));
        }
        if let Some(n) = var("NUSOMI_MAX_RETRIES") {
            c.retry.max_retries = n.parse().map_err(|_| Error::Config {
                field: "NUSOMI_MAX_RETRIES".into(),
                message: format!("{n:?} is not a number"),
            })?;
        }
        if let Some(p) = var("NUSOMI_PART_BYTES") {
            c.part_bytes = p.parse().map_err(|_| Error::Config {
                field: "NUSOMI_PART_BYTES".into(),
                message: format!("{p:?} is not a number of bytes"),
            })?;
        }
        Ok(c)
    }
}

/// `signed_url` storage as configured: a folder, or a destination object.
pub fn parse_storage(s: &str) -> Result<Destination> {
    if !s.trim_start().starts_with('{') {
        return Ok(Destination::Local { path: s.into() });
    }
    let v: serde_json::Value = serde_json::from_str(s).map_err(|e| Error::Config {
        field: "NUSOMI_SIGNED_STORAGE".into(),
        message: format!("not JSON: {e}"),
    })?;
    let spec = serde_json::json!({"workflow": "x", "format": "jsonl", "destination": v});
    let parsed =
        crate::spec::ExportSpec::parse(&spec, chrono::Utc::now()).map_err(|e| Error::Config {
            field: "NUSOMI_SIGNED_STORAGE".into(),
            message: e.to_string(),
        })?;
    match parsed.destination {
        Some(Destination::SignedUrl) | None => Err(Error::Config {
            field: "NUSOMI_SIGNED_STORAGE".into(),
            message: "must be local, s3, gcs or azure_blob".into(),
        }),
        Some(d) => Ok(d),
    }
}

/// Replaces `secret` (if any) in `text`.
pub(crate) fn redact(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if s.len() >= 8 && text.contains(s) => text.replace(s, "<redacted>"),
        _ => text.to_string(),
    }
}

/// How `signed_url` exports' download links are made.
#[derive(Clone)]
pub enum Links {
    /// Presigned by the object store (S3, Azure SAS, GCS V4).
    Presign {
        /// The store's signer.
        signer: Arc<dyn Signer>,
        /// Assumed-role credentials whose lifetime caps the links'.
        role: Option<Arc<AssumedRole>>,
        /// Wanted lifetime.
        ttl: Duration,
        /// Prefix of the files inside the store.
        prefix: Path,
    },
    /// HMAC-signed links served and checked by `nusomi serve`.
    Hmac {
        /// The key.
        signer: UrlSigner,
        /// Base URL of the service.
        public_url: String,
        /// The export.
        export_id: String,
        /// Lifetime.
        ttl: Duration,
    },
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Links::Presign { ttl, prefix, .. } => f
                .debug_struct("Presign")
                .field("ttl", ttl)
                .field("prefix", prefix)
                .finish_non_exhaustive(),
            Links::Hmac {
                public_url,
                export_id,
                ttl,
                ..
            } => f
                .debug_struct("Hmac")
                .field("public_url", public_url)
                .field("export_id", export_id)
                .field("ttl", ttl)
                .finish_non_exhaustive(),
        }
    }
}

#[async_trait]
impl ShardLinks for Links {
    async fn link(&self, name: &str) -> Result<(String, SystemTime)> {
        match self {
            Links::Presign {
                signer,
                role,
                ttl,
                prefix,
            } => {
                let path = prefix.clone().join(name);
                // S3 and GCS refuse presigned lifetimes over 7 days.
                let ttl = (*ttl).min(MAX_PRESIGN_TTL);
                let sign = |ttl: Duration| {
                    let path = path.clone();
                    async move {
                        signer
                            .signed_url(http::Method::GET, &path, ttl)
                            .await
                            .map_err(Error::destination("presign", &path))
                    }
                };
                // Sign first: that fetches (or renews) the credentials whose
                // expiry then caps the link.
                let first = sign(ttl).await?;
                let capped = match role {
                    Some(role) => capped_ttl(ttl, role.expires().await),
                    None => ttl,
                };
                if capped == ttl {
                    return Ok((first.to_string(), SystemTime::now() + ttl));
                }
                let url = sign(capped).await?;
                Ok((url.to_string(), SystemTime::now() + capped))
            }
            Links::Hmac {
                signer,
                public_url,
                export_id,
                ttl,
            } => {
                let expires = SystemTime::now() + *ttl;
                Ok((signer.link(public_url, export_id, name, expires), expires))
            }
        }
    }
}

/// An export's output location.
#[derive(Debug, Clone)]
pub struct ExportTarget {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Prefix inside it.
    pub prefix: Path,
    /// URL of the prefix, ending in `/` (`file:///…/`, `s3://bucket/prefix/`,
    /// `gs://…/`, `az://account/container/prefix/`).
    pub url: String,
    /// Download links for `signed_url` exports.
    pub links: Option<Links>,
    /// Multipart part size for shard uploads.
    pub part_bytes: usize,
    /// The folder, when the target is one on local disk.
    pub local_dir: Option<std::path::PathBuf>,
}

fn prefix_path(field: &str, prefix: &str) -> Result<Path> {
    Path::parse(prefix.trim_matches('/')).map_err(|e| Error::Config {
        field: field.into(),
        message: format!("{prefix:?} is not a valid object prefix: {e}"),
    })
}

fn with_slash(p: &Path) -> String {
    if p.as_ref().is_empty() {
        String::new()
    } else {
        format!("{p}/")
    }
}

impl ExportTarget {
    /// A target over an existing store.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path, url: impl Into<String>) -> Self {
        ExportTarget {
            store,
            prefix,
            url: url.into(),
            links: None,
            part_bytes: DEFAULT_PART_BYTES,
            local_dir: None,
        }
    }

    /// Sets the multipart part size.
    pub fn with_part_bytes(mut self, part_bytes: usize) -> Self {
        self.part_bytes = part_bytes;
        self
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
        let mut t = ExportTarget::new(
            Arc::new(LocalFileSystem::new()),
            prefix,
            format!("file://{}/", abs.display()),
        );
        t.local_dir = Some(abs);
        Ok(t)
    }

    /// Deletes what uploads cut off by a crash left in a local folder and
    /// returns how many files. object_store writes a local object to
    /// `name#<digits>` and renames it when complete; such staging files are
    /// hidden from listings, so a resumed export would never see them. Only
    /// the export's own names are touched (`shard-*`, `manifest.json`,
    /// `README.md`). A no-op for object stores.
    pub fn sweep_interrupted_uploads(&self) -> Result<usize> {
        let Some(dir) = &self.local_dir else {
            return Ok(0);
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io(dir, e)),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((base, suffix)) = name.rsplit_once('#') else {
                continue;
            };
            let staging = !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit());
            let ours = base.starts_with("shard-") || base == "manifest.json" || base == "README.md";
            if staging && ours {
                std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The target of a spec destination without `signed_url` support (which
    /// needs an export id): see [`ExportTarget::open`].
    pub fn from_destination(d: &Destination) -> Result<Self> {
        Self::open(d, "", &DestConfig::default())
    }

    /// The target of destination `d` for export `export_id` under `cfg`.
    /// Nothing is contacted yet: unreachable stores and refused credentials
    /// surface on the first operation, as an error naming it.
    pub fn open(d: &Destination, export_id: &str, cfg: &DestConfig) -> Result<Self> {
        if !matches!(d, Destination::SignedUrl) {
            let (t, _) = Self::open_store(d, cfg)?;
            return Ok(t.with_part_bytes(cfg.part_bytes));
        }
        if export_id.is_empty() {
            return Err(Error::Config {
                field: "destination.kind".into(),
                message: "signed_url needs an export id (use export create or the service)".into(),
            });
        }
        let (mut t, presigner) = Self::open_store(&cfg.signed_storage, cfg)?;
        t.prefix = t.prefix.clone().join(export_id);
        t.url = format!("{}{export_id}/", t.url);
        t.local_dir = t.local_dir.map(|d| d.join(export_id));
        t.part_bytes = cfg.part_bytes;
        t.links = Some(match presigner {
            Some((signer, role)) => Links::Presign {
                signer,
                role,
                ttl: cfg.link_ttl,
                prefix: t.prefix.clone(),
            },
            None => Links::Hmac {
                signer: cfg.signing_key.clone().ok_or_else(|| Error::Config {
                    field: "NUSOMI_SIGNING_KEY".into(),
                    message: "signed_url exports kept in a folder need the key `nusomi serve` \
                              checks links with"
                        .into(),
                })?,
                public_url: cfg.public_url.clone(),
                export_id: export_id.to_string(),
                ttl: cfg.link_ttl,
            },
        });
        Ok(t)
    }

    #[allow(clippy::type_complexity)]
    fn open_store(
        d: &Destination,
        cfg: &DestConfig,
    ) -> Result<(Self, Option<(Arc<dyn Signer>, Option<Arc<AssumedRole>>)>)> {
        Ok(match d {
            Destination::Local { path } => (Self::local(path)?, None),
            Destination::S3 {
                bucket,
                prefix,
                region,
                role_arn,
                endpoint,
            } => {
                let c = s3::client(
                    bucket,
                    region.as_deref(),
                    endpoint.as_deref(),
                    role_arn.as_deref(),
                    cfg,
                )?;
                let prefix = prefix_path("destination.prefix", prefix)?;
                let url = format!("s3://{bucket}/{}", with_slash(&prefix));
                let signer: Arc<dyn Signer> = c.store.clone();
                (
                    ExportTarget::new(c.store, prefix, url),
                    Some((signer, c.role)),
                )
            }
            Destination::Gcs {
                bucket,
                prefix,
                service_account,
            } => {
                let store = gcs::client(bucket, service_account.as_deref(), cfg)?;
                let prefix = prefix_path("destination.prefix", prefix)?;
                let url = format!("gs://{bucket}/{}", with_slash(&prefix));
                let signer: Arc<dyn Signer> = store.clone();
                (ExportTarget::new(store, prefix, url), Some((signer, None)))
            }
            Destination::AzureBlob {
                account,
                container,
                prefix,
            } => {
                let store = azure::client(account, container, cfg)?;
                let prefix = prefix_path("destination.prefix", prefix)?;
                let url = format!("az://{account}/{container}/{}", with_slash(&prefix));
                let signer: Arc<dyn Signer> = store.clone();
                (ExportTarget::new(store, prefix, url), Some((signer, None)))
            }
            Destination::SignedUrl => {
                return Err(Error::Config {
                    field: "NUSOMI_SIGNED_STORAGE".into(),
                    message: "signed_url storage cannot itself be signed_url".into(),
                })
            }
        })
    }

    /// URL of an object under the prefix.
    pub fn url_of(&self, name: &str) -> String {
        format!("{}{name}", self.url)
    }

    /// Where users fetch `manifest.json`: a download link for `signed_url`
    /// exports, else [`ExportTarget::url_of`].
    pub async fn manifest_url(&self) -> Result<String> {
        match &self.links {
            Some(l) => Ok(l.link("manifest.json").await?.0),
            None => Ok(self.url_of("manifest.json")),
        }
    }
}
