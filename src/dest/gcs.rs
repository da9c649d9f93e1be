//! `gcs` destinations: an `object_store` Google Cloud Storage client for a
//! bucket. `service_account` is
//!
//! * an **e-mail**: the customer's account, acted as through the IAM
//!   Credentials API with the service's own base identity
//!   (`gcp_identity.rs`: `generateAccessToken` tokens, `signBlob` links);
//! * a key file path or the key JSON itself (the CLI only: the service
//!   refuses key material);
//! * absent: the environment decides (`GOOGLE_SERVICE_ACCOUNT`,
//!   `GOOGLE_APPLICATION_CREDENTIALS` — including `external_account` files
//!   of workload-identity federation — or the metadata server).

use std::sync::Arc;

use object_store::gcp::{GoogleCloudStorage, GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::signer::Signer;

use super::gcp_identity::{BaseIdentity, ImpersonatedAccount, ImpersonatedSigner};
use super::DestConfig;
use crate::error::{Error, Result};

/// A GCS destination's client and its link signer.
#[derive(Debug)]
pub(crate) struct GcsClient {
    pub store: Arc<GoogleCloudStorage>,
    pub signer: Arc<dyn Signer>,
}

/// Whether `sa` names a service account by e-mail.
fn is_email(sa: &str) -> bool {
    let sa = sa.trim();
    !sa.starts_with('{')
        && sa.contains('@')
        && !sa.contains('/')
        && !std::path::Path::new(sa).exists()
}

/// The client for `bucket`.
pub(crate) fn client(
    bucket: &str,
    service_account: Option<&str>,
    cfg: &DestConfig,
) -> Result<GcsClient> {
    let b = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
    let base_url = b
        .get_config_value(&GoogleConfigKey::BaseUrl)
        .unwrap_or_else(|| "https://storage.googleapis.com".into());
    // A plain-HTTP base URL is the operator's choice (an emulator), as an
    // S3 `endpoint` is.
    let client = cfg
        .client
        .clone()
        .with_allow_http(base_url.starts_with("http://"));
    let mut b = b.with_retry(cfg.retry.clone()).with_client_options(client);
    let config_error = |field: &str, message: String| Error::Config {
        field: field.into(),
        message,
    };
    let mut impersonated = None;
    match service_account {
        Some(sa) if is_email(sa) => {
            let base = BaseIdentity::from_env().map_err(|m| {
                config_error(
                    "destination.service_account",
                    format!("the service's Google identity: {m}"),
                )
            })?;
            let account = Arc::new(ImpersonatedAccount::new(sa.trim(), base, &cfg.gcp_iam_url));
            b = b.with_credentials(Arc::clone(&account) as _);
            impersonated = Some(account);
        }
        Some(sa) if sa.trim_start().starts_with('{') => b = b.with_service_account_key(sa),
        Some(sa) if std::path::Path::new(sa).is_file() => b = b.with_service_account_path(sa),
        Some(sa) => {
            return Err(config_error(
                "destination.service_account",
                format!(
                    "{sa:?} is neither a service-account e-mail, a readable key file nor key JSON"
                ),
            ))
        }
        None => {
            // object_store reads no external_account file: federate here
            // (any other file is left to object_store's own chain).
            let adc = std::env::var("GOOGLE_APPLICATION_CREDENTIALS").ok();
            let external = adc.and_then(|p| BaseIdentity::external_from_file(&p).ok().flatten());
            if let Some(BaseIdentity::External(src)) = external {
                b = b
                    .with_credentials(Arc::new(super::gcp_identity::FederatedCredential(src)) as _);
            }
        }
    }
    // Errors from the builder may quote configuration; never the key itself.
    let store = b.build().map(Arc::new).map_err(|e| Error::Config {
        field: "destination".into(),
        message: format!(
            "gcs bucket {bucket:?}: {}",
            super::redact(&e.to_string(), service_account)
        ),
    })?;
    let signer: Arc<dyn Signer> = match impersonated {
        Some(account) => Arc::new(ImpersonatedSigner::new(account, &base_url, bucket)),
        None => Arc::clone(&store) as _,
    };
    Ok(GcsClient { store, signer })
}
