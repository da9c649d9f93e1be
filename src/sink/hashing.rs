//! [`HashingWriter`]: the byte sink under every shard format. It computes
//! the shard's SHA-256 and length as bytes pass, and sends them either to a
//! streaming upload ([`ShardUpload`]) or, when resuming, compares them with
//! the object already at the shard's key ([`ExistingObject`]): nothing is
//! uploaded while they match. At the first difference the writer switches to
//! an upload that starts by copying the matching prefix from the old object
//! (streamed, never held whole), so a stale or foreign object is replaced,
//! not trusted.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore};
use sha2::{Digest, Sha256};

use super::existing::ExistingObject;
use super::upload::ShardUpload;
use crate::error::{Error, Result};

/// What a finished shard is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardDone {
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256, lower-case hex.
    pub sha256: String,
    /// True when an identical object was already there and nothing was
    /// uploaded (a resumed export).
    pub reused: bool,
}

enum Sink {
    Upload(ShardUpload),
    Compare(ExistingObject),
}

/// A shard's byte sink that hashes what passes through it.
pub struct HashingWriter {
    store: Arc<dyn ObjectStore>,
    path: Path,
    part_bytes: usize,
    sink: Option<Sink>,
    hasher: Sha256,
    bytes: u64,
    uploaded: bool,
}

impl std::fmt::Debug for HashingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashingWriter")
            .field("path", &self.path)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl HashingWriter {
    /// A writer uploading to `path` in parts of `part_bytes`.
    pub fn upload(store: Arc<dyn ObjectStore>, path: Path, part_bytes: usize) -> Self {
        let w = ShardUpload::new(Arc::clone(&store), path.clone(), part_bytes);
        HashingWriter {
            store,
            path,
            part_bytes,
            sink: Some(Sink::Upload(w)),
            hasher: Sha256::new(),
            bytes: 0,
            uploaded: true,
        }
    }

    /// The store, the key of a side object `<path><suffix>` and the part
    /// size: where a format that must write its header last spools its body.
    pub(super) fn beside(&self, suffix: &str) -> (Arc<dyn ObjectStore>, Path, usize) {
        (
            Arc::clone(&self.store),
            Path::from(format!("{}{suffix}", self.path)),
            self.part_bytes,
        )
    }

    /// A writer that first compares against the object already at `path`.
    pub async fn resume(
        store: Arc<dyn ObjectStore>,
        path: Path,
        part_bytes: usize,
    ) -> Result<Self> {
        let existing = ExistingObject::open(&store, &path).await?;
        Ok(HashingWriter {
            store,
            path,
            part_bytes,
            sink: Some(Sink::Compare(existing)),
            hasher: Sha256::new(),
            bytes: 0,
            uploaded: false,
        })
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// True once anything of this shard was sent to the store.
    pub fn uploaded(&self) -> bool {
        self.uploaded
    }

    /// Compares `data` against the old object; returns how many leading
    /// bytes of `data` matched (all of it unless the object differs).
    async fn compare(&mut self, data: &[u8]) -> Result<usize> {
        match self.sink.as_mut() {
            Some(Sink::Compare(c)) => c.compare(data).await,
            _ => Ok(0),
        }
    }

    /// Leaves compare mode: starts an upload holding the old object's first
    /// `matched` bytes (they equal what was produced so far).
    async fn diverge(&mut self) -> Result<()> {
        let Some(Sink::Compare(c)) = self.sink.take() else {
            return Ok(());
        };
        let matched = c.matched();
        drop(c);
        let mut w = ShardUpload::new(Arc::clone(&self.store), self.path.clone(), self.part_bytes);
        self.uploaded = true;
        if matched > 0 {
            let opts = GetOptions {
                range: Some(GetRange::Bounded(0..matched)),
                ..Default::default()
            };
            let mut old = self
                .store
                .get_opts(&self.path, opts)
                .await
                .map_err(Error::destination("get", &self.path))?
                .into_stream();
            while let Some(b) = old.next().await {
                let b = b.map_err(Error::destination("get", &self.path))?;
                if let Err(e) = w.put(b).await {
                    w.abort().await;
                    return Err(e);
                }
            }
        }
        self.sink = Some(Sink::Upload(w));
        Ok(())
    }

    /// Appends bytes.
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        let mut rest = data;
        if matches!(self.sink, Some(Sink::Compare(_))) {
            let same = self.compare(data).await?;
            if same == data.len() {
                return Ok(());
            }
            self.diverge().await?;
            rest = &data[same..];
        }
        if let Some(Sink::Upload(w)) = self.sink.as_mut() {
            w.write(rest).await?;
        }
        Ok(())
    }

    /// Appends owned bytes (no copy into the upload buffer when large).
    pub async fn put(&mut self, data: Bytes) -> Result<()> {
        if !matches!(self.sink, Some(Sink::Upload(_))) {
            return self.write(&data).await;
        }
        self.hasher.update(&data);
        self.bytes += data.len() as u64;
        if let Some(Sink::Upload(w)) = self.sink.as_mut() {
            w.put(data).await?;
        }
        Ok(())
    }

    /// Completes the shard: finishes the upload, or in compare mode checks
    /// the old object has nothing more (else replaces it).
    pub async fn finish(mut self) -> Result<ShardDone> {
        if let Some(Sink::Compare(c)) = self.sink.as_mut() {
            if !c.has_more().await? {
                return Ok(ShardDone {
                    bytes: self.bytes,
                    sha256: hex::encode(self.hasher.finalize()),
                    reused: true,
                });
            }
            self.diverge().await?;
        }
        if let Some(Sink::Upload(w)) = self.sink.take() {
            w.finish().await?;
        }
        Ok(ShardDone {
            bytes: self.bytes,
            sha256: hex::encode(self.hasher.finalize()),
            reused: false,
        })
    }

    /// Abandons the shard (aborting a multipart upload in progress). Returns
    /// whether anything had been sent, i.e. whether the key must be cleaned.
    pub async fn abort(mut self) -> bool {
        if let Some(Sink::Upload(mut w)) = self.sink.take() {
            w.abort().await;
        }
        self.uploaded
    }
}
