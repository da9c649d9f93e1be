//! `azure_blob` destinations: an `object_store` Azure Blob client for
//! `account` / `container`. Credentials and options come from the environment
//! as `MicrosoftAzureBuilder::from_env` reads them (`AZURE_STORAGE_ACCOUNT_KEY`,
//! `AZURE_STORAGE_SAS_KEY`, client secrets, managed identity, or
//! `AZURE_STORAGE_USE_EMULATOR=true` for Azurite). Presigned links are service
//! SAS URLs signed with the account key.

use std::sync::Arc;

use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};

use super::DestConfig;
use crate::error::{Error, Result};

/// The client for `container` in `account`.
pub(crate) fn client(
    account: &str,
    container: &str,
    cfg: &DestConfig,
) -> Result<Arc<MicrosoftAzure>> {
    MicrosoftAzureBuilder::from_env()
        .with_account(account)
        .with_container_name(container)
        .with_retry(cfg.retry.clone())
        .with_client_options(cfg.client.clone())
        .build()
        .map(Arc::new)
        .map_err(|e| Error::Config {
            field: "destination".into(),
            message: format!("azure_blob account {account:?} container {container:?}: {e}"),
        })
}
