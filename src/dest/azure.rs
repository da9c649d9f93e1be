//! `azure_blob` destinations: an `object_store` Azure Blob client for
//! `account` / `container`.
//!
//! * With `tenant_id` (a customer's tenant), the token comes from that
//!   tenant for the service's own multi-tenant Entra ID app
//!   ([`super::config::AzureApp`]: `AZURE_CLIENT_ID` with
//!   `AZURE_CLIENT_SECRET` or a federated token file
//!   `AZURE_FEDERATED_TOKEN_FILE`), so one service exports into many
//!   customers' storage accounts, each consenting in its own tenant. No
//!   account key or SAS from the server's environment is used then.
//! * Without it, credentials and options come from the environment as
//!   `MicrosoftAzureBuilder::from_env` reads them (`AZURE_STORAGE_ACCOUNT_KEY`,
//!   `AZURE_STORAGE_SAS_KEY`, client secrets, managed identity, or
//!   `AZURE_STORAGE_USE_EMULATOR=true` for Azurite). An account key or SAS
//!   there belongs to the account `AZURE_STORAGE_ACCOUNT_NAME` names and is
//!   refused for any other account.
//!
//! Presigned links are service SAS URLs signed with the account key.

use std::sync::Arc;

use object_store::azure::{MicrosoftAzure, MicrosoftAzureBuilder};

use super::DestConfig;
use crate::error::{Error, Result};

/// Environment variables that carry one account's key or SAS.
const ACCOUNT_SECRETS: [&str; 5] = [
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_MASTER_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
];

/// The client for `container` in `account`, with a token from `tenant_id`
/// when given.
pub(crate) fn client(
    account: &str,
    container: &str,
    tenant_id: Option<&str>,
    cfg: &DestConfig,
) -> Result<Arc<MicrosoftAzure>> {
    let config = |field: &str, message: String| Error::Config {
        field: field.into(),
        message,
    };
    let mut client = cfg.client.clone();
    let b = match tenant_id {
        Some(tenant) => {
            let app = cfg.azure_app.as_ref().ok_or_else(|| {
                config(
                    "destination.tenant_id",
                    "this service has no Entra ID app to act in a customer's tenant \
                     (set AZURE_CLIENT_ID with AZURE_CLIENT_SECRET or AZURE_FEDERATED_TOKEN_FILE)"
                        .into(),
                )
            })?;
            let mut b = MicrosoftAzureBuilder::new()
                .with_tenant_id(tenant)
                .with_client_id(&app.client_id);
            if let Some(secret) = &app.client_secret {
                b = b.with_client_secret(secret.expose());
            }
            if let Some(file) = &app.federated_token_file {
                b = b.with_federated_token_file(file);
            }
            if let Some(host) = &app.authority_host {
                client = client.with_allow_http(host.starts_with("http://"));
                b = b.with_authority_host(host);
            }
            b
        }
        None => {
            let bound = std::env::var("AZURE_STORAGE_ACCOUNT_NAME").ok();
            let secret = ACCOUNT_SECRETS
                .iter()
                .find(|k| std::env::var(k).is_ok_and(|v| !v.is_empty()));
            if let (Some(var), Some(bound)) = (secret, &bound) {
                if bound != account {
                    return Err(config(
                        "destination.account",
                        format!(
                            "the server's {var} belongs to account {bound:?}, not {account:?}: \
                             name the customer's tenant_id so the service's app gets a token there"
                        ),
                    ));
                }
            }
            MicrosoftAzureBuilder::from_env()
        }
    };
    let mut b = b.with_account(account).with_container_name(container);
    if let Some(ep) = &cfg.azure_endpoint {
        client = client.with_allow_http(ep.starts_with("http://"));
        b = b.with_endpoint(ep.clone());
    }
    b.with_retry(cfg.retry.clone())
        .with_client_options(client)
        .build()
        .map(Arc::new)
        .map_err(|e| {
            config(
                "destination",
                format!("azure_blob account {account:?} container {container:?}: {e}"),
            )
        })
}
