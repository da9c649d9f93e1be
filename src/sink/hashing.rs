//! [`HashingWriter`]: the byte sink under every shard format. It computes the
//! shard's SHA-256 and length as bytes pass, and sends them either
//!
//! * to a streaming upload ([`ShardUpload`]: one `put` for a shard smaller
//!   than `part_bytes`, else a multipart upload of parts of at least
//!   `part_bytes`, two in flight at most, aborted on any failure), or
//! * when resuming, against the object already at the shard's key: bytes are
//!   compared as they are produced and nothing is uploaded while they match.
//!   At the first difference the writer switches to an upload that starts by
//!   copying the matching prefix from the old object (streamed, never held
//!   whole), so a stale or foreign object is replaced, not trusted.
//!
//! Shards are never staged on local disk or read back for hashing.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayloadMut,
};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::{Error, Result};

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

/// Parts uploading at once per shard.
const PARTS_IN_FLIGHT: usize = 2;

/// A multipart upload and its parts in flight.
type Multipart = (Box<dyn MultipartUpload>, JoinSet<object_store::Result<()>>);

/// A streaming upload of one object: buffered into a single `put` while
/// small, a multipart upload once the buffer reaches `part_bytes`. Any
/// failure aborts the multipart upload, so none is left open.
pub struct ShardUpload {
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
    pub fn new(store: Arc<dyn ObjectStore>, path: Path, part_bytes: usize) -> Self {
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
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(data);
        self.send_full_parts().await
    }

    /// Appends owned bytes (no copy).
    pub async fn put(&mut self, data: Bytes) -> Result<()> {
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
    pub async fn finish(mut self) -> Result<()> {
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
    pub async fn abort(&mut self) {
        if let Some((mut up, mut tasks)) = self.multipart.take() {
            tasks.shutdown().await;
            let _ = up.abort().await;
        }
    }
}

/// Bytes `range` of a local file, in blocks of 1 MiB read off the runtime.
fn file_stream(
    file: std::fs::File,
    range: std::ops::Range<u64>,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    use std::io::{Read, Seek, SeekFrom};
    const BLOCK: u64 = 1 << 20;
    let io_err = |e: std::io::Error| object_store::Error::Generic {
        store: "LocalFileSystem",
        source: Box::new(e),
    };
    futures::stream::try_unfold(
        (file, range.start, range.end),
        move |(mut file, at, end)| async move {
            if at >= end {
                return Ok(None);
            }
            let n = (end - at).min(BLOCK);
            let (file, buf) = tokio::task::spawn_blocking(move || {
                file.seek(SeekFrom::Start(at))?;
                let mut buf = vec![0u8; n as usize];
                file.read_exact(&mut buf)?;
                Ok::<_, std::io::Error>((file, buf))
            })
            .await
            .map_err(|e| io_err(std::io::Error::other(e)))?
            .map_err(io_err)?;
            Ok(Some((Bytes::from(buf), (file, at + n, end))))
        },
    )
    .boxed()
}

struct Compare {
    existing: BoxStream<'static, object_store::Result<Bytes>>,
    chunk: Bytes,
    matched: u64,
}

enum Sink {
    Upload(ShardUpload),
    Compare(Compare),
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

    /// A writer that first compares against the object already at `path`.
    pub async fn resume(
        store: Arc<dyn ObjectStore>,
        path: Path,
        part_bytes: usize,
    ) -> Result<Self> {
        let got = store
            .get(&path)
            .await
            .map_err(Error::destination("get", &path))?;
        let existing = match got.payload {
            // A local file: read it in large blocks (object_store's own
            // stream reads 8 KiB at a time, a third of the upload speed).
            object_store::GetResultPayload::File(file, _) => file_stream(file, got.range),
            _ => got.into_stream(),
        };
        Ok(HashingWriter {
            store,
            path,
            part_bytes,
            sink: Some(Sink::Compare(Compare {
                existing,
                chunk: Bytes::new(),
                matched: 0,
            })),
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
        let Some(Sink::Compare(c)) = self.sink.as_mut() else {
            return Ok(0);
        };
        let mut done = 0;
        while done < data.len() {
            if c.chunk.is_empty() {
                match c.existing.next().await {
                    Some(Ok(b)) => c.chunk = b,
                    Some(Err(e)) => return Err(Error::destination("get", &self.path)(e)),
                    None => return Ok(done),
                }
                continue;
            }
            let n = c.chunk.len().min(data.len() - done);
            let (ours, theirs) = (&data[done..done + n], &c.chunk[..n]);
            // memcmp first; find the first difference only when there is one.
            let same = if ours == theirs {
                n
            } else {
                ours.iter().zip(theirs).take_while(|(a, b)| a == b).count()
            };
            done += same;
            c.matched += same as u64;
            if same < n {
                return Ok(done);
            }
            let _ = c.chunk.split_to(n);
        }
        Ok(done)
    }

    /// Leaves compare mode: starts an upload holding the old object's first
    /// `matched` bytes (they equal what was produced so far).
    async fn diverge(&mut self) -> Result<()> {
        let Some(Sink::Compare(c)) = self.sink.take() else {
            return Ok(());
        };
        drop(c.existing);
        let mut w = ShardUpload::new(Arc::clone(&self.store), self.path.clone(), self.part_bytes);
        self.uploaded = true;
        if c.matched > 0 {
            let opts = GetOptions {
                range: Some(GetRange::Bounded(0..c.matched)),
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
            let mut longer = !c.chunk.is_empty();
            while !longer {
                match c.existing.next().await {
                    Some(Ok(b)) => longer = !b.is_empty(),
                    Some(Err(e)) => return Err(Error::destination("get", &self.path)(e)),
                    None => break,
                }
            }
            if !longer {
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
