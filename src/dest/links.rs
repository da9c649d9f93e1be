//! Download links for `signed_url` exports: [`ShardLinks`] is what the
//! sink asks for a file's link, [`Links`] the two ways of making one
//! (presigned by the store, or HMAC links served by `nusomi serve`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use object_store::path::Path;
use object_store::signer::Signer;

use super::config::MAX_PRESIGN_TTL;
use super::s3::AssumedRole;
use super::signing::{capped_ttl, UrlSigner};
use crate::error::{Error, Result};

/// Makes time-limited download links for files of an export.
#[async_trait]
pub trait ShardLinks: Send + Sync + std::fmt::Debug {
    /// A link to `name` (relative to the export's prefix) and its expiry.
    async fn link(&self, name: &str) -> Result<(String, SystemTime)>;
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
                let path = crate::store::relative_key(prefix, name);
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
