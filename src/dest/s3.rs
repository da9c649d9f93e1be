//! `s3` destinations: an `object_store` S3 client for a bucket, optionally an
//! S3-compatible `endpoint`, and — when the destination names a `role_arn` —
//! credentials from STS `AssumeRole` with `ExternalId` = the workspace id.
//! [`AssumedRole`] bridges `aws-config`'s `AssumeRoleProvider` (base
//! credentials from the usual AWS environment chain) into object_store's
//! `CredentialProvider`, caches the session and refreshes it before it
//! expires, so long exports keep signing with valid credentials.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::sts::AssumeRoleProvider;
use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsCredential};
use object_store::CredentialProvider;
use tokio::sync::{Mutex, OnceCell};

use super::{error_chain, DestConfig};
use crate::error::{Error, Result};

/// The STS session name when no export id is known.
const DEFAULT_SESSION_NAME: &str = "nusomi-export";

/// An S3 destination's client and, with a role, its credentials.
#[derive(Debug)]
pub(crate) struct S3Client {
    pub store: Arc<AmazonS3>,
    pub role: Option<Arc<AssumedRole>>,
}

/// Builds the client for `bucket`. Options not in the destination (static
/// keys, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, …) come from the environment as
/// `AmazonS3Builder::from_env` reads them.
pub(crate) fn client(
    bucket: &str,
    region: Option<&str>,
    endpoint: Option<&str>,
    role_arn: Option<&str>,
    export_id: &str,
    cfg: &DestConfig,
) -> Result<S3Client> {
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(cfg.retry.clone())
        .with_client_options(cfg.client.clone());
    if let Some(r) = region {
        b = b.with_region(r);
    }
    if let Some(ep) = endpoint {
        b = b
            .with_endpoint(ep)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(ep.starts_with("http://"));
        // A policy-bound workspace's endpoint name is resolved on each
        // connection and must reach public addresses only.
        if !cfg.sts_from_destination {
            b = b.with_http_connector(super::public_only::PublicOnly);
        }
    }
    let role = match role_arn {
        Some(arn) => {
            let external_id = cfg.workspace_id.clone().ok_or_else(|| Error::Config {
                field: "destination.role_arn".into(),
                message: "assuming a role needs the workspace id as STS external id: \
                          set NUSOMI_WORKSPACE_ID or --workspace-id"
                    .into(),
            })?;
            let region = region
                .map(str::to_string)
                .or_else(|| std::env::var("AWS_REGION").ok())
                .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                .unwrap_or_else(|| "us-east-1".into());
            let sts_endpoint = cfg.sts_endpoint.clone().or_else(|| {
                endpoint
                    .filter(|_| cfg.sts_from_destination)
                    .map(str::to_string)
            });
            let role = Arc::new(
                AssumedRole::new(
                    arn,
                    &external_id,
                    &region,
                    sts_endpoint,
                    cfg.credential_refresh,
                )
                .with_session(export_id, cfg.role_session),
            );
            b = b.with_credentials(Arc::clone(&role) as _);
            Some(role)
        }
        None => None,
    };
    let store = b.build().map_err(|e| Error::Config {
        field: "destination".into(),
        message: format!("s3 bucket {bucket:?}: {e}"),
    })?;
    Ok(S3Client {
        store: Arc::new(store),
        role,
    })
}

struct Session {
    credential: Arc<AwsCredential>,
    expires: Option<SystemTime>,
}

/// Credentials of an assumed role, refreshed `refresh_before` their expiry.
pub struct AssumedRole {
    role_arn: String,
    external_id: String,
    session_name: String,
    session_length: Option<Duration>,
    base: OnceCell<aws_config::SdkConfig>,
    region: String,
    sts_endpoint: Option<String>,
    refresh_before: Duration,
    provider: OnceCell<AssumeRoleProvider>,
    session: Mutex<Option<Session>>,
    sessions_started: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for AssumedRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials themselves.
        f.debug_struct("AssumedRole")
            .field("role_arn", &self.role_arn)
            .field("region", &self.region)
            .field("sts_endpoint", &self.sts_endpoint)
            .finish_non_exhaustive()
    }
}

impl AssumedRole {
    /// A role to assume with `external_id` through STS in `region` (at
    /// `sts_endpoint` if given); sessions are renewed when less than
    /// `refresh_before` of their lifetime is left.
    pub fn new(
        role_arn: &str,
        external_id: &str,
        region: &str,
        sts_endpoint: Option<String>,
        refresh_before: Duration,
    ) -> Self {
        AssumedRole {
            role_arn: role_arn.to_string(),
            external_id: external_id.to_string(),
            session_name: DEFAULT_SESSION_NAME.to_string(),
            session_length: None,
            base: OnceCell::new(),
            region: region.to_string(),
            sts_endpoint,
            refresh_before,
            provider: OnceCell::new(),
            session: Mutex::new(None),
            sessions_started: Default::default(),
        }
    }

    /// Names the STS sessions after `export_id` (it shows in the customer's
    /// CloudTrail; characters STS refuses become `-`) and asks for sessions
    /// of `length` (STS's default, 1 h, when `None`).
    pub fn with_session(mut self, export_id: &str, length: Option<Duration>) -> Self {
        let name: String = export_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect();
        if name.len() >= 2 {
            self.session_name = name;
        }
        self.session_length = length;
        self
    }

    /// The service's own AWS configuration (base credentials, region, STS
    /// endpoint).
    async fn base(&self) -> &aws_config::SdkConfig {
        self.base
            .get_or_init(|| async {
                let http = aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https();
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .http_client(http)
                    .region(aws_config::Region::new(self.region.clone()));
                if let Some(ep) = &self.sts_endpoint {
                    loader = loader.endpoint_url(ep);
                }
                loader.load().await
            })
            .await
    }

    async fn provider(&self) -> &AssumeRoleProvider {
        self.provider
            .get_or_init(|| async {
                let conf = self.base().await;
                let mut b = AssumeRoleProvider::builder(self.role_arn.clone())
                    .external_id(self.external_id.clone())
                    .session_name(self.session_name.clone())
                    .region(aws_config::Region::new(self.region.clone()))
                    .configure(conf);
                if let Some(d) = self.session_length {
                    b = b.session_length(d);
                }
                b.build().await
            })
            .await
    }

    /// Whether the role can be assumed now; if not, advice for the
    /// customer: the role, the principal the service runs as, the external
    /// id and the trust-policy statement that lets the service in.
    pub async fn check(&self) -> std::result::Result<(), String> {
        let Err(e) = self.get_credential().await else {
            return Ok(());
        };
        let principal = match self.caller().await {
            Ok(arn) => arn,
            Err(why) => format!("the service's AWS principal (GetCallerIdentity failed: {why})"),
        };
        let statement = serde_json::json!({
            "Effect": "Allow",
            "Principal": {"AWS": principal},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": self.external_id}},
        });
        Err(format!(
            "the service ({principal}) cannot assume role {} with external id {:?}: {}. \
             The role's trust policy must allow it, e.g. with the statement {statement}",
            self.role_arn,
            self.external_id,
            error_chain(&e)
        ))
    }

    /// The ARN of the service's own identity (STS GetCallerIdentity).
    async fn caller(&self) -> std::result::Result<String, String> {
        let client = aws_sdk_sts::Client::new(self.base().await);
        let who = client
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        who.arn()
            .map(str::to_string)
            .ok_or_else(|| "no ARN in the answer".to_string())
    }

    /// When the current session expires (None before the first one or when
    /// STS gave no expiry).
    pub async fn expires(&self) -> Option<SystemTime> {
        self.session.lock().await.as_ref().and_then(|s| s.expires)
    }

    /// Sessions obtained from STS so far.
    pub fn sessions_started(&self) -> u64 {
        self.sessions_started
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait]
impl CredentialProvider for AssumedRole {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut session = self.session.lock().await;
        if let Some(s) = session.as_ref() {
            let fresh = match s.expires {
                None => true,
                Some(e) => e
                    .duration_since(SystemTime::now())
                    .is_ok_and(|left| left > self.refresh_before),
            };
            if fresh {
                return Ok(Arc::clone(&s.credential));
            }
        }
        let creds = self
            .provider()
            .await
            .provide_credentials()
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                // The STS error names the role and the reason; it carries no secret.
                source: format!(
                    "assuming role {} with the workspace external id failed: {}",
                    self.role_arn,
                    error_chain(&e)
                )
                .into(),
            })?;
        let credential = Arc::new(AwsCredential {
            key_id: creds.access_key_id().to_string(),
            secret_key: creds.secret_access_key().to_string(),
            token: creds.session_token().map(str::to_string),
        });
        self.sessions_started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *session = Some(Session {
            credential: Arc::clone(&credential),
            expires: creds.expiry(),
        });
        Ok(credential)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts_of(cfg: &DestConfig) -> String {
        let c = client(
            "b",
            Some("us-east-1"),
            Some("http://caller-chosen.example:9000"),
            Some("arn:aws:iam::000000000000:role/x"),
            "exp_T",
            cfg,
        )
        .unwrap();
        format!("{:?}", c.role.unwrap())
    }

    #[test]
    fn sts_goes_to_the_destination_endpoint_only_when_trusted() {
        let mut cfg = DestConfig {
            workspace_id: Some("ws_a".into()),
            ..Default::default()
        };
        assert!(sts_of(&cfg).contains("caller-chosen.example"));
        cfg.sts_from_destination = false;
        assert!(
            !sts_of(&cfg).contains("caller-chosen.example"),
            "{}",
            sts_of(&cfg)
        );
        cfg.sts_endpoint = Some("http://operator.example:1".into());
        assert!(sts_of(&cfg).contains("operator.example"));
    }
}
