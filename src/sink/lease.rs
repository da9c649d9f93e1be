//! The lease an unfinished export holds on its prefix: `.nusomi-export.json`
//! (export id, a digest of what is being exported, creation time), created
//! with a conditional put before anything else is written. It is what makes
//! an export never touch objects it did not write:
//!
//! * a prefix without a lease must hold nothing but an export's own
//!   staging leftovers, else it is refused with the first few keys found;
//! * a prefix with a lease of another export (a different digest) is
//!   refused;
//! * a prefix with a lease of the same export (same digest: an interrupted
//!   earlier attempt) is resumed — the shards and card there were written
//!   under that lease, so they may be verified, replaced or deleted.
//!
//! The lease is deleted when the manifest is written, and by a failed
//! attempt that created it (nothing written before it remains then).

use std::collections::HashMap;

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::layout::ExportLayout;
use crate::dest::ExportTarget;
use crate::error::{Error, Result};

/// Keys listed when a prefix holds foreign objects.
const FOREIGN_LISTED: usize = 5;

/// The lease's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Lease {
    /// The export that created it.
    pub(crate) export_id: String,
    /// SHA-256 of what is exported (resolved spec, `as_of`, format, shard
    /// size, query): equal digests write equal bytes.
    pub(crate) spec_sha256: String,
    /// When it was created (RFC 3339).
    pub(crate) created_at: String,
}

/// How a prefix was claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// This attempt created the lease: the prefix held nothing of ours.
    Fresh,
    /// An earlier attempt of the same export holds it: resume.
    Resumed,
}

/// The lease at `layout`'s prefix, if any.
pub(crate) async fn read(target: &ExportTarget, layout: &ExportLayout) -> Result<Option<Lease>> {
    let bytes =
        super::read::bytes_if_any(&target.store, &layout.lease(), super::read::LEASE_LIMIT).await?;
    // A lease that does not parse is someone else's file.
    Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Claims the prefix for `lease`, given the objects listed under it.
pub(crate) async fn claim(
    target: &ExportTarget,
    layout: &ExportLayout,
    lease: &Lease,
    existing: &HashMap<String, u64>,
) -> Result<Claim> {
    let url = target.url.clone();
    if existing.contains_key(ExportLayout::LEASE) {
        return judge(read(target, layout).await?, lease, url, existing);
    }
    if !existing.is_empty() {
        return Err(foreign(url, existing));
    }
    let key = layout.lease();
    let body = serde_json::to_vec_pretty(lease)?;
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match target
        .store
        .put_opts(&key, PutPayload::from(Bytes::from(body)), opts)
        .await
    {
        Ok(_) => Ok(Claim::Fresh),
        // Another attempt claimed it between our listing and our put.
        Err(object_store::Error::AlreadyExists { .. }) => {
            let only_lease = HashMap::from([(ExportLayout::LEASE.to_string(), 0)]);
            judge(read(target, layout).await?, lease, url, &only_lease)
        }
        Err(e) => Err(Error::destination("put lease", &key)(e)),
    }
}

/// What a lease found on the prefix means for `lease`: the same export
/// resumes, another export's claim refuses, and a file there that is no
/// lease is someone else's (listed among `existing`).
fn judge(
    found: Option<Lease>,
    lease: &Lease,
    url: String,
    existing: &HashMap<String, u64>,
) -> Result<Claim> {
    match found {
        Some(l) if l.spec_sha256 == lease.spec_sha256 => Ok(Claim::Resumed),
        Some(l) => Err(Error::PrefixClaimed {
            url,
            by: l.export_id,
        }),
        None => Err(foreign(url, existing)),
    }
}

fn foreign(url: String, existing: &HashMap<String, u64>) -> Error {
    let mut keys: Vec<String> = existing.keys().cloned().collect();
    keys.sort();
    let more = keys.len() > FOREIGN_LISTED;
    keys.truncate(FOREIGN_LISTED);
    Error::ForeignObjects { url, keys, more }
}

/// Deletes the lease (best effort: a lease left behind only makes a later
/// export of another spec refuse the prefix).
pub(crate) async fn release(target: &ExportTarget, layout: &ExportLayout) {
    let _ = target.store.delete(&layout.lease()).await;
}
