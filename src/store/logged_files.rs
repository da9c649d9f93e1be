//! Reading a table's files back from its Delta log: what each `add` says
//! ([`LoggedFile`]: path, size, rows, the statistics of its session or
//! sessions, the index of a file of many sessions from its tags), the files
//! of one version ([`TableFiles`]), and the footer sizes the `frames` log
//! records for the files a scan reads ([`frames_tails`]). A missing or
//! malformed statistic or index is an [`Error::Corrupt`] naming the file.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use deltalake_core::table::state::DeltaTableState;
use percent_encoding::percent_decode_str;

use super::log_actions::{is_pack, Table, TAG_FOOTER_BYTES};
use super::pack::{decode_members, PackMember, TAG_SESSIONS};
use super::sessions_pack::{decode_members as decode_session_members, SessionMember};
use crate::error::{Error, Result};

/// One file of a table at a version, with what its `add` says.
#[derive(Debug, Clone)]
pub(crate) struct LoggedFile {
    /// Path relative to the store root (`sessions/…` or `frames/…`).
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Rows.
    pub rows: i64,
    /// min = max `session_id`.
    pub session_id: String,
    /// min = max `workflow`.
    pub workflow: String,
    /// min = max `started_at`, µs.
    pub started_at_us: i64,
    /// min = max `sealed_at`, µs (sessions only).
    pub sealed_at_us: Option<i64>,
    /// min = max `seal` (sessions only).
    pub seal: Option<String>,
    /// The sessions of a frames pack (`None`: the file holds the one
    /// session its statistics name).
    pub members: Option<Vec<PackMember>>,
    /// The rows of a sessions file of many sessions, in row order (`None`:
    /// a one-row file, the session its statistics name).
    pub session_rows: Option<Vec<SessionMember>>,
}

/// The files of a table at one version.
#[derive(Debug, Clone)]
pub(crate) struct TableFiles {
    /// The version.
    pub version: u64,
    /// What each file's `add` says (all but its tags).
    pub files: Vec<LoggedFile>,
    /// The version's state, for what is read file by file on demand.
    pub state: Arc<DeltaTableState>,
}

/// The tail sizes (bytes after the last row group) the `frames` log's tags
/// record for the files in `wanted` (paths relative to the root). Tags are
/// not among the columnar add statistics, so this walks the files one by
/// one: callers ask for the files a scan reads, not the whole table.
pub(crate) fn frames_tails(
    state: &DeltaTableState,
    wanted: &HashSet<String>,
) -> HashMap<String, u64> {
    tags(state, Table::Frames, wanted, TAG_FOOTER_BYTES)
        .into_iter()
        .filter_map(|(path, tail)| Some((path, tail.parse().ok()?)))
        .collect()
}

/// The value of tag `key` of the files of `table` in `wanted` that have it.
fn tags(
    state: &DeltaTableState,
    table: Table,
    wanted: &HashSet<String>,
    key: &str,
) -> HashMap<String, String> {
    if wanted.is_empty() {
        return HashMap::new();
    }
    state
        .log_data()
        .iter()
        .filter_map(|view| {
            let path = format!("{}/{}", table.dir(), view.path());
            if !wanted.contains(&path) {
                return None;
            }
            #[allow(deprecated)]
            let add = view.add_action();
            let value = add.tags?.get(key)?.clone()?;
            Some((path, value))
        })
        .collect()
}

/// The files of one batch of `add_actions_batches(flatten = true)`: what
/// each `add` says, or an [`Error::Corrupt`] naming the file and the missing
/// statistic.
pub(super) fn logged_files(
    table: Table,
    batch: &RecordBatch,
    out: &mut Vec<LoggedFile>,
) -> Result<()> {
    let corrupt = |path: &str, message: String| Error::Corrupt {
        path: format!("{}/{path}", table.dir()),
        message: format!("its add action in the {} log {message}", table.dir()),
    };
    let column = |name: &str, to: &DataType| -> Result<Option<ArrayRef>> {
        match batch.column_by_name(name) {
            Some(c) => Ok(Some(cast(c, to)?)),
            None => Ok(None),
        }
    };
    let required = |name: &str, to: &DataType| -> Result<ArrayRef> {
        column(name, to)?.ok_or_else(|| Error::Corrupt {
            path: format!("{}/_delta_log", table.dir()),
            message: format!("the add actions lack {name}"),
        })
    };
    let path = required("path", &DataType::Utf8)?;
    let size = required("size_bytes", &DataType::Int64)?;
    let rows = required("num_records", &DataType::Int64)?;
    let session_id = required("min.session_id", &DataType::Utf8)?;
    let workflow = required("min.workflow", &DataType::Utf8)?;
    let started_at = required("min.started_at", &DataType::Int64)?;
    let (sealed_at, seal) = match table {
        Table::Sessions => (
            Some(required("min.sealed_at", &DataType::Int64)?),
            Some(required("min.seal", &DataType::Utf8)?),
        ),
        Table::Frames => (None, None),
    };
    let (path, size, rows) = (
        path.as_string::<i32>(),
        size.as_primitive::<Int64Type>(),
        rows.as_primitive::<Int64Type>(),
    );
    let (session_id, workflow, started_at) = (
        session_id.as_string::<i32>(),
        workflow.as_string::<i32>(),
        started_at.as_primitive::<Int64Type>(),
    );
    let sealed_at = sealed_at.as_ref().map(|a| a.as_primitive::<Int64Type>());
    let seal = seal.as_ref().map(|a| a.as_string::<i32>());
    for i in 0..batch.num_rows() {
        let p = path.value(i);
        let needs = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(corrupt(p, format!("lacks {what}")))
            }
        };
        needs(rows.is_valid(i), "numRecords")?;
        needs(session_id.is_valid(i), "session_id statistics")?;
        needs(workflow.is_valid(i), "workflow statistics")?;
        needs(started_at.is_valid(i), "started_at statistics")?;
        if let (Some(a), Some(b)) = (sealed_at, seal) {
            needs(
                a.is_valid(i) && b.is_valid(i),
                "sealed_at and seal statistics",
            )?;
        }
        let decoded = percent_decode_str(p).decode_utf8_lossy();
        out.push(LoggedFile {
            path: format!("{}/{decoded}", table.dir()),
            bytes: size.value(i).max(0) as u64,
            rows: rows.value(i),
            session_id: session_id.value(i).to_string(),
            workflow: workflow.value(i).to_string(),
            started_at_us: started_at.value(i),
            sealed_at_us: sealed_at.map(|a| a.value(i)),
            seal: seal.map(|a| a.value(i).to_string()),
            members: None,
            session_rows: None,
        });
    }
    Ok(())
}

/// Fills in the sessions of the packs among `files` (of `table`) from
/// their tags, or an [`Error::Corrupt`] naming a pack whose index is
/// missing or malformed.
pub(super) fn with_members(
    state: &DeltaTableState,
    table: Table,
    files: &mut [LoggedFile],
) -> Result<()> {
    let packs: HashSet<String> = files
        .iter()
        .filter(|f| is_pack(&f.path))
        .map(|f| f.path.clone())
        .collect();
    let mut tags = tags(state, table, &packs, TAG_SESSIONS);
    for f in files.iter_mut().filter(|f| is_pack(&f.path)) {
        let corrupt = |message: String| Error::Corrupt {
            path: f.path.clone(),
            message: format!("its add action in the {} log {message}", table.dir()),
        };
        let tag = tags
            .remove(&f.path)
            .ok_or_else(|| corrupt(format!("lacks its {TAG_SESSIONS} tag")))?;
        match table {
            Table::Frames => f.members = Some(decode_members(&tag).map_err(corrupt)?),
            Table::Sessions => {
                let rows = decode_session_members(&tag).map_err(corrupt)?;
                if rows.len() as i64 != f.rows {
                    return Err(corrupt(format!(
                        "indexes {} rows, its numRecords is {}",
                        rows.len(),
                        f.rows
                    )));
                }
                f.session_rows = Some(rows);
            }
        }
    }
    Ok(())
}
