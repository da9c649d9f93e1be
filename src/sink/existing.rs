//! [`ExistingObject`]: the object an interrupted earlier attempt left at a
//! shard's key, read as a stream and compared with the bytes a resumed
//! export produces, so a shard that matches is verified instead of sent
//! again. Local files are read in 1 MiB blocks off the runtime (object
//! store's own stream reads 8 KiB at a time: a third of the speed).

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{Error, Result};

/// The old object at a shard key, being compared front to back.
pub(crate) struct ExistingObject {
    path: Path,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    chunk: Bytes,
    matched: u64,
}

impl ExistingObject {
    /// Starts reading the object at `path`.
    pub(crate) async fn open(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<Self> {
        let got = store
            .get(path)
            .await
            .map_err(Error::destination("get", path))?;
        let stream = match got.payload {
            object_store::GetResultPayload::File(file, _) => file_stream(file, got.range),
            _ => got.into_stream(),
        };
        Ok(ExistingObject {
            path: path.clone(),
            stream,
            chunk: Bytes::new(),
            matched: 0,
        })
    }

    /// Leading bytes found equal so far.
    pub(crate) fn matched(&self) -> u64 {
        self.matched
    }

    /// Compares `data` with the object's next bytes; returns how many
    /// leading bytes of `data` matched (all of it unless the object differs
    /// or ends).
    pub(crate) async fn compare(&mut self, data: &[u8]) -> Result<usize> {
        let mut done = 0;
        while done < data.len() {
            if self.chunk.is_empty() {
                match self.stream.next().await {
                    Some(Ok(b)) => self.chunk = b,
                    Some(Err(e)) => return Err(Error::destination("get", &self.path)(e)),
                    None => return Ok(done),
                }
                continue;
            }
            let n = self.chunk.len().min(data.len() - done);
            let (ours, theirs) = (&data[done..done + n], &self.chunk[..n]);
            // memcmp first; find the first difference only when there is one.
            let same = if ours == theirs {
                n
            } else {
                ours.iter().zip(theirs).take_while(|(a, b)| a == b).count()
            };
            done += same;
            self.matched += same as u64;
            if same < n {
                return Ok(done);
            }
            let _ = self.chunk.split_to(n);
        }
        Ok(done)
    }

    /// Whether the object holds more bytes than were compared.
    pub(crate) async fn has_more(&mut self) -> Result<bool> {
        if !self.chunk.is_empty() {
            return Ok(true);
        }
        loop {
            match self.stream.next().await {
                Some(Ok(b)) if b.is_empty() => continue,
                Some(Ok(_)) => return Ok(true),
                Some(Err(e)) => return Err(Error::destination("get", &self.path)(e)),
                None => return Ok(false),
            }
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
