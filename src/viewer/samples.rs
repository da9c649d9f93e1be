//! A shard's samples as the viewer shows them, decoded from the shard's own
//! bytes in each format: fields as text and images as bytes (Parquet and
//! Arrow IPC columns, JSON Lines values with `data:` URLs, WebDataset tar
//! members, MDS columns by their encoding). A sample holding a chat (`messages` or `conversations`)
//! keeps it as JSON for the page to render as turns.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use base64::Engine;
use serde_json::Value;

use crate::spec::OutputFormat;

/// One sample of a shard.
#[derive(Debug, Default)]
pub(crate) struct Sample {
    /// Its fields other than images, as JSON (every format alike).
    pub(crate) values: serde_json::Map<String, Value>,
    /// Field (or member) name and image bytes.
    pub(crate) images: Vec<(String, Vec<u8>)>,
    /// The chat the model sees, when the sample has one.
    pub(crate) chat: Option<Value>,
    /// Image files beside the shards it names (`image`, `images`: a JSON
    /// Lines step export), relative to the export.
    pub(crate) image_files: Vec<String>,
}

/// Whether `s` names an image file beside the shards.
fn is_image_file(s: &str) -> bool {
    !s.contains("://")
        && !s.starts_with('/')
        && [".png", ".jpg", ".jpeg", ".webp"]
            .iter()
            .any(|e| s.to_ascii_lowercase().ends_with(e))
}

impl Sample {
    fn field(&mut self, name: &str, value: &Value) {
        if let Value::String(s) = value {
            if let Some(image) = data_url_image(s) {
                self.images.push((name.to_string(), image));
                return;
            }
        }
        if matches!(name, "messages" | "conversations") && value.is_array() {
            self.chat = Some(value.clone());
        }
        match (name, value) {
            ("image", Value::String(p)) if is_image_file(p) => self.image_files.push(p.clone()),
            ("images", Value::Array(ps)) => {
                for p in ps
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|p| is_image_file(p))
                {
                    if !self.image_files.iter().any(|q| q == p) {
                        self.image_files.push(p.to_string());
                    }
                }
            }
            _ => {}
        }
        self.values.insert(name.to_string(), value.clone());
    }
}

fn data_url_image(s: &str) -> Option<Vec<u8>> {
    let rest = s.strip_prefix("data:image/")?;
    let (_, b64) = rest.split_once(";base64,")?;
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// Every sample of a shard of `format`.
pub(crate) fn decode(format: OutputFormat, bytes: bytes::Bytes) -> Result<Vec<Sample>, String> {
    match format {
        OutputFormat::Parquet => {
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .and_then(|b| b.build())
                    .map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for batch in reader {
                out.extend(batch_samples(&batch.map_err(|e| e.to_string())?)?);
            }
            Ok(out)
        }
        OutputFormat::Arrow => {
            let reader = arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)
                .map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for batch in reader {
                out.extend(batch_samples(&batch.map_err(|e| e.to_string())?)?);
            }
            Ok(out)
        }
        OutputFormat::Jsonl => bytes
            .split(|&b| b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
            .map(|(i, line)| {
                let v: Value =
                    serde_json::from_slice(line).map_err(|e| format!("line {}: {e}", i + 1))?;
                let mut s = Sample::default();
                if let Value::Object(m) = v {
                    for (k, v) in &m {
                        s.field(k, v);
                    }
                }
                Ok(s)
            })
            .collect(),
        OutputFormat::Webdataset => tar_samples(&bytes),
        OutputFormat::Mds => mds_samples(&bytes),
    }
}

/// An MDS shard's samples, each column by its encoding.
fn mds_samples(bytes: &[u8]) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for m in crate::sink::mds_samples(bytes)? {
        let mut s = Sample::default();
        for ((name, v), encoding) in m.columns.iter().zip(m.encodings.iter()) {
            match encoding.as_str() {
                "png" | "jpeg" | "jpg" | "webp" | "pil" => {
                    s.images.push((name.clone(), v.to_vec()))
                }
                "int" if v.len() == 8 => {
                    let n = i64::from_le_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]);
                    s.field(name, &Value::from(n));
                }
                "json" => {
                    let value = serde_json::from_slice::<Value>(v)
                        .map_err(|e| format!("column {name}: {e}"))?;
                    s.field(name, &value);
                }
                _ => s.field(
                    name,
                    &Value::String(String::from_utf8_lossy(v).into_owned()),
                ),
            }
        }
        out.push(s);
    }
    Ok(out)
}

fn tar_samples(bytes: &[u8]) -> Result<Vec<Sample>, String> {
    let mut out: Vec<(String, Sample)> = Vec::new();
    for (name, body) in crate::sink::tar_members(bytes)? {
        let (key, ext) = name.split_once('.').unwrap_or((&name, ""));
        if out.last().is_none_or(|(k, _)| k != key) {
            out.push((key.to_string(), Sample::default()));
        }
        let Some((_, s)) = out.last_mut() else {
            continue;
        };
        match ext.rsplit('.').next().unwrap_or("") {
            "png" | "jpg" | "jpeg" | "webp" => s.images.push((ext.to_string(), body)),
            "json" => match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Object(m)) => {
                    for (k, v) in &m {
                        s.field(k, v);
                    }
                }
                Ok(other) => {
                    s.values.insert(ext.to_string(), other);
                }
                Err(e) => return Err(format!("{name}: {e}")),
            },
            _ => {
                s.values.insert(
                    ext.to_string(),
                    Value::String(String::from_utf8_lossy(&body).into_owned()),
                );
            }
        }
    }
    // A step export's frame image stored once before its first step:
    // a member group of images only belongs to the sample after it.
    let mut merged: Vec<Sample> = Vec::new();
    let mut pending: Vec<(String, Vec<u8>)> = Vec::new();
    for (_, mut s) in out {
        if s.values.is_empty() && !s.images.is_empty() {
            pending.append(&mut s.images);
            continue;
        }
        s.images.splice(0..0, pending.drain(..));
        merged.push(s);
    }
    Ok(merged)
}

fn batch_samples(b: &RecordBatch) -> Result<Vec<Sample>, String> {
    let schema = b.schema();
    let mut out: Vec<Sample> = (0..b.num_rows()).map(|_| Sample::default()).collect();
    let mut rest = Vec::new();
    for (i, (field, col)) in schema.fields().iter().zip(b.columns()).enumerate() {
        // The Hugging Face image column (a struct of `bytes` and `path`),
        // or raw image bytes.
        let image_bytes = match col.data_type() {
            DataType::Struct(fields) if fields.iter().any(|f| f.name() == "bytes") => col
                .as_struct()
                .column_by_name("bytes")
                .filter(|c| matches!(c.data_type(), DataType::Binary))
                .cloned(),
            DataType::Binary => Some(std::sync::Arc::clone(col)),
            _ => None,
        };
        match image_bytes {
            Some(bin) => {
                let bin = bin.as_binary::<i32>();
                for (r, s) in out.iter_mut().enumerate() {
                    if bin.is_valid(r) {
                        s.images.push((field.name().clone(), bin.value(r).to_vec()));
                    }
                }
            }
            None => rest.push(i),
        }
    }
    // The other columns as JSON objects, as a JSON Lines shard has them.
    let rest = b.project(&rest).map_err(|e| e.to_string())?;
    let mut w = arrow::json::ArrayWriter::new(Vec::new());
    w.write(&rest).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    let rows: Vec<serde_json::Map<String, Value>> =
        serde_json::from_slice(&w.into_inner()).map_err(|e| e.to_string())?;
    for (s, row) in out.iter_mut().zip(rows) {
        for (k, v) in &row {
            s.field(k, v);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_data_urls_are_images_and_chats_are_kept() {
        let line = serde_json::json!({
            "key": "k1",
            "image": format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(b"\x89PNG")),
            "messages": [{"role": "user", "content": "hi"}],
        });
        let samples = decode(OutputFormat::Jsonl, bytes::Bytes::from(format!("{line}\n"))).unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!(
            samples[0].images,
            vec![("image".to_string(), b"\x89PNG".to_vec())]
        );
        assert!(samples[0].chat.is_some());
        assert_eq!(samples[0].values["key"], "k1");
    }

    #[test]
    fn a_broken_line_is_named() {
        let e = decode(OutputFormat::Jsonl, bytes::Bytes::from_static(b"{}\n{x\n")).unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
    }
}
