//! Destinations: where an export's shards and manifest go. Every destination
//! kind of SPEC §4 becomes an [`ExportTarget`] (`target.rs`) — an
//! `object_store`, a prefix inside it, the URL users see, and for
//! `signed_url` the way download links are made (`links.rs`). Process-wide
//! settings (workspace id, STS endpoint, retry policy, `signed_url` storage,
//! link lifetime and key) live in [`DestConfig`] (`config.rs`); each cloud
//! has its own file (`s3.rs` with assumed roles, `azure.rs`, `gcs.rs` with
//! `gcp_identity.rs` for impersonated accounts) and
//! `signing.rs` makes and checks the service's HMAC links. Credentials are
//! read from the environment by the object-store builders and never copied
//! into anything this crate prints or stores.

mod azure;
mod config;
mod gcp_identity;
mod gcs;
mod links;
mod no_follow;
mod public_only;
mod s3;
mod signing;
mod target;

pub use config::{
    parse_storage, AzureApp, DestConfig, Secret, DEFAULT_PART_BYTES, MAX_PRESIGN_TTL,
};
pub use gcp_identity::{
    v4_string_to_sign, BaseIdentity, ImpersonatedAccount, ImpersonatedSigner, IAM_CREDENTIALS_URL,
};
pub use links::{Links, ShardLinks};
pub use s3::AssumedRole;
pub use signing::{capped_ttl, files_url, LinkError, UrlSigner};
pub use target::{ExportTarget, CHECK_TIMEOUT};

/// An error and its sources, `: `-separated.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}

/// Replaces `secret` (if any) in `text`.
pub(crate) fn redact(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if s.len() >= 8 && text.contains(s) => text.replace(s, "<redacted>"),
        _ => text.to_string(),
    }
}
