//! Packed frames files: the frames of many sessions of one workflow and
//! month in one Parquet file, each session in row groups of its own.
//!
//! A pack is written by maintenance (`optimize.rs`, and `forget` when it
//! takes a session out of one) from the frames of committed sessions, in
//! `session_id` order; every session's rows are flushed as their own row
//! groups, so a session is a contiguous byte range of the file that holds
//! no byte of another session. The `frames` log's `add` of a pack carries
//! the index in its tags ([`TAG_SESSIONS`]: id, byte range, rows per
//! session), so a scan reads one session's row groups by handing DataFusion
//! the range (`PartitionedFile::with_range`: a row group is read when its
//! first page starts inside the range). Pack names carry a random part, so
//! two writers never write the same object.

use std::sync::Arc;

use arrow::array::RecordBatch;
use futures::TryStreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
#[allow(deprecated)] // still parquet 59's one object_store reader
use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::arrow::{AsyncArrowWriter, ParquetRecordBatchStreamBuilder};
use parquet::file::metadata::RowGroupMetaData;

use super::layout::{child, month_of, FRAMES_DIR};
use super::schema::frames_file_schema;
use super::writer_props::{frames_writer_props, ROW_GROUP_BYTES};
use crate::error::{Error, Result};

/// Tag of a pack's `add`: its sessions, one `id start end rows` line each.
pub(crate) const TAG_SESSIONS: &str = "nusomi.sessions";

/// Rows per batch while copying frames (images included).
const COPY_BATCH_ROWS: usize = 64;

/// One session inside a pack: its rows are the row groups starting in
/// `start..end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackMember {
    /// Session id.
    pub session_id: String,
    /// First byte of its first row group.
    pub start: u64,
    /// First byte after its last row group.
    pub end: u64,
    /// Its rows (frames).
    pub rows: i64,
}

/// The [`TAG_SESSIONS`] value of `members`.
pub(crate) fn encode_members(members: &[PackMember]) -> String {
    members
        .iter()
        .map(|m| format!("{} {} {} {}\n", m.session_id, m.start, m.end, m.rows))
        .collect()
}

/// `members` from a [`TAG_SESSIONS`] value, or what is wrong with it.
pub(crate) fn decode_members(tag: &str) -> std::result::Result<Vec<PackMember>, String> {
    tag.lines()
        .enumerate()
        .map(|(i, line)| {
            let bad = || format!("line {} of its {TAG_SESSIONS} tag is {line:?}", i + 1);
            let mut parts = line.split(' ');
            let (Some(id), Some(start), Some(end), Some(rows), None) = (
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
            ) else {
                return Err(bad());
            };
            let member = PackMember {
                session_id: id.to_string(),
                start: start.parse().map_err(|_| bad())?,
                end: end.parse().map_err(|_| bad())?,
                rows: rows.parse().map_err(|_| bad())?,
            };
            if member.end <= member.start || member.rows < 0 {
                return Err(bad());
            }
            Ok(member)
        })
        .collect()
}

/// Where one session's frames are now: a whole file, or a range of a pack.
#[derive(Debug, Clone)]
pub(crate) struct PackSource {
    /// Session id.
    pub session_id: String,
    /// `started_at`, µs.
    pub started_at_us: i64,
    /// The file holding its frames (a path under the store's object store).
    pub path: Path,
    /// That file's size.
    pub file_bytes: u64,
    /// Its byte range when the file is a pack.
    pub range: Option<(u64, u64)>,
    /// Its rows.
    pub rows: i64,
}

/// A written pack.
#[derive(Debug, Clone)]
pub(crate) struct PackFile {
    /// Its object path.
    pub path: Path,
    /// Its size.
    pub bytes: u64,
    /// Bytes after its last row group (page indexes and footer).
    pub footer: u64,
    /// Its sessions, in order.
    pub members: Vec<PackMember>,
    /// Smallest and largest `started_at` of its sessions, µs.
    pub started_at_us: (i64, i64),
}

/// A fresh pack path for sessions of `workflow` starting in the month of
/// `started_at_us`: `frames/<workflow>/<yyyy-mm>/pack.<hex16>.parquet`, the
/// hex random (no session file has a `.` in its stem, so the names never
/// meet).
pub(crate) fn pack_path(root: &Path, workflow: &str, started_at_us: i64) -> Path {
    let hex = hex::encode(rand::random::<[u8; 8]>());
    child(
        root,
        &[
            FRAMES_DIR,
            workflow,
            &month_of(started_at_us),
            &format!("pack.{hex}.parquet"),
        ],
    )
}

/// Deletes packs this process wrote and did not commit.
pub(crate) async fn delete_packs(
    store: &Arc<dyn ObjectStore>,
    paths: impl IntoIterator<Item = &Path>,
) {
    for p in paths {
        let _ = store.delete(p).await;
    }
}

/// The row groups of `groups` whose first page starts in `range` (the rule
/// DataFusion's Parquet scan applies to a ranged file).
pub(crate) fn row_groups_in(groups: &[RowGroupMetaData], range: Option<(u64, u64)>) -> Vec<usize> {
    groups
        .iter()
        .enumerate()
        .filter(|(_, g)| {
            let Some((start, end)) = range else {
                return true;
            };
            let col = g.column(0);
            let offset = col
                .dictionary_page_offset()
                .unwrap_or_else(|| col.data_page_offset()) as u64;
            (start..end).contains(&offset)
        })
        .map(|(i, _)| i)
        .collect()
}

/// Writes the frames of `sources` (sessions in id order) into a new pack at
/// `path`, one session after the other, in bounded memory (a few batches
/// and one row group). Fails, deleting what it wrote, if a source does not
/// hold the rows the log says.
pub(crate) async fn write_pack(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    sources: &[PackSource],
) -> Result<PackFile> {
    let written = write_pack_inner(store, path, sources).await;
    if written.is_err() {
        let _ = store.delete(path).await;
    }
    written
}

async fn write_pack_inner(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    sources: &[PackSource],
) -> Result<PackFile> {
    let schema = frames_file_schema();
    let sink = BufWriter::new(Arc::clone(store), path.clone());
    let mut writer =
        AsyncArrowWriter::try_new(sink, Arc::clone(&schema), Some(frames_writer_props()))?;
    let mut members = Vec::with_capacity(sources.len());
    let mut started = (i64::MAX, i64::MIN);
    for src in sources {
        let start = writer.bytes_written() as u64;
        #[allow(deprecated)]
        let reader = ParquetObjectReader::new(Arc::clone(store), src.path.clone())
            .with_file_size(src.file_bytes);
        let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
        let groups = row_groups_in(builder.metadata().row_groups(), src.range);
        let mut stream = builder
            .with_row_groups(groups)
            .with_batch_size(COPY_BATCH_ROWS)
            .build()?;
        let mut rows = 0i64;
        while let Some(batch) = stream.try_next().await? {
            rows += batch.num_rows() as i64;
            writer.write(&conform(&schema, batch, &src.path)?).await?;
            if writer.in_progress_size() >= ROW_GROUP_BYTES {
                writer.flush().await?;
            }
        }
        if rows != src.rows {
            return Err(Error::Corrupt {
                path: src.path.to_string(),
                message: format!(
                    "holds {rows} frames of session {}, the frames log says {}",
                    src.session_id, src.rows
                ),
            });
        }
        writer.flush().await?;
        let end = writer.bytes_written() as u64;
        if end > start {
            members.push(PackMember {
                session_id: src.session_id.clone(),
                start,
                end,
                rows,
            });
        }
        started = (
            started.0.min(src.started_at_us),
            started.1.max(src.started_at_us),
        );
    }
    let data = writer.bytes_written() as u64;
    writer.finish().await?;
    let bytes = writer.bytes_written() as u64;
    Ok(PackFile {
        path: path.clone(),
        bytes,
        footer: bytes - data,
        members,
        started_at_us: started,
    })
}

/// `batch` in the frames file schema (columns matched by name: files sealed
/// by older versions may order them otherwise).
fn conform(
    schema: &arrow::datatypes::SchemaRef,
    batch: RecordBatch,
    path: &Path,
) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            batch
                .column_by_name(f.name())
                .cloned()
                .ok_or_else(|| Error::Corrupt {
                    path: path.to_string(),
                    message: format!("frames file lacks column {}", f.name()),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_round_trip_and_bad_tags_are_named() {
        let m = vec![
            PackMember {
                session_id: "ses_a".into(),
                start: 4,
                end: 900,
                rows: 3,
            },
            PackMember {
                session_id: "ses-b".into(),
                start: 900,
                end: 1000,
                rows: 1,
            },
        ];
        assert_eq!(decode_members(&encode_members(&m)).unwrap(), m);
        let e = decode_members("ses_a 4 900 3\nses_b 900 800 1\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(decode_members("ses_a 4 x 3").is_err());
        assert!(decode_members("ses_a 4 9 3 extra").is_err());
    }
}
