//! Sessions files of many sessions: the `sessions` table's data files.
//!
//! A seal commit writes one sessions file per workflow and month of its
//! batch (`sessions/<workflow>/<yyyy-mm>/pack.<hex16>.parquet`), rows in
//! `session_id` order, and `optimize` merges small ones; the claim on a
//! session id is a separate object (`layout::claim_path`), so the table's
//! files can be rewritten freely. The log's `add` of such a file carries
//! its index as a tag ([`TAG_SESSIONS`]: per row, in row order, the id and
//! the logged values), so a snapshot is still read from the log alone and a
//! scan of a few sessions selects their rows (`ParquetRowSelection`)
//! without reading the others.

use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch, sort_to_indices, take_record_batch};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::layout::{child, month_of, SESSIONS_DIR};
use super::pack::TAG_SESSIONS;
use super::schema::{sessions_schema, with_instruction};
use super::writer_props::CREATED_BY;
use crate::error::{Error, Result};

/// Rows per data page of a sessions file: a scan that selects a few rows
/// decodes pages this small (the page index locates them).
const PAGE_ROWS: usize = 128;

/// Most rows of one sessions file `optimize` writes (≈ 30–100 MB).
pub(crate) const MAX_PACK_SESSIONS: usize = 200_000;

/// One row of a sessions file, as its log tag records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionMember {
    /// Session id.
    pub session_id: String,
    /// `started_at`, µs.
    pub started_at_us: i64,
    /// `sealed_at`, µs.
    pub sealed_at_us: i64,
    /// Frames.
    pub frame_count: i64,
    /// Content digest.
    pub seal: String,
}

/// The [`TAG_SESSIONS`] value of `members`.
pub(crate) fn encode_members(members: &[SessionMember]) -> String {
    members
        .iter()
        .map(|m| {
            format!(
                "{} {} {} {} {}\n",
                m.session_id, m.started_at_us, m.sealed_at_us, m.frame_count, m.seal
            )
        })
        .collect()
}

/// `members` from a [`TAG_SESSIONS`] value, or what is wrong with it.
pub(crate) fn decode_members(tag: &str) -> std::result::Result<Vec<SessionMember>, String> {
    tag.lines()
        .enumerate()
        .map(|(i, line)| {
            let bad = || format!("line {} of its {TAG_SESSIONS} tag is {line:?}", i + 1);
            let parts: Vec<&str> = line.split(' ').collect();
            let [id, started, sealed, frames, seal] = parts[..] else {
                return Err(bad());
            };
            Ok(SessionMember {
                session_id: id.to_string(),
                started_at_us: started.parse().map_err(|_| bad())?,
                sealed_at_us: sealed.parse().map_err(|_| bad())?,
                frame_count: frames.parse().map_err(|_| bad())?,
                seal: seal.to_string(),
            })
        })
        .collect()
}

/// A written sessions file.
#[derive(Debug, Clone)]
pub(crate) struct SessionsFile {
    /// Its object path.
    pub path: Path,
    /// Its size.
    pub bytes: u64,
    /// Its workflow (one per file).
    pub workflow: String,
    /// Its rows, in order.
    pub members: Vec<SessionMember>,
}

/// A fresh sessions file path for `workflow` and the month of
/// `started_at_us`: `sessions/<workflow>/<yyyy-mm>/pack.<hex16>.parquet`
/// (a session id never holds a `.`, so the names never meet one-row files
/// of older stores).
pub(crate) fn sessions_pack_path(root: &Path, workflow: &str, started_at_us: i64) -> Path {
    let hex = hex::encode(rand::random::<[u8; 8]>());
    child(
        root,
        &[
            SESSIONS_DIR,
            workflow,
            &month_of(started_at_us),
            &format!("pack.{hex}.parquet"),
        ],
    )
}

/// Writes `rows` (sessions of one workflow, any order; an id given twice
/// is kept once) as one sessions file at `path`, rows sorted by
/// `session_id`. Nothing is written when `rows` holds none.
pub(crate) async fn write_sessions_file(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    rows: &[RecordBatch],
) -> Result<Option<SessionsFile>> {
    let schema = sessions_schema();
    let all = concat_batches(&schema, rows)?;
    if all.num_rows() == 0 {
        return Ok(None);
    }
    let order = sort_to_indices(column(&all, "session_id")?, None, None)?;
    let sorted = take_record_batch(&all, &order)?;
    // One row per id (a claim committed by two racing repairs).
    let ids = column(&sorted, "session_id")?.as_string::<i32>();
    let keep: Vec<u32> = (0..sorted.num_rows())
        .filter(|&i| i == 0 || ids.value(i) != ids.value(i - 1))
        .map(|i| i as u32)
        .collect();
    let sorted = take_record_batch(&sorted, &arrow::array::UInt32Array::from(keep))?;
    let members = members_of(&sorted)?;
    let workflow = column(&sorted, "workflow")?
        .as_string::<i32>()
        .value(0)
        .to_string();
    let props = WriterProperties::builder()
        .set_created_by(CREATED_BY.to_string())
        .set_compression(Compression::SNAPPY)
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_write_batch_size(PAGE_ROWS)
        .build();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema, Some(props))?;
    w.write(&sorted)?;
    w.close()?;
    let bytes = buf.len() as u64;
    store.put(path, PutPayload::from(Bytes::from(buf))).await?;
    Ok(Some(SessionsFile {
        path: path.clone(),
        bytes,
        workflow,
        members,
    }))
}

/// The rows of the sessions file at `path` whose `session_id` passes
/// `keep`, in the sessions schema and file order.
pub(crate) async fn read_sessions_rows(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    keep: impl Fn(&str) -> bool,
) -> Result<RecordBatch> {
    let bytes = store.get(path).await?.bytes().await?;
    let corrupt = |message: String| Error::Corrupt {
        path: path.to_string(),
        message,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    let schema = sessions_schema();
    let batches = reader
        .map(|b| with_instruction(b?))
        .collect::<Result<Vec<_>>>()?;
    let rows = concat_batches(&schema, &batches).map_err(|e| corrupt(e.to_string()))?;
    let ids = column(&rows, "session_id")?.as_string::<i32>();
    let mask: BooleanArray = ids.iter().map(|id| Some(id.is_some_and(&keep))).collect();
    Ok(filter_record_batch(&rows, &mask)?)
}

/// The members of rows in the sessions schema, in row order.
fn members_of(rows: &RecordBatch) -> Result<Vec<SessionMember>> {
    let ids = column(rows, "session_id")?.as_string::<i32>();
    let seals = column(rows, "seal")?.as_string::<i32>();
    let started = column(rows, "started_at")?.as_primitive::<TimestampMicrosecondType>();
    let sealed = column(rows, "sealed_at")?.as_primitive::<TimestampMicrosecondType>();
    let frames = column(rows, "frame_count")?.as_primitive::<Int64Type>();
    Ok((0..rows.num_rows())
        .map(|i| SessionMember {
            session_id: ids.value(i).to_string(),
            started_at_us: started.value(i),
            sealed_at_us: sealed.value(i),
            frame_count: frames.value(i),
            seal: seals.value(i).to_string(),
        })
        .collect())
}

fn column<'a>(rows: &'a RecordBatch, name: &str) -> Result<&'a arrow::array::ArrayRef> {
    rows.column_by_name(name)
        .ok_or_else(|| Error::Internal(format!("sessions rows lack {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_round_trip_and_bad_tags_are_named() {
        let m = vec![
            SessionMember {
                session_id: "ses_a".into(),
                started_at_us: -4,
                sealed_at_us: 900,
                frame_count: 3,
                seal: "ab12".into(),
            },
            SessionMember {
                session_id: "ses-b".into(),
                started_at_us: 5,
                sealed_at_us: 901,
                frame_count: 1,
                seal: "cd34".into(),
            },
        ];
        assert_eq!(decode_members(&encode_members(&m)).unwrap(), m);
        let e = decode_members("ses_a 1 2 3 ab\nses_b 1 x 3 cd\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(decode_members("ses_a 1 2 3").is_err());
        assert!(decode_members("ses_a 1 2 3 ab extra").is_err());
    }
}
