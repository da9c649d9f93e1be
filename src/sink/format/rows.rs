//! Row-at-a-time shard files (JSONL and WebDataset): each row is encoded
//! to bytes before it is added, so a shard's size is known exactly.

use arrow::array::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};

use super::super::hashing::{HashingWriter, ShardDone};
use super::{jsonl, webdataset, ShardFile};
use crate::error::Result;

#[derive(Clone, Copy)]
pub(super) enum RowEncoding {
    Jsonl,
    Tar,
}

/// Row-at-a-time formats: each row is encoded to bytes first, so sizes are exact.
pub(super) struct RowShard {
    out: HashingWriter,
    encoding: RowEncoding,
    /// The last encoded row, kept between `size_with` and `add`.
    pending: Option<Vec<u8>>,
    /// Samples as a tar reader groups members by key: one per row, plus
    /// one per step observation image (a member of its own key).
    samples: u64,
}

impl RowShard {
    pub(super) fn new(out: HashingWriter, encoding: RowEncoding) -> Self {
        RowShard {
            out,
            encoding,
            pending: None,
            samples: 0,
        }
    }

    fn trailer(&self) -> u64 {
        match self.encoding {
            RowEncoding::Jsonl => 0,
            RowEncoding::Tar => webdataset::TRAILER,
        }
    }

    fn encode(&self, row: &RecordBatch) -> Result<Vec<u8>> {
        match self.encoding {
            RowEncoding::Jsonl => jsonl::line(row),
            RowEncoding::Tar => webdataset::sample(row),
        }
    }
}

#[async_trait]
impl ShardFile for RowShard {
    fn size_with(&mut self, row: &RecordBatch) -> Result<u64> {
        let bytes = self.encode(row)?;
        let size = self.out.bytes() + bytes.len() as u64 + self.trailer();
        self.pending = Some(bytes);
        Ok(size)
    }

    async fn add(&mut self, row: &RecordBatch) -> Result<()> {
        let bytes = match self.pending.take() {
            Some(b) => b,
            None => self.encode(row)?,
        };
        if let RowEncoding::Tar = self.encoding {
            self.samples += 1 + u64::from(webdataset::carries_step_image(row));
        }
        self.out.put(Bytes::from(bytes)).await
    }

    fn loader_entry(&self) -> Option<Value> {
        match self.encoding {
            RowEncoding::Jsonl => None,
            RowEncoding::Tar => Some(json!({"nsamples": self.samples})),
        }
    }

    async fn finish(mut self: Box<Self>) -> Result<ShardDone> {
        if let RowEncoding::Tar = self.encoding {
            self.out.write(&[0u8; webdataset::TRAILER as usize]).await?;
        }
        self.out.finish().await
    }

    async fn abort(self: Box<Self>) -> bool {
        self.out.abort().await
    }
}
