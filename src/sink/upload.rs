//! [`ShardUpload`]: a streaming upload of one object. Bytes are buffered
//! into a single `put` while the object is smaller than `part_bytes`, and go
//! out as a multipart upload of parts of at least `part_bytes` (two in flight
//! at most) once it is larger, so no shard is held whole in memory or staged
//! on disk. Any failure aborts the multipart upload, so none is left open.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayloadMut};
use tokio::task::JoinSet;

use crate::error::{Error, Result};

/// Parts uploading at once per shard.
const PARTS_IN_FLIGHT: usize = 2;

/// A multipart upload and its parts in flight.
type Multipart = (Box<dyn MultipartUpload>, JoinSet<object_store::Result<()>>);

/// A streaming upload of one object: buffered into a single `put` while
/// small, a multipart upload once the buffer reaches `part_bytes`. Any
/// failure aborts the multipart upload, so none is left open.
pub(crate) struct ShardUpload {
    store: Arc<dyn ObjectStore>,
    path: Path,
    part_bytes: usize,
    buf: PutPayloadMut,
    multipart: Option<Multipart>,
}

impl std::fmt::Debug for ShardUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardUpload")
            .field("path", &self.path)
            .field("multipart", &self.multipart.is_some())
            .finish()
    }
}

impl ShardUpload {
    /// An upload to `path` in parts of at least `part_bytes`.
    pub(crate) fn new(store: Arc<dyn ObjectStore>, path: Path, part_bytes: usize) -> Self {
        ShardUpload {
            store,
            path,
            part_bytes: part_bytes.max(1),
            buf: PutPayloadMut::new(),
            multipart: None,
        }
    }

    fn err(&self, operation: &'static str) -> impl FnOnce(object_store::Error) -> Error {
        Error::destination(operation, &self.path)
    }

    /// Appends bytes (copied into the part buffer).
    pub(crate) async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(data);
        self.send_full_parts().await
    }

    /// Appends owned bytes (no copy).
    pub(crate) async fn put(&mut self, data: Bytes) -> Result<()> {
        self.buf.push(data);
        self.send_full_parts().await
    }

    async fn send_full_parts(&mut self) -> Result<()> {
        if self.buf.content_length() < self.part_bytes {
            return Ok(());
        }
        if self.multipart.is_none() {
            let up = self
                .store
                .put_multipart(&self.path)
                .await
                .map_err(self.err("start upload"))?;
            self.multipart = Some((up, JoinSet::new()));
        }
        let part = std::mem::take(&mut self.buf).freeze();
        if let Some((up, tasks)) = self.multipart.as_mut() {
            tasks.spawn(up.put_part(part));
        }
        loop {
            let r = match self.multipart.as_mut() {
                Some((_, tasks)) if tasks.len() >= PARTS_IN_FLIGHT => tasks.join_next().await,
                _ => return Ok(()),
            };
            self.part_result(r)?;
        }
    }

    fn part_result(
        &self,
        r: Option<std::result::Result<object_store::Result<()>, tokio::task::JoinError>>,
    ) -> Result<()> {
        match r {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(self.err("upload part")(e)),
            Some(Err(e)) => Err(Error::Task(e)),
        }
    }

    /// Completes the object; on failure the upload is aborted.
    pub(crate) async fn finish(mut self) -> Result<()> {
        let done = self.complete().await;
        if done.is_err() {
            self.abort().await;
        }
        done
    }

    async fn complete(&mut self) -> Result<()> {
        if self.multipart.is_none() {
            let payload = std::mem::take(&mut self.buf).freeze();
            self.store
                .put(&self.path, payload)
                .await
                .map_err(self.err("put"))?;
            return Ok(());
        }
        if self.buf.content_length() > 0 {
            let part = std::mem::take(&mut self.buf).freeze();
            if let Some((up, tasks)) = self.multipart.as_mut() {
                tasks.spawn(up.put_part(part));
            }
        }
        loop {
            let r = match self.multipart.as_mut() {
                Some((_, tasks)) if !tasks.is_empty() => tasks.join_next().await,
                _ => break,
            };
            self.part_result(r)?;
        }
        let Some((up, _)) = self.multipart.as_mut() else {
            return Ok(());
        };
        let r = up.complete().await;
        match r {
            Ok(_) => {
                self.multipart = None;
                Ok(())
            }
            Err(e) => Err(self.err("complete upload")(e)),
        }
    }

    /// Aborts a multipart upload in progress (nothing to do for a buffered one).
    pub(crate) async fn abort(&mut self) {
        if let Some((mut up, mut tasks)) = self.multipart.take() {
            tasks.shutdown().await;
            let _ = up.abort().await;
        }
    }
}
