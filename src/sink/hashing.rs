//! [`HashingWriter`]: forwards shard bytes to an object-store upload while
//! computing their SHA-256 and length, so a shard is hashed as it is written
//! and never read back.

use bytes::Bytes;
use object_store::buffered::BufWriter;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::Result;

/// A streaming upload that hashes what passes through it.
pub struct HashingWriter {
    inner: BufWriter,
    hasher: Sha256,
    bytes: u64,
}

impl std::fmt::Debug for HashingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashingWriter")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl HashingWriter {
    /// Wraps an upload.
    pub fn new(inner: BufWriter) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends bytes.
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        self.inner
            .write_all(data)
            .await
            .map_err(|e| crate::Error::io("<shard upload>", e))?;
        Ok(())
    }

    /// Appends owned bytes (no copy into the upload buffer when large).
    pub async fn put(&mut self, data: Bytes) -> Result<()> {
        self.hasher.update(&data);
        self.bytes += data.len() as u64;
        self.inner.put(data).await?;
        Ok(())
    }

    /// Completes the upload; returns (bytes, SHA-256 hex).
    pub async fn finish(mut self) -> Result<(u64, String)> {
        self.inner
            .shutdown()
            .await
            .map_err(|e| crate::Error::io("<shard upload>", e))?;
        Ok((self.bytes, hex::encode(self.hasher.finalize())))
    }

    /// Abandons the upload (aborting a multipart upload in progress).
    pub async fn abort(mut self) {
        let _ = self.inner.abort().await;
    }
}
