//! Reading one whole object of an export (a manifest, a lease, a shard read
//! back): the one place a `get` becomes bytes, with errors naming the
//! operation and key. Every read has a size limit: objects at an export's
//! prefix are the caller's to plant (a 20 GB `manifest.json`, an endless
//! body from an allowed endpoint), so an object over the limit is refused
//! by its reported size before a byte is read, and a body that runs past
//! its limit while streaming is cut off there. Shards are verified as
//! streams elsewhere.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{Error, Result};

/// The most a `manifest.json` may hold: ≈ 300,000 shards (at the default
/// 256 MiB cap, 75 TB of shards).
pub(crate) const MANIFEST_LIMIT: u64 = 64 << 20;
/// The most a lease (`.nusomi-export.json`) may hold.
pub(crate) const LEASE_LIMIT: u64 = 64 << 10;

/// The bytes of `key` (at most `limit`), or `None` when there is no such
/// object.
pub(crate) async fn bytes_if_any(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
    limit: u64,
) -> Result<Option<Bytes>> {
    let got = match store.get(key).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(Error::destination("get", key)(e)),
    };
    capped(got, key, limit).await.map(Some)
}

/// The bytes of `key` (at most `limit`); a missing object is an error
/// naming it.
pub(crate) async fn bytes(store: &Arc<dyn ObjectStore>, key: &Path, limit: u64) -> Result<Bytes> {
    let got = store
        .get(key)
        .await
        .map_err(Error::destination("get", key))?;
    capped(got, key, limit).await
}

/// The body of `got`, refused when its size (reported, or read so far)
/// passes `limit`.
async fn capped(got: object_store::GetResult, key: &Path, limit: u64) -> Result<Bytes> {
    let reported = got.meta.size;
    let body = got.into_stream();
    let read_error = |e| Error::destination("get", key)(e);
    collect_capped(body, Some(reported), limit, key.as_ref(), read_error).await
}

/// A body of `reported` bytes (if known) read whole from `body` at object
/// `path`, refused by its reported size before a byte is read, or cut off
/// as soon as what it sent passes `limit` ([`Error::TooLarge`]); a read
/// error becomes `read_error`'s.
pub(crate) async fn collect_capped<E>(
    mut body: impl futures::Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    reported: Option<u64>,
    limit: u64,
    path: &str,
    read_error: impl Fn(E) -> Error,
) -> Result<Bytes> {
    let too_large = |size: u64| Error::TooLarge {
        path: path.to_string(),
        size,
        limit,
    };
    if let Some(size) = reported.filter(|n| *n > limit) {
        return Err(too_large(size));
    }
    let mut out = BytesMut::with_capacity(reported.unwrap_or(0) as usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(&read_error)?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(too_large((out.len() + chunk.len()) as u64));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::PutPayload;

    #[tokio::test]
    async fn an_object_over_its_limit_is_refused_unread() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let key = Path::from("p/manifest.json");
        store
            .put(&key, PutPayload::from(vec![b'x'; 1000]))
            .await
            .unwrap();
        assert_eq!(bytes(&store, &key, 1000).await.unwrap().len(), 1000);
        let e = bytes_if_any(&store, &key, 999)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("p/manifest.json") && e.contains("1000 bytes") && e.contains("999"),
            "{e}"
        );
        assert!(bytes_if_any(&store, &Path::from("none"), 1)
            .await
            .unwrap()
            .is_none());
    }
}
