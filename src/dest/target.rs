//! [`ExportTarget`]: an export's output location — an `object_store`, the
//! prefix inside it, the URL users see, and (for `signed_url`) how download
//! links are made — opened from a spec destination under a [`DestConfig`].

use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::ObjectStore;

use super::config::{DestConfig, DEFAULT_PART_BYTES};
use super::links::{Links, ShardLinks};
use super::s3::AssumedRole;
use super::{azure, gcs, s3};
use crate::error::{Error, Result};
use crate::spec::Destination;
use crate::store::local_folder;

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
    /// The role an S3 destination's credentials come from.
    role: Option<Arc<AssumedRole>>,
}

/// How long [`ExportTarget::check`] waits for a destination.
pub const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

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
            role: None,
        }
    }

    /// Checks that the destination can be used before anything is queued:
    /// its role (if any) can be assumed — else the error is advice naming
    /// the role, the service's principal, the external id and the trust
    /// statement to add — and its prefix can be listed.
    /// Both steps together take at most [`CHECK_TIMEOUT`].
    pub async fn check(&self) -> Result<()> {
        let steps = async {
            if let Some(role) = &self.role {
                role.check().await.map_err(|message| Error::Config {
                    field: "destination.role_arn".into(),
                    message,
                })?;
            }
            self.store
                .list_with_delimiter(Some(&self.prefix))
                .await
                .map(|_| ())
                .map_err(|e| Error::Config {
                    field: "destination".into(),
                    message: format!("cannot list {}: {}", self.url, super::error_chain(&e)),
                })
        };
        match tokio::time::timeout(CHECK_TIMEOUT, steps).await {
            Ok(done) => done,
            Err(_) => Err(Error::Config {
                field: "destination".into(),
                message: format!(
                    "{} did not answer within {} s",
                    self.url,
                    CHECK_TIMEOUT.as_secs()
                ),
            }),
        }
    }

    /// Sets the multipart part size.
    pub fn with_part_bytes(mut self, part_bytes: usize) -> Self {
        self.part_bytes = part_bytes;
        self
    }

    /// A local folder (created if missing).
    pub fn local(path: &str) -> Result<Self> {
        let (abs, prefix) = local_folder(path, std::path::Path::new(path))?;
        let mut t = ExportTarget::new(
            Arc::new(super::no_follow::NoFollow::new(
                Arc::new(LocalFileSystem::new()),
                abs.clone(),
            )),
            prefix,
            format!("file://{}/", abs.display()),
        );
        t.local_dir = Some(abs);
        Ok(t)
    }

    /// The target of destination `d` for export `export_id` under `cfg`,
    /// with a `region` missing from an AWS S3 destination (no `endpoint`, no
    /// `AWS_REGION` in the environment) resolved from the bucket
    /// (object_store's `resolve_bucket_region`: one HEAD to AWS) instead of
    /// defaulting to us-east-1. Nothing else is contacted yet: unreachable
    /// stores and refused credentials surface on the first operation.
    pub async fn open_resolving(
        d: &Destination,
        export_id: &str,
        cfg: &DestConfig,
    ) -> Result<Self> {
        if let Destination::S3 {
            bucket,
            prefix,
            region: None,
            role_arn,
            endpoint: None,
        } = d
        {
            let named = ["AWS_REGION", "AWS_DEFAULT_REGION"]
                .iter()
                .any(|k| std::env::var(k).is_ok_and(|v| !v.is_empty()));
            if !named {
                let region = object_store::aws::resolve_bucket_region(bucket, &cfg.client)
                    .await
                    .map_err(|e| Error::Config {
                        field: "destination.region".into(),
                        message: format!(
                            "missing, and the region of bucket {bucket:?} could not be resolved: {e}"
                        ),
                    })?;
                let d = Destination::S3 {
                    bucket: bucket.clone(),
                    prefix: prefix.clone(),
                    region: Some(region),
                    role_arn: role_arn.clone(),
                    endpoint: None,
                };
                return Self::open(&d, export_id, cfg);
            }
        }
        Self::open(d, export_id, cfg)
    }

    /// Opens `d` for export `export_id` (a `region` missing from an AWS S3
    /// destination defaults to the environment's, else us-east-1; see
    /// [`ExportTarget::open_resolving`]).
    pub fn open(d: &Destination, export_id: &str, cfg: &DestConfig) -> Result<Self> {
        if !matches!(d, Destination::SignedUrl) {
            let (t, _) = Self::open_store(d, export_id, cfg)?;
            return Ok(t.with_part_bytes(cfg.part_bytes));
        }
        if export_id.is_empty() {
            return Err(Error::Config {
                field: "destination.kind".into(),
                message: "signed_url needs an export id (use export create or the service)".into(),
            });
        }
        let (mut t, presigner) = Self::open_store(&cfg.signed_storage, export_id, cfg)?;
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
        export_id: &str,
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
                    export_id,
                    cfg,
                )?;
                let prefix = prefix_path("destination.prefix", prefix)?;
                let url = format!("s3://{bucket}/{}", with_slash(&prefix));
                let signer = Arc::clone(&c.store) as Arc<dyn Signer>;
                let mut t = ExportTarget::new(c.store, prefix, url);
                t.role = c.role.clone();
                (t, Some((signer, c.role)))
            }
            Destination::Gcs {
                bucket,
                prefix,
                service_account,
            } => {
                let c = gcs::client(bucket, service_account.as_deref(), cfg)?;
                let prefix = prefix_path("destination.prefix", prefix)?;
                let url = format!("gs://{bucket}/{}", with_slash(&prefix));
                (
                    ExportTarget::new(c.store, prefix, url),
                    Some((c.signer, None)),
                )
            }
            Destination::AzureBlob {
                account,
                container,
                prefix,
                tenant_id,
            } => {
                let store = azure::client(account, container, tenant_id.as_deref(), cfg)?;
                let prefix = prefix_path("destination.prefix", prefix)?;
                let url = format!("az://{account}/{container}/{}", with_slash(&prefix));
                let signer = Arc::clone(&store) as Arc<dyn Signer>;
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

    /// Where users fetch the file `name` of the export: a download link for
    /// `signed_url` exports, else [`ExportTarget::url_of`].
    pub async fn public_url(&self, name: &str) -> Result<String> {
        match &self.links {
            Some(l) => Ok(l.link(name).await?.0),
            None => Ok(self.url_of(name)),
        }
    }
}
