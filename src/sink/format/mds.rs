//! MosaicML Streaming MDS shards (format version 2, no compression), as
//! `streaming.MDSWriter` lays them out: `num_samples: u32`, `num_samples + 1`
//! absolute sample offsets (`u32`), the shard's config as JSON, then the
//! samples. A sample is the `u32` sizes of its variable-size columns, then
//! every column's bytes, columns in name order.
//!
//! Columns and their MDS encodings: `image` is `png` or `jpeg` (the format of
//! the shard's first image; both decode through PIL whatever the bytes are),
//! the identity columns ([`TYPED`]) are `str` and `int`, and every other
//! column is `json` in the JSON Lines form (so a null stays a null). Each
//! sample carries its own image, step samples too: an MDS dataset is read
//! by random access.
//!
//! The header comes first but is known last, and a shard may be as large as
//! `shard_size_bytes`: the first [`SPILL_BYTES`] of samples are held in
//! memory, the rest go to a spool object beside the shard
//! (`shard-000000.mds.spool`, written and deleted by this export), which is
//! streamed back behind the header and the held samples when the shard
//! closes. Memory stays bounded whatever the cap.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{json, Value};
use std::sync::Arc;

use super::super::hashing::{HashingWriter, ShardDone};
use super::super::upload::ShardUpload;
use super::ShardFile;
use crate::error::{Error, Result};
use crate::sink::layout::ExportLayout;
use crate::sink::row_json::row_object;
use crate::store::ImageFormat;

/// Samples held in memory before a shard's body goes to its spool object.
pub(crate) const SPILL_BYTES: usize = 32 << 20;

/// Columns that are never null in an export row and get a typed encoding.
const TYPED: [&str; 13] = [
    "key",
    "session_id",
    "workflow",
    "outcome",
    "actor_kind",
    "frame_idx",
    "t_ms",
    "image_format",
    "width",
    "height",
    "observation_key",
    "step",
    "frame_t_ms",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Image,
    Str,
    Int,
    Json,
}

struct Column {
    name: String,
    encoding: Encoding,
}

/// An MDS shard being written.
pub(super) struct MdsShard {
    out: HashingWriter,
    store: Arc<dyn ObjectStore>,
    spool_key: Path,
    part_bytes: usize,
    spill_bytes: usize,
    size_limit: u64,
    columns: Vec<Column>,
    /// `png` or `jpeg`, fixed by the first image.
    image_encoding: Option<&'static str>,
    /// `config_value` as the shard's header writes it (it changes only when
    /// the first image fixes `image_encoding`).
    config: Vec<u8>,
    /// Size of each sample written.
    sizes: Vec<u32>,
    body_bytes: u64,
    /// The first samples, up to `spill_bytes`.
    held: Vec<u8>,
    /// The samples after them, once there are more than memory holds.
    spool: Option<ShardUpload>,
    /// Whether a spool object was started (and must not outlive the shard).
    spooled: bool,
    /// The last encoded sample, kept between `size_with` and `add`.
    pending: Option<Vec<u8>>,
}

impl MdsShard {
    pub(super) fn new(out: HashingWriter, schema: SchemaRef, size_limit: u64) -> Result<Self> {
        Self::with_spill(out, schema, size_limit, SPILL_BYTES)
    }

    pub(super) fn with_spill(
        out: HashingWriter,
        schema: SchemaRef,
        size_limit: u64,
        spill_bytes: usize,
    ) -> Result<Self> {
        let mut columns: Vec<Column> = schema
            .fields()
            .iter()
            .map(|f| {
                let typed = TYPED.contains(&f.name().as_str());
                let encoding = match f.data_type() {
                    DataType::Struct(_) if f.name() == "image" => Encoding::Image,
                    DataType::Utf8 if typed => Encoding::Str,
                    DataType::Int64 | DataType::Int32 | DataType::UInt32 if typed => Encoding::Int,
                    _ => Encoding::Json,
                };
                Column {
                    name: f.name().clone(),
                    encoding,
                }
            })
            .collect();
        columns.sort_by(|a, b| a.name.cmp(&b.name));
        let (store, spool_key, part_bytes) = out.beside(ExportLayout::SPOOL_SUFFIX);
        let mut shard = MdsShard {
            out,
            store,
            spool_key,
            part_bytes,
            spill_bytes,
            size_limit,
            columns,
            image_encoding: None,
            config: Vec::new(),
            sizes: Vec::new(),
            body_bytes: 0,
            held: Vec::new(),
            spool: None,
            spooled: false,
            pending: None,
        };
        shard.config = python_json(&shard.config_value()).into_bytes();
        Ok(shard)
    }

    /// The shard's config as MDS records it (in the shard and in
    /// `index.json`), without the sample count and file info.
    fn config_value(&self) -> Value {
        let encodings: Vec<&str> = self
            .columns
            .iter()
            .map(|c| match c.encoding {
                Encoding::Image => self.image_encoding.unwrap_or("png"),
                Encoding::Str => "str",
                Encoding::Int => "int",
                Encoding::Json => "json",
            })
            .collect();
        let sizes: Vec<Value> = self
            .columns
            .iter()
            .map(|c| match c.encoding {
                Encoding::Int => json!(8),
                _ => Value::Null,
            })
            .collect();
        json!({
            "column_encodings": encodings,
            "column_names": self.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            "column_sizes": sizes,
            "compression": null,
            "format": "mds",
            "hashes": ["sha256"],
            "size_limit": self.size_limit,
            "version": 2,
        })
    }

    /// Bytes before the first sample with `samples` samples.
    fn header_len(&self, samples: usize, config: usize) -> u64 {
        4 + 4 * (samples as u64 + 1) + config as u64
    }

    /// One sample: the `u32` sizes of the variable-size columns (filled in
    /// as each column is written), then every column's bytes, written once.
    fn encode(&mut self, row: &RecordBatch) -> Result<Vec<u8>> {
        let obj = row_object(row, 0, &["image"])?;
        let key = obj.get("key").and_then(Value::as_str).unwrap_or_default();
        let null = |name: &str| {
            Error::Rows(format!(
                "an MDS sample cannot hold a null `{name}` (row {key:?})"
            ))
        };
        let variable = self
            .columns
            .iter()
            .filter(|c| c.encoding != Encoding::Int)
            .count();
        let mut out = vec![0u8; 4 * variable];
        let mut slot = 0;
        for c in &self.columns {
            let value = obj.get(&c.name).unwrap_or(&Value::Null);
            let start = out.len();
            match c.encoding {
                Encoding::Int => {
                    let n = value.as_i64().ok_or_else(|| null(&c.name))?;
                    out.extend_from_slice(&n.to_le_bytes());
                    continue;
                }
                Encoding::Image => {
                    let image = row
                        .column_by_name("image")
                        .ok_or_else(|| null("image"))?
                        .as_struct();
                    let bytes = image.column(0).as_binary::<i32>();
                    if bytes.is_null(0) {
                        return Err(null("image"));
                    }
                    if self.image_encoding.is_none() {
                        let format = obj.get("image_format").and_then(Value::as_str);
                        self.image_encoding = Some(match format.map(ImageFormat::of_column) {
                            Some(ImageFormat::Jpeg) => "jpeg",
                            _ => "png",
                        });
                        self.config = python_json(&self.config_value()).into_bytes();
                    }
                    out.extend_from_slice(bytes.value(0));
                }
                Encoding::Str => {
                    let text = value.as_str().ok_or_else(|| null(&c.name))?;
                    out.extend_from_slice(text.as_bytes());
                }
                Encoding::Json => serde_json::to_writer(&mut out, value)?,
            }
            let len = u32::try_from(out.len() - start).map_err(|_| {
                Error::Rows(format!(
                    "column `{}` of row {key:?} is over 4 GiB, more than an MDS sample holds",
                    c.name
                ))
            })?;
            out[4 * slot..4 * slot + 4].copy_from_slice(&len.to_le_bytes());
            slot += 1;
        }
        Ok(out)
    }

    async fn push(&mut self, sample: Vec<u8>) -> Result<()> {
        let len = u32::try_from(sample.len())
            .map_err(|_| Error::Rows("an MDS sample is over 4 GiB".into()))?;
        self.sizes.push(len);
        self.body_bytes += sample.len() as u64;
        if self.spool.is_none() && self.held.len() + sample.len() <= self.spill_bytes {
            self.held.extend_from_slice(&sample);
            return Ok(());
        }
        self.spooled = true;
        let spool = self.spool.get_or_insert_with(|| {
            ShardUpload::new(
                Arc::clone(&self.store),
                self.spool_key.clone(),
                self.part_bytes,
            )
        });
        spool.put(Bytes::from(sample)).await
    }

    fn header(&self) -> Result<Vec<u8>> {
        let config = &self.config;
        let start = self.header_len(self.sizes.len(), config.len());
        let too_big = || Error::Rows("an MDS shard is over 4 GiB".into());
        let mut out = Vec::with_capacity(start as usize);
        out.extend_from_slice(&(self.sizes.len() as u32).to_le_bytes());
        let mut at = start;
        out.extend_from_slice(&u32::try_from(at).map_err(|_| too_big())?.to_le_bytes());
        for s in &self.sizes {
            at += u64::from(*s);
            out.extend_from_slice(&u32::try_from(at).map_err(|_| too_big())?.to_le_bytes());
        }
        out.extend_from_slice(config);
        Ok(out)
    }

    async fn finish_inner(&mut self) -> Result<()> {
        let header = self.header()?;
        self.out.put(Bytes::from(header)).await?;
        self.out
            .put(Bytes::from(std::mem::take(&mut self.held)))
            .await?;
        if let Some(upload) = self.spool.take() {
            let key = self.spool_key.clone();
            upload.finish().await?;
            let got = self
                .store
                .get(&key)
                .await
                .map_err(Error::destination("get", &key))?;
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(Error::destination("get", &key))?;
                self.out.put(chunk).await?;
            }
            self.store
                .delete(&key)
                .await
                .map_err(Error::destination("delete", &key))?;
        }
        Ok(())
    }
}

#[async_trait]
impl ShardFile for MdsShard {
    fn size_with(&mut self, row: &RecordBatch) -> Result<u64> {
        let sample = self.encode(row)?;
        let size = self.header_len(self.sizes.len() + 1, self.config.len())
            + self.body_bytes
            + sample.len() as u64;
        self.pending = Some(sample);
        Ok(size)
    }

    async fn add(&mut self, row: &RecordBatch) -> Result<()> {
        let sample = match self.pending.take() {
            Some(s) => s,
            None => self.encode(row)?,
        };
        self.push(sample).await
    }

    fn loader_entry(&self) -> Option<Value> {
        let mut entry = self.config_value();
        entry["samples"] = json!(self.sizes.len());
        entry["zip_data"] = Value::Null;
        Some(entry)
    }

    async fn finish(mut self: Box<Self>) -> Result<ShardDone> {
        if let Err(e) = self.finish_inner().await {
            self.abort_spool().await;
            let _ = self.out.abort().await;
            return Err(e);
        }
        self.out.finish().await
    }

    async fn abort(mut self: Box<Self>) -> bool {
        self.abort_spool().await;
        self.out.abort().await
    }
}

impl MdsShard {
    async fn abort_spool(&mut self) {
        if let Some(mut upload) = self.spool.take() {
            upload.abort().await;
        }
        if self.spooled {
            let _ = self.store.delete(&self.spool_key).await;
        }
    }
}

/// One sample read back from an MDS shard: its bytes and each column's.
#[derive(Debug)]
pub(crate) struct MdsSample<'a> {
    pub(crate) raw: &'a [u8],
    pub(crate) columns: Vec<(String, &'a [u8])>,
    /// Each column's MDS encoding (`str`, `int`, `json`, `png`, `jpeg`).
    pub(crate) encodings: std::sync::Arc<Vec<String>>,
}

/// The samples of an MDS shard, checking its header and config; the error
/// says what is malformed.
pub(crate) fn read_samples(shard: &[u8]) -> std::result::Result<Vec<MdsSample<'_>>, String> {
    let u32_at = |at: usize| -> std::result::Result<usize, String> {
        shard
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| format!("truncated at byte {at}"))
    };
    let n = u32_at(0)?;
    let offsets: Vec<usize> = (0..=n)
        .map(|i| u32_at(4 + 4 * i))
        .collect::<std::result::Result<_, _>>()?;
    let config_at = 4 + 4 * (n + 1);
    let config = shard
        .get(config_at..offsets[0])
        .ok_or("the first offset is before the config")?;
    let config: Value = serde_json::from_slice(config).map_err(|e| format!("config: {e}"))?;
    let names: Vec<String> = config["column_names"]
        .as_array()
        .ok_or("config lacks column_names")?
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect();
    let encodings: std::sync::Arc<Vec<String>> = std::sync::Arc::new(
        config["column_encodings"]
            .as_array()
            .ok_or("config lacks column_encodings")?
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect(),
    );
    let sizes: Vec<Option<usize>> = config["column_sizes"]
        .as_array()
        .ok_or("config lacks column_sizes")?
        .iter()
        .map(|v| v.as_u64().map(|n| n as usize))
        .collect();
    if offsets.last() != Some(&shard.len()) {
        return Err(format!(
            "the last offset is {:?}, the shard has {} bytes",
            offsets.last(),
            shard.len()
        ));
    }
    let mut out = Vec::with_capacity(n);
    for w in offsets.windows(2) {
        let raw = shard
            .get(w[0]..w[1])
            .ok_or_else(|| format!("sample at {}..{} is out of the shard", w[0], w[1]))?;
        let mut at = 0;
        let mut lens = Vec::with_capacity(names.len());
        for size in &sizes {
            lens.push(match size {
                Some(s) => *s,
                None => {
                    let b = raw.get(at..at + 4).ok_or("truncated sample sizes")?;
                    at += 4;
                    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
                }
            });
        }
        let mut columns = Vec::with_capacity(names.len());
        for (name, len) in names.iter().zip(lens) {
            let v = raw.get(at..at + len).ok_or("truncated sample data")?;
            columns.push((name.clone(), v));
            at += len;
        }
        out.push(MdsSample {
            raw,
            columns,
            encodings: std::sync::Arc::clone(&encodings),
        });
    }
    Ok(out)
}

/// `value` as Python's `json.dumps(value, sort_keys=True)` writes it
/// (separators `", "` and `": "`, non-ASCII escaped), which is how MDS
/// writes its config and `index.json`.
pub(crate) fn python_json(value: &Value) -> String {
    let mut out = String::new();
    write_python(value, &mut out);
    out
}

fn write_python(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python(v, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_str(k, out);
                out.push_str(": ");
                write_python(&map[k.as_str()], out);
            }
            out.push('}');
        }
        Value::String(s) => write_python_str(s, out),
        other => out.push_str(&other.to_string()),
    }
}

fn write_python_str(s: &str, out: &mut String) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7f => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests;
