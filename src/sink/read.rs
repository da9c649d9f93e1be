//! Reading one whole object of an export (a manifest, a lease, a shard read
//! back): the one place a `get` becomes bytes, with errors naming the
//! operation and key. Only for objects bounded by the export's own limits
//! (shards by `shard_size_bytes`); shards are verified as streams elsewhere.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{Error, Result};

/// The bytes of `key`, or `None` when there is no such object.
pub(crate) async fn bytes_if_any(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
) -> Result<Option<Bytes>> {
    let got = match store.get(key).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(Error::destination("get", key)(e)),
    };
    got.bytes()
        .await
        .map(Some)
        .map_err(Error::destination("get", key))
}

/// The bytes of `key`; a missing object is an error naming it.
pub(crate) async fn bytes(store: &Arc<dyn ObjectStore>, key: &Path) -> Result<Bytes> {
    store
        .get(key)
        .await
        .map_err(Error::destination("get", key))?
        .bytes()
        .await
        .map_err(Error::destination("get", key))
}
