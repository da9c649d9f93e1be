//! Reading a published shard back row by row, for reports that speak in
//! sessions: [`shard_rows`] gives each row's `session_id`, `key` and a
//! SHA-256 of its bytes in the shard's format, and [`session_changes`]
//! compares two exports' rows session by session (which sessions a
//! reproduction lost, gained or changed). A shard is read whole: shards are
//! capped by `shard_size_bytes`.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use bytes::Bytes;
use object_store::path::Path;
use object_store::ObjectStore;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::spec::OutputFormat;
use crate::store::relative_key;

/// One row of a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDigest {
    /// Its session.
    pub session_id: String,
    /// Its key.
    pub key: String,
    /// SHA-256 of its bytes as the shard encodes them.
    pub sha256: [u8; 32],
}

/// The rows of `shard` under `prefix`, in shard order; a shard larger than
/// its manifest says is refused unread.
pub async fn shard_rows(
    store: &Arc<dyn ObjectStore>,
    prefix: &Path,
    shard: &super::ShardInfo,
    format: OutputFormat,
) -> Result<Vec<RowDigest>> {
    let key = relative_key(prefix, &shard.path);
    let bytes = super::read::bytes(store, &key, shard.bytes).await?;
    let corrupt = |message: String| Error::Corrupt {
        path: key.to_string(),
        message,
    };
    match format {
        OutputFormat::Jsonl => jsonl_rows(&bytes).map_err(corrupt),
        OutputFormat::Webdataset => tar_rows(&bytes).map_err(corrupt),
        OutputFormat::Mds => mds_rows(&bytes).map_err(corrupt),
        OutputFormat::Parquet => {
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .and_then(|b| b.build())
                    .map_err(|e| corrupt(e.to_string()))?;
            let mut out = Vec::new();
            for batch in reader {
                out.extend(batch_rows(&batch.map_err(|e| corrupt(e.to_string()))?)?);
            }
            Ok(out)
        }
        OutputFormat::Arrow => {
            let reader = arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)
                .map_err(|e| corrupt(e.to_string()))?;
            let mut out = Vec::new();
            for batch in reader {
                out.extend(batch_rows(&batch.map_err(|e| corrupt(e.to_string()))?)?);
            }
            Ok(out)
        }
    }
}

fn jsonl_rows(bytes: &Bytes) -> std::result::Result<Vec<RowDigest>, String> {
    let mut out = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_slice(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        let field = |name: &str| v[name].as_str().unwrap_or_default().to_string();
        out.push(RowDigest {
            session_id: field("session_id"),
            key: field("key"),
            sha256: Sha256::digest(line).into(),
        });
    }
    Ok(out)
}

fn mds_rows(bytes: &Bytes) -> std::result::Result<Vec<RowDigest>, String> {
    let samples = super::format::read_samples(bytes)?;
    Ok(samples
        .into_iter()
        .map(|s| {
            let text = |name: &str| {
                s.columns
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            RowDigest {
                session_id: text("session_id"),
                key: text("key"),
                sha256: Sha256::digest(s.raw).into(),
            }
        })
        .collect())
}

/// The members of a tar shard, in order: name and bytes.
pub(crate) fn tar_members(bytes: &[u8]) -> std::result::Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let name = entry
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        let mut body = Vec::new();
        entry.read_to_end(&mut body).map_err(|e| e.to_string())?;
        out.push((name, body));
    }
    Ok(out)
}

fn tar_rows(bytes: &Bytes) -> std::result::Result<Vec<RowDigest>, String> {
    let mut out: Vec<RowDigest> = Vec::new();
    let mut hashers: Vec<Sha256> = Vec::new();
    for (name, body) in tar_members(bytes)? {
        let key = name.split('.').next().unwrap_or_default().to_string();
        // A step export stores a frame's image once, as its own member
        // before the first step's `.json`: it belongs to that step's row.
        let image_only = out.last().is_some_and(|r| r.session_id.is_empty());
        if image_only && name.ends_with(".json") {
            if let Some(r) = out.last_mut() {
                r.key = key.clone();
            }
        }
        if out.last().is_none_or(|r| r.key != key) {
            out.push(RowDigest {
                session_id: String::new(),
                key,
                sha256: [0; 32],
            });
            hashers.push(Sha256::new());
        }
        if name.ends_with(".json") {
            let v: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| format!("{name}: {e}"))?;
            if let (Some(r), Some(s)) = (out.last_mut(), v["session_id"].as_str()) {
                r.session_id = s.to_string();
            }
        }
        if let Some(h) = hashers.last_mut() {
            h.update(name.as_bytes());
            h.update(&body);
        }
    }
    for (r, h) in out.iter_mut().zip(hashers) {
        r.sha256 = h.finalize().into();
    }
    Ok(out)
}

fn batch_rows(batch: &RecordBatch) -> Result<Vec<RowDigest>> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .map(|c| c.as_string::<i32>().clone())
            .ok_or_else(|| Error::Rows(format!("the shard lacks column `{name}`")))
    };
    let (sessions, keys) = (column("session_id")?, column("key")?);
    let mut out = Vec::with_capacity(batch.num_rows());
    for r in 0..batch.num_rows() {
        let mut w = arrow::json::LineDelimitedWriter::new(Vec::new());
        w.write(&batch.slice(r, 1))?;
        w.finish()?;
        out.push(RowDigest {
            session_id: sessions.value(r).to_string(),
            key: keys.value(r).to_string(),
            sha256: Sha256::digest(w.into_inner()).into(),
        });
    }
    Ok(out)
}

/// Session by session, how `again` differs from `original` (one line per
/// session that was lost, is new, or has rows that differ), in session order.
pub fn session_changes(original: &[RowDigest], again: &[RowDigest]) -> Vec<String> {
    type BySession<'a> = BTreeMap<&'a str, BTreeMap<&'a str, [u8; 32]>>;
    fn by_session(rows: &[RowDigest]) -> BySession<'_> {
        let mut m: BySession<'_> = BTreeMap::new();
        for r in rows {
            m.entry(r.session_id.as_str())
                .or_default()
                .insert(r.key.as_str(), r.sha256);
        }
        m
    }
    let (a, b) = (by_session(original), by_session(again));
    let mut ids: Vec<&str> = a.keys().chain(b.keys()).copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut out = Vec::new();
    for id in ids {
        match (a.get(id), b.get(id)) {
            (Some(x), None) => out.push(format!(
                "{id}: lost: its {} row(s) in the original are not produced again",
                x.len()
            )),
            (None, Some(y)) => out.push(format!(
                "{id}: not in the original: {} row(s) produced now",
                y.len()
            )),
            (Some(x), Some(y)) => {
                let differ = x.iter().filter(|(k, d)| y.get(*k) != Some(d)).count()
                    + y.keys().filter(|k| !x.contains_key(*k)).count();
                if differ > 0 {
                    out.push(format!(
                        "{id}: changed: {differ} row(s) differ ({} in the original, {} now)",
                        x.len(),
                        y.len()
                    ));
                }
            }
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(s: &str, k: &str, d: u8) -> RowDigest {
        RowDigest {
            session_id: s.into(),
            key: k.into(),
            sha256: [d; 32],
        }
    }

    #[test]
    fn changes_are_named_by_session() {
        let original = [
            row("a", "a_0", 1),
            row("a", "a_1", 2),
            row("b", "b_0", 3),
            row("c", "c_0", 4),
        ];
        let again = [
            row("a", "a_0", 1),
            row("a", "a_1", 9),
            row("c", "c_0", 4),
            row("d", "d_0", 5),
        ];
        let got = session_changes(&original, &again);
        assert_eq!(
            got,
            [
                "a: changed: 1 row(s) differ (2 in the original, 2 now)",
                "b: lost: its 1 row(s) in the original are not produced again",
                "d: not in the original: 1 row(s) produced now",
            ]
        );
        assert!(session_changes(&original, &original).is_empty());
    }
}
