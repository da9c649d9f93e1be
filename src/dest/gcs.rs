//! `gcs` destinations: an `object_store` Google Cloud Storage client for a
//! bucket. `service_account` is a key file path or the key JSON itself;
//! without it the environment decides (`GOOGLE_SERVICE_ACCOUNT`,
//! `GOOGLE_APPLICATION_CREDENTIALS`, the metadata server). Presigned links
//! are V4 signed URLs made with the service account's key.

use std::sync::Arc;

use object_store::gcp::{GoogleCloudStorage, GoogleCloudStorageBuilder};

use super::DestConfig;
use crate::error::{Error, Result};

/// The client for `bucket`.
pub(crate) fn client(
    bucket: &str,
    service_account: Option<&str>,
    cfg: &DestConfig,
) -> Result<Arc<GoogleCloudStorage>> {
    let mut b = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(bucket)
        .with_retry(cfg.retry.clone())
        .with_client_options(cfg.client.clone());
    if let Some(sa) = service_account {
        if sa.trim_start().starts_with('{') {
            b = b.with_service_account_key(sa);
        } else if std::path::Path::new(sa).is_file() {
            b = b.with_service_account_path(sa);
        } else {
            return Err(Error::Config {
                field: "destination.service_account".into(),
                message: format!("{sa:?} is neither a readable key file nor key JSON"),
            });
        }
    }
    // Errors from the builder may quote configuration; never the key itself.
    b.build().map(Arc::new).map_err(|e| Error::Config {
        field: "destination".into(),
        message: format!(
            "gcs bucket {bucket:?}: {}",
            super::redact(&e.to_string(), service_account)
        ),
    })
}
