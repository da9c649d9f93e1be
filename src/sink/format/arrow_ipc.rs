//! Arrow IPC file shards: record batches of at most 64 rows, with a size
//! bound from the rows' value bytes plus per-batch and footer overheads.

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::FileWriter;
use async_trait::async_trait;
use bytes::Bytes;

use super::super::hashing::{HashingWriter, ShardDone};
use super::parquet::Drain;
use super::{row_value_bytes, ShardFile};
use crate::error::{Error, Result};

/// Rows per Arrow IPC record batch.
const ARROW_BATCH_ROWS: usize = 64;

pub(super) struct ArrowShard {
    out: HashingWriter,
    drain: Drain,
    writer: Option<FileWriter<Drain>>,
    pending: Vec<RecordBatch>,
    pending_bytes: u64,
    batches: u64,
    schema: SchemaRef,
    /// Framing bound of one record batch for this schema.
    batch_overhead: u64,
}

/// Upper bound of one IPC record batch's framing (message header, 64-byte
/// padding of each of ~60 buffers) and of the file footer per block.
const IPC_BATCH_OVERHEAD: u64 = 8 * 1024;
const IPC_FOOTER_BASE: u64 = 8 * 1024;

impl ArrowShard {
    pub(super) fn new(out: HashingWriter, schema: SchemaRef) -> Result<Self> {
        let drain = Drain::default();
        let writer = FileWriter::try_new(drain.clone(), &schema)?;
        // Up to three buffers per leaf column, each padded to 64 bytes.
        let leaves = schema.flattened_fields().len() as u64;
        let batch_overhead = IPC_BATCH_OVERHEAD.max(4096 + leaves * 3 * 64);
        Ok(ArrowShard {
            schema,
            batch_overhead,
            out,
            drain,
            writer: Some(writer),
            pending: Vec::new(),
            pending_bytes: 0,
            batches: 0,
        })
    }

    async fn write_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = fresh(&concat_batches(&self.schema, &self.pending)?)?;
        self.pending.clear();
        self.pending_bytes = 0;
        let w = self
            .writer
            .as_mut()
            .ok_or_else(|| Error::Internal("arrow shard writer used after it was closed".into()))?;
        w.write(&batch)?;
        self.batches += 1;
        let bytes = self.drain.take();
        self.out.put(Bytes::from(bytes)).await
    }
}

/// `batch` copied into fresh buffers. A row sliced out of a larger batch
/// keeps that batch's buffers, and the IPC writer copies validity bitmaps
/// of byte-aligned slices whole: the unused bits of the last byte would
/// be the neighbouring rows' validity, so the bytes would depend on how the
/// engine batched the rows. `concat_batches` of one batch returns it as it
/// is; a copy zeroes them.
fn fresh(batch: &RecordBatch) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .map(|c| {
            let data = c.to_data();
            let mut m = arrow::array::MutableArrayData::new(vec![&data], false, data.len());
            m.try_extend(0, 0, data.len())?;
            Ok(arrow::array::make_array(m.freeze()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

#[async_trait]
impl ShardFile for ArrowShard {
    fn size_with(&mut self, row: &RecordBatch) -> Result<u64> {
        let buffered = self.drain.buffered();
        let pending = self.pending_bytes + row_value_bytes(row) + 64;
        let batches = self.batches + 1 + u64::from(self.pending.len() + 1 >= ARROW_BATCH_ROWS);
        Ok(self.out.bytes()
            + buffered
            + pending
            + batches * self.batch_overhead
            + IPC_FOOTER_BASE
            + batches * 64)
    }

    async fn add(&mut self, row: &RecordBatch) -> Result<()> {
        self.pending_bytes += row_value_bytes(row) + 64;
        self.pending.push(row.clone());
        if self.pending.len() >= ARROW_BATCH_ROWS {
            self.write_pending().await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<ShardDone> {
        self.write_pending().await?;
        if let Some(mut w) = self.writer.take() {
            w.finish()?;
        }
        let bytes = self.drain.take();
        self.out.put(Bytes::from(bytes)).await?;
        self.out.finish().await
    }

    async fn abort(self: Box<Self>) -> bool {
        self.out.abort().await
    }
}
