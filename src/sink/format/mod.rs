//! One shard file per format: [`ShardFile`] is what the sharder writes rows
//! into. Each takes output rows one at a time and can say, before taking a
//! row, an upper bound of the shard's size once that row and the format's
//! trailer are written — exact for JSONL and WebDataset (`rows.rs` encodes
//! each row first), a conservative estimate for Parquet and Arrow IPC — so
//! the sharder can close a shard before it would pass `shard_size_bytes`.
//! MDS shards are exact too (`mds.rs`), and they and WebDataset shards give
//! an entry for their series' loader index (`loader_index.rs`).

mod arrow_ipc;
mod jsonl;
mod mds;
mod parquet;
mod rows;
mod webdataset;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use serde_json::Value;

pub(super) use mds::python_json;
pub(crate) use mds::read_samples;

use super::hashing::{HashingWriter, ShardDone};
use crate::error::{Error, Result};
use crate::spec::OutputFormat;

/// A shard being written.
#[async_trait]
pub(super) trait ShardFile: Send {
    /// Upper bound of the finished shard's size if `row` (a one-row batch in
    /// the output schema) were added now.
    fn size_with(&mut self, row: &RecordBatch) -> Result<u64>;
    /// Adds `row`.
    async fn add(&mut self, row: &RecordBatch) -> Result<()>;
    /// This shard's entry in its series' loader index (MDS `index.json`,
    /// the `wids` shard list), once every row is added; `None` for formats
    /// without one.
    fn loader_entry(&self) -> Option<Value> {
        None
    }
    /// Writes the trailer and completes the upload.
    async fn finish(self: Box<Self>) -> Result<ShardDone>;
    /// Abandons the shard; true when something reached the store and the
    /// key must be cleaned up.
    async fn abort(self: Box<Self>) -> bool;
}

/// Opens a shard of `format` on `out` for rows of `schema`, in a series
/// whose shards are capped at `size_limit` bytes.
pub(super) fn open_shard(
    format: OutputFormat,
    out: HashingWriter,
    schema: SchemaRef,
    size_limit: u64,
) -> Result<Box<dyn ShardFile>> {
    Ok(match format {
        OutputFormat::Jsonl => Box::new(rows::RowShard::new(out, rows::RowEncoding::Jsonl)),
        OutputFormat::Webdataset => Box::new(rows::RowShard::new(out, rows::RowEncoding::Tar)),
        OutputFormat::Parquet => Box::new(parquet::ParquetShard::new(out, schema)?),
        OutputFormat::Arrow => Box::new(arrow_ipc::ArrowShard::new(out, schema)?),
        OutputFormat::Mds => Box::new(mds::MdsShard::new(out, schema, size_limit)?),
    })
}

/// Bytes a row's values take (strings and binaries by length, fixed-width
/// values by width), a basis for size bounds of the columnar formats.
pub(super) fn row_value_bytes(row: &RecordBatch) -> u64 {
    row.columns()
        .iter()
        .map(|c| array_value_bytes(c.as_ref()))
        .sum()
}

fn array_value_bytes(a: &dyn Array) -> u64 {
    let n = a.len() as u64;
    match a.data_type() {
        DataType::Utf8 => (0..a.len())
            .map(|i| a.as_string::<i32>().value(i).len() as u64 + 4)
            .sum(),
        DataType::Binary => (0..a.len())
            .map(|i| a.as_binary::<i32>().value(i).len() as u64 + 4)
            .sum(),
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            (0..l.len())
                .map(|i| array_value_bytes(l.value(i).as_ref()) + 4)
                .sum()
        }
        DataType::Struct(_) => {
            a.as_struct()
                .columns()
                .iter()
                .map(|c| array_value_bytes(c.as_ref()))
                .sum::<u64>()
                + n
        }
        other => other.primitive_width().map_or(8, |w| w as u64) * n + n,
    }
}

/// The image bytes and format of a one-row batch.
pub(super) fn image_of(row: &RecordBatch) -> Result<(&[u8], String)> {
    let missing = |what: &str| Error::Internal(format!("an export row lacks {what}"));
    let image = row
        .column_by_name("image")
        .ok_or_else(|| missing("image"))?
        .as_struct();
    let bytes = image.column(0).as_binary::<i32>();
    let format = row
        .column_by_name("image_format")
        .ok_or_else(|| missing("image_format"))?;
    let format = format.as_string::<i32>();
    if bytes.is_null(0) || format.is_null(0) {
        return Err(missing("image bytes"));
    }
    Ok((bytes.value(0), format.value(0).to_string()))
}
