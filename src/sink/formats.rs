//! One shard file per format. Each [`ShardFile`] takes output rows one at a
//! time and can say, before taking a row, an upper bound of the shard's size
//! once that row and the format's trailer are written — exact for JSONL and
//! WebDataset, a conservative estimate for Parquet and Arrow IPC — so the
//! sharder can close a shard before it would pass `shard_size_bytes`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::DataType;
use arrow::ipc::writer::FileWriter;
use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use serde_json::Value;

use super::hashing::{HashingWriter, ShardDone};
use super::row_json::row_object;
use super::row_schema::{extension, output_schema};
use crate::spec::OutputFormat;
use crate::store::image_parquet_props;
use crate::{Error, Result};

/// Rows per Parquet row group (images are large; ~100 rows or ~100 MB).
pub const PARQUET_ROW_GROUP_ROWS: usize = 100;
/// Bytes per Parquet row group.
pub const PARQUET_ROW_GROUP_BYTES: usize = 100 << 20;
/// Rows per Arrow IPC record batch.
const ARROW_BATCH_ROWS: usize = 64;

/// A shard being written.
#[async_trait]
pub trait ShardFile: Send {
    /// Upper bound of the finished shard's size if `row` (a one-row batch in
    /// the output schema) were added now.
    fn size_with(&mut self, row: &RecordBatch) -> Result<u64>;
    /// Adds `row`.
    async fn add(&mut self, row: &RecordBatch) -> Result<()>;
    /// Writes the trailer and completes the upload.
    async fn finish(self: Box<Self>) -> Result<ShardDone>;
    /// Abandons the shard; true when something reached the store and the
    /// key must be cleaned up.
    async fn abort(self: Box<Self>) -> bool;
}

/// Opens a shard of `format` on `out`.
pub fn open_shard(format: OutputFormat, out: HashingWriter) -> Result<Box<dyn ShardFile>> {
    Ok(match format {
        OutputFormat::Jsonl => Box::new(RowShard::new(out, RowEncoding::Jsonl)),
        OutputFormat::Webdataset => Box::new(RowShard::new(out, RowEncoding::Tar)),
        OutputFormat::Parquet => Box::new(ParquetShard::new(out)?),
        OutputFormat::Arrow => Box::new(ArrowShard::new(out)?),
    })
}

/// File extension of a format's shards.
pub fn shard_extension(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Parquet => "parquet",
        OutputFormat::Arrow => "arrow",
        OutputFormat::Jsonl => "jsonl",
        OutputFormat::Webdataset => "tar",
    }
}

/// Bytes a row's values take (strings and binaries by length, fixed-width
/// values by width), a basis for size bounds of the columnar formats.
pub fn row_value_bytes(row: &RecordBatch) -> u64 {
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

// ---------------------------------------------------------------- JSONL / tar

#[derive(Clone, Copy)]
enum RowEncoding {
    Jsonl,
    Tar,
}

/// Row-at-a-time formats: each row is encoded to bytes first, so sizes are exact.
struct RowShard {
    out: HashingWriter,
    encoding: RowEncoding,
    /// The last encoded row, kept between `size_with` and `add`.
    pending: Option<Vec<u8>>,
}

/// End of a tar archive: two zero blocks.
const TAR_TRAILER: u64 = 1024;

impl RowShard {
    fn new(out: HashingWriter, encoding: RowEncoding) -> Self {
        RowShard {
            out,
            encoding,
            pending: None,
        }
    }

    fn trailer(&self) -> u64 {
        match self.encoding {
            RowEncoding::Jsonl => 0,
            RowEncoding::Tar => TAR_TRAILER,
        }
    }

    fn encode(&self, row: &RecordBatch) -> Result<Vec<u8>> {
        match self.encoding {
            RowEncoding::Jsonl => jsonl_line(row),
            RowEncoding::Tar => tar_sample(row),
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
        self.out.put(Bytes::from(bytes)).await
    }

    async fn finish(mut self: Box<Self>) -> Result<ShardDone> {
        if let RowEncoding::Tar = self.encoding {
            self.out.write(&[0u8; TAR_TRAILER as usize]).await?;
        }
        self.out.finish().await
    }

    async fn abort(self: Box<Self>) -> bool {
        self.out.abort().await
    }
}

fn image_of(row: &RecordBatch) -> Result<(&[u8], String)> {
    let missing = |what: &str| Error::Corrupt {
        path: "<export rows>".into(),
        message: format!("row lacks {what}"),
    };
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

/// `{…, "image": "data:image/png;base64,…"}\n`
fn jsonl_line(row: &RecordBatch) -> Result<Vec<u8>> {
    let (bytes, format) = image_of(row)?;
    let mut obj = row_object(row, 0, &["image"])?;
    let mime = if format == "jpeg" {
        "image/jpeg"
    } else {
        "image/png"
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    obj.insert(
        "image".into(),
        Value::String(format!("data:{mime};base64,{b64}")),
    );
    let mut line = serde_json::to_vec(&obj).map_err(|e| Error::io("<jsonl>", e.into()))?;
    line.push(b'\n');
    Ok(line)
}

/// `{key}.png|jpg` then `{key}.json` (every other column), as pax tar members
/// with fixed header fields.
fn tar_sample(row: &RecordBatch) -> Result<Vec<u8>> {
    let (bytes, format) = image_of(row)?;
    let obj = row_object(row, 0, &["image"])?;
    let key = obj
        .get("key")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let json = serde_json::to_vec(&obj).map_err(|e| Error::io("<webdataset>", e.into()))?;
    let mut out = Vec::with_capacity(bytes.len() + json.len() + 2048);
    tar_member(&mut out, &format!("{key}.{}", extension(&format)), bytes)?;
    tar_member(&mut out, &format!("{key}.json"), &json)?;
    Ok(out)
}

fn tar_member(out: &mut Vec<u8>, name: &str, data: &[u8]) -> Result<()> {
    let io = |e| Error::io("<tar header>", e);
    if name.len() > 100 {
        // A pax extended header carries the full name.
        let record = pax_record("path", name);
        let mut h = fixed_header(record.len() as u64, tar::EntryType::XHeader);
        h.set_path(format!("PaxHeaders/{}", &name[..name.len().min(80)]))
            .map_err(io)?;
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        pad_into(out, &record);
    }
    let mut h = fixed_header(data.len() as u64, tar::EntryType::Regular);
    h.set_path(&name[..name.len().min(100)]).map_err(io)?;
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    pad_into(out, data);
    Ok(())
}

fn fixed_header(size: u64, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    let _ = h.set_username("");
    let _ = h.set_groupname("");
    h
}

/// `"<len> key=value\n"`, where `<len>` counts the whole record.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() > len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

fn pad_into(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    let rem = data.len() % 512;
    if rem != 0 {
        out.extend(std::iter::repeat_n(0u8, 512 - rem));
    }
}

// ---------------------------------------------------------------- Parquet

/// A `Write` target whose bytes the async side drains after each call.
#[derive(Clone, Default)]
struct Drain(Arc<Mutex<Vec<u8>>>);

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
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Upper bound of a Parquet footer: schema, key-value metadata (the Arrow
/// schema and Hugging Face features), and per row group per column metadata
/// with statistics.
fn parquet_footer_bound(row_groups: usize) -> u64 {
    let columns = 24u64;
    16 * 1024 + (row_groups as u64 + 1) * columns * 400
}

struct ParquetShard {
    out: HashingWriter,
    drain: Drain,
    writer: Option<ArrowWriter<Drain>>,
    row_groups: usize,
}

fn parquet_props() -> WriterProperties {
    let image = ColumnPath::new(vec!["image".into(), "bytes".into()]);
    image_parquet_props(image, PARQUET_ROW_GROUP_ROWS)
}

impl ParquetShard {
    fn new(out: HashingWriter) -> Result<Self> {
        let drain = Drain::default();
        let writer = ArrowWriter::try_new(drain.clone(), output_schema(), Some(parquet_props()))?;
        Ok(ParquetShard {
            out,
            drain,
            writer: Some(writer),
            row_groups: 0,
        })
    }

    fn writer(&mut self) -> Result<&mut ArrowWriter<Drain>> {
        self.writer.as_mut().ok_or_else(|| Error::Corrupt {
            path: "<parquet shard>".into(),
            message: "writer already closed".into(),
        })
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
            + parquet_footer_bound(rg + 1))
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

// ---------------------------------------------------------------- Arrow IPC

struct ArrowShard {
    out: HashingWriter,
    drain: Drain,
    writer: Option<FileWriter<Drain>>,
    pending: Vec<RecordBatch>,
    pending_bytes: u64,
    batches: u64,
}

/// Upper bound of one IPC record batch's framing (message header, 64-byte
/// padding of each of ~60 buffers) and of the file footer per block.
const IPC_BATCH_OVERHEAD: u64 = 8 * 1024;
const IPC_FOOTER_BASE: u64 = 8 * 1024;

impl ArrowShard {
    fn new(out: HashingWriter) -> Result<Self> {
        let drain = Drain::default();
        let writer = FileWriter::try_new(drain.clone(), &output_schema())?;
        Ok(ArrowShard {
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
        let batch = concat_batches(&output_schema(), &self.pending)?;
        self.pending.clear();
        self.pending_bytes = 0;
        let w = self.writer.as_mut().ok_or_else(|| Error::Corrupt {
            path: "<arrow shard>".into(),
            message: "writer already closed".into(),
        })?;
        w.write(&batch)?;
        self.batches += 1;
        let bytes = self.drain.take();
        self.out.put(Bytes::from(bytes)).await
    }
}

#[async_trait]
impl ShardFile for ArrowShard {
    fn size_with(&mut self, row: &RecordBatch) -> Result<u64> {
        let buffered = self.drain.0.lock().map_or(0, |b| b.len() as u64);
        let pending = self.pending_bytes + row_value_bytes(row) + 64;
        let batches = self.batches + 1 + u64::from(self.pending.len() + 1 >= ARROW_BATCH_ROWS);
        Ok(self.out.bytes()
            + buffered
            + pending
            + batches * IPC_BATCH_OVERHEAD
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let r = pax_record("path", &"k".repeat(120));
        let text = String::from_utf8(r.clone()).unwrap();
        let (len, _) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), r.len());
        assert_eq!(pax_record("path", "a"), b"9 path=a\n");
        assert_eq!(pax_record("path", "abc"), b"12 path=abc\n");
    }

    #[test]
    fn tar_members_are_block_aligned_with_fixed_headers() {
        let mut out = Vec::new();
        tar_member(&mut out, "k_000000.png", b"12345").unwrap();
        assert_eq!(out.len(), 1024);
        let h = tar::Header::from_byte_slice(&out[..512]);
        assert_eq!(h.mtime().unwrap(), 0);
        assert_eq!(h.size().unwrap(), 5);
        let mut long = Vec::new();
        tar_member(
            &mut long,
            &format!("{}_000000.json", "s".repeat(120)),
            b"{}",
        )
        .unwrap();
        assert_eq!(long.len(), 512 * 4);
    }
}
