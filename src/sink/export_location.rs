//! Where a published export is: [`open_export_location`] turns a folder,
//! its `manifest.json`, or a `file://`, `s3://`, `az://ACCOUNT/CONTAINER/…`
//! or `gs://` URL of either (the `manifest_url` an export reports) into an
//! object store and the export's prefix in it; [`verify_location`] verifies
//! the export found there (or behind an `https://` download link).

use crate::error::{Error, Result};

/// Verifies the export at `location` (see [`open_export_location`]; an
/// `http://` or `https://` location is a manifest download link).
pub async fn verify_location(location: &str) -> Result<super::Verification> {
    if ["http://", "https://"]
        .iter()
        .any(|p| location.starts_with(p))
    {
        return super::verify_link(location).await;
    }
    let (store, prefix) = open_export_location(location)?;
    super::verify(&store, &prefix).await
}

/// The store and prefix of an export given as a folder, its manifest.json,
/// or a `file://`, `s3://`, `az://ACCOUNT/CONTAINER/…` or `gs://` URL of
/// either (the `manifest_url` an export reports).
pub fn open_export_location(
    location: &str,
) -> Result<(
    std::sync::Arc<dyn object_store::ObjectStore>,
    object_store::path::Path,
)> {
    let given = location.trim_end_matches('/');
    let root = given.strip_suffix("/manifest.json").unwrap_or(given);
    let root = if root == "manifest.json" { "." } else { root };
    if !root.contains("://") && !std::path::Path::new(root).is_dir() {
        return Err(Error::Location {
            location: location.to_string(),
            message: "no such folder".into(),
        });
    }
    Ok(match root.strip_prefix("az://") {
        // The form export URLs are printed in: az://account/container/prefix.
        Some(rest) => {
            let mut parts = rest.splitn(3, '/');
            let (Some(account), Some(container)) = (parts.next(), parts.next()) else {
                return Err(Error::Location {
                    location: location.to_string(),
                    message: "expected az://ACCOUNT/CONTAINER/PREFIX".into(),
                });
            };
            let d = crate::spec::Destination::AzureBlob {
                account: account.into(),
                container: container.into(),
                prefix: parts.next().unwrap_or("").into(),
                tenant_id: std::env::var("AZURE_TENANT_ID").ok(),
            };
            let t = crate::dest::ExportTarget::open(&d, "", &crate::dest::DestConfig::from_env()?)?;
            (t.store, t.prefix)
        }
        None => {
            let loc = crate::store::StoreLocation::parse(root)?;
            (loc.store, loc.prefix)
        }
    })
}
