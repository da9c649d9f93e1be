//! [`DestConfig`]: the settings every export of a process opens its
//! destination with, from defaults and `NUSOMI_*` environment variables.

use std::time::Duration;

use object_store::{ClientOptions, RetryConfig};

use super::signing::UrlSigner;
use crate::error::{Error, Result};
use crate::spec::Destination;

/// Settings for opening destinations, shared by every export of a process.
#[derive(Debug, Clone)]
pub struct DestConfig {
    /// Workspace id, sent as STS `ExternalId` when assuming a role.
    pub workspace_id: Option<String>,
    /// STS endpoint (default: the destination's `endpoint` when
    /// `sts_from_destination`, else AWS).
    pub sts_endpoint: Option<String>,
    /// Whether a destination's `endpoint` may also serve as the STS
    /// endpoint (the CLI and a trusted workspace: yes; workspaces of a
    /// hosted service: never, so a signed AssumeRole request cannot be sent
    /// to a host the caller chose). `false` also resolves an S3
    /// `endpoint`'s host name on each connection and refuses addresses
    /// that are not public (`public_only.rs`).
    pub sts_from_destination: bool,
    /// Assumed-role sessions are renewed when less than this is left.
    pub credential_refresh: Duration,
    /// The service's multi-tenant Entra ID app, for `azure_blob`
    /// destinations naming a `tenant_id`.
    pub azure_app: Option<AzureApp>,
    /// Blob endpoint instead of `https://{account}.blob.core.windows.net`
    /// (`NUSOMI_AZURE_ENDPOINT`; an emulator or a private endpoint).
    pub azure_endpoint: Option<String>,
    /// IAM Credentials API (`NUSOMI_GCP_IAM_URL`; default
    /// `https://iamcredentials.googleapis.com`) for impersonated GCS accounts.
    pub gcp_iam_url: String,
    /// Length of assumed-role sessions (`NUSOMI_ROLE_SESSION_SECS`, 900 to
    /// 43,200 s; STS's default of 1 h when unset).
    pub role_session: Option<Duration>,
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

/// The service's own multi-tenant Entra ID app (`AZURE_CLIENT_ID`,
/// `AZURE_CLIENT_SECRET` or `AZURE_FEDERATED_TOKEN_FILE`,
/// `AZURE_AUTHORITY_HOST`).
#[derive(Debug, Clone)]
pub struct AzureApp {
    /// The app's client id.
    pub client_id: String,
    /// Its client secret.
    pub client_secret: Option<Secret>,
    /// A federated token file (workload identity) instead of a secret.
    pub federated_token_file: Option<String>,
    /// Entra ID authority (default `https://login.microsoftonline.com`).
    pub authority_host: Option<String>,
}

/// A secret that `Debug` never shows.
#[derive(Clone)]
pub struct Secret(pub String);

impl Secret {
    /// The secret itself, for the one call that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
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
            sts_from_destination: true,
            credential_refresh: Duration::from_secs(300),
            role_session: None,
            gcp_iam_url: super::IAM_CREDENTIALS_URL.into(),
            azure_app: None,
            azure_endpoint: None,
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
    /// `NUSOMI_CREDENTIAL_REFRESH_SECS`, `NUSOMI_ROLE_SESSION_SECS`,
    /// `NUSOMI_GCP_IAM_URL`, the Entra ID app (`AZURE_CLIENT_ID`, …),
    /// `NUSOMI_AZURE_ENDPOINT`,
    /// `NUSOMI_SIGNED_STORAGE` (a folder or
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
        if let Some(client_id) = var("AZURE_CLIENT_ID") {
            c.azure_app = Some(AzureApp {
                client_id,
                client_secret: var("AZURE_CLIENT_SECRET").map(Secret),
                federated_token_file: var("AZURE_FEDERATED_TOKEN_FILE"),
                authority_host: var("AZURE_AUTHORITY_HOST"),
            });
        }
        c.azure_endpoint = var("NUSOMI_AZURE_ENDPOINT");
        if let Some(u) = var("NUSOMI_GCP_IAM_URL") {
            c.gcp_iam_url = u;
        }
        if let Some(d) = secs("NUSOMI_ROLE_SESSION_SECS")? {
            if !(900..=43_200).contains(&d.as_secs()) {
                return Err(Error::Config {
                    field: "NUSOMI_ROLE_SESSION_SECS".into(),
                    message: format!(
                        "{} s is outside what STS grants (900 to 43200)",
                        d.as_secs()
                    ),
                });
            }
            c.role_session = Some(d);
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
