//! Parquet shards: Hugging Face–compatible image column, row groups of at
//! most [`PARQUET_ROW_GROUP_ROWS`] rows or about [`PARQUET_ROW_GROUP_BYTES`],
//! drained into the hashing writer after every row.

use std::io::Write;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::super::hashing::{HashingWriter, ShardDone};
use super::{row_value_bytes, ShardFile};
use crate::error::{Error, Result};
use crate::store::image_parquet_props;

/// Rows per Parquet row group (images are large; ~100 rows or ~100 MB).
pub(crate) const PARQUET_ROW_GROUP_ROWS: usize = 100;
/// Bytes per Parquet row group.
pub(super) const PARQUET_ROW_GROUP_BYTES: usize = 100 << 20;
/// A `Write` target whose bytes the async side drains after each call.
#[derive(Clone, Default)]
pub(super) struct Drain(Arc<Mutex<Vec<u8>>>);

impl Write for Drain {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drain {
    /// Bytes written and not yet taken.
    pub(super) fn buffered(&self) -> u64 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len() as u64
    }

    pub(super) fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Upper bound of a Parquet footer: schema, key-value metadata (the Arrow
/// schema and Hugging Face features), and per row group per column metadata
/// with statistics.
fn parquet_footer_bound(row_groups: usize, columns: u64) -> u64 {
    16 * 1024 + (row_groups as u64 + 1) * columns * 400
}

pub(super) struct ParquetShard {
    out: HashingWriter,
    drain: Drain,
    writer: Option<ArrowWriter<Drain>>,
    row_groups: usize,
    /// Leaf columns of the schema.
    columns: u64,
}

fn parquet_props() -> WriterProperties {
    let image = ColumnPath::new(vec!["image".into(), "bytes".into()]);
    image_parquet_props(image, PARQUET_ROW_GROUP_ROWS)
}

impl ParquetShard {
    pub(super) fn new(out: HashingWriter, schema: SchemaRef) -> Result<Self> {
        let drain = Drain::default();
        let columns = schema.flattened_fields().len().max(1) as u64;
        let writer = ArrowWriter::try_new(drain.clone(), schema, Some(parquet_props()))?;
        Ok(ParquetShard {
            out,
            drain,
            writer: Some(writer),
            row_groups: 0,
            columns,
        })
    }

    fn writer(&mut self) -> Result<&mut ArrowWriter<Drain>> {
        self.writer
            .as_mut()
            .ok_or_else(|| Error::Internal("parquet shard writer used after it was closed".into()))
    }

    async fn drain(&mut self) -> Result<()> {
        let bytes = self.drain.take();
        if !bytes.is_empty() {
            self.out.put(Bytes::from(bytes)).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl ShardFile for ParquetShard {
    fn size_with(&mut self, row: &RecordBatch) -> Result<u64> {
        let rg = self.row_groups;
        let w = self.writer()?;
        let buffered = w.in_progress_size() as u64;
        let next = row_value_bytes(row) + 256;
        Ok(self.out.bytes()
            + self.drain.0.lock().map_or(0, |b| b.len() as u64)
            + buffered
            + next
            + parquet_footer_bound(rg + 1, self.columns))
    }

    async fn add(&mut self, row: &RecordBatch) -> Result<()> {
        let w = self.writer()?;
        let before = w.flushed_row_groups().len();
        w.write(row)?;
        if w.in_progress_size() >= PARQUET_ROW_GROUP_BYTES {
            w.flush()?;
        }
        let after = w.flushed_row_groups().len();
        self.row_groups += after - before;
        self.drain().await
    }

    async fn finish(mut self: Box<Self>) -> Result<ShardDone> {
        if let Some(w) = self.writer.take() {
            w.close()?;
        }
        self.drain().await?;
        self.out.finish().await
    }

    async fn abort(self: Box<Self>) -> bool {
        self.out.abort().await
    }
}
