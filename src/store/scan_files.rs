//! What a scan of the store is made of: the files and Parquet row
//! selections of the kept sessions, their grouping into partitions (one
//! per export partition, or contiguous runs), the exact statistics each
//! file and the table report (row counts, min = max of the logged columns),
//! and the plans that need no file (an empty table, a row count).
use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::stats::Precision;
use datafusion::common::{ColumnStatistics, ScalarValue, Statistics};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::ParquetRowSelection;
use datafusion::datasource::physical_plan::FileGroup;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result as DfResult;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use object_store::path::Path;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};

use super::schema::{frames_schema, sessions_schema, UTC};
use super::sealed_store::SessionRecord;

/// The sessions files holding `kept` (sorted by `session_id`), each once,
/// in the order of their first kept session, with their bytes; a file of
/// many sessions reads only the kept rows (a row selection). `true` when
/// some such file holds rows not kept.
pub(super) fn session_files(kept: &[Arc<SessionRecord>]) -> (Vec<(PartitionedFile, u64)>, bool) {
    let mut order: Vec<&Path> = Vec::new();
    let mut by_file: HashMap<&Path, Vec<&Arc<SessionRecord>>> = HashMap::new();
    for s in kept {
        by_file
            .entry(&s.session_path)
            .or_insert_with(|| {
                order.push(&s.session_path);
                Vec::new()
            })
            .push(s);
    }
    let mut partial = false;
    let files = order
        .into_iter()
        .map(|path| {
            let rows = &by_file[path];
            let first = rows[0];
            let mut file = PartitionedFile::new(path.to_string(), first.session_bytes)
                .with_statistics(Arc::new(session_file_statistics(rows)));
            if let Some((_, total)) = first.session_row {
                let mut picked: Vec<u64> = rows
                    .iter()
                    .filter_map(|s| s.session_row)
                    .map(|r| r.0)
                    .collect();
                picked.sort_unstable();
                if (picked.len() as u64) < total {
                    partial = true;
                    file = file
                        .with_extension(ParquetRowSelection::new(row_selection(&picked, total)));
                }
            }
            (file, kept_bytes(rows))
        })
        .collect();
    (files, partial)
}

/// About the bytes of one sessions file that `rows` (its kept rows) take:
/// the file's share for their number of its rows.
pub(super) fn kept_bytes(rows: &[&Arc<SessionRecord>]) -> u64 {
    rows.first().map_or(0, |s| match s.session_row {
        Some((_, total)) => s.session_bytes * rows.len() as u64 / total.max(1),
        None => s.session_bytes,
    })
}

/// The selection of the (sorted) rows `picked` of `total`.
pub(super) fn row_selection(picked: &[u64], total: u64) -> RowSelection {
    let mut selectors = Vec::new();
    let mut at = 0u64;
    for &r in picked {
        if r > at {
            selectors.push(RowSelector::skip((r - at) as usize));
        }
        selectors.push(RowSelector::select(1));
        at = r + 1;
    }
    if total > at {
        selectors.push(RowSelector::skip((total - at) as usize));
    }
    RowSelection::from(selectors)
}

/// Splits (sorted) files into at most `n` contiguous groups of about equal
/// bytes, so each group is itself sorted by `session_id`.
pub(super) fn contiguous_groups(files: Vec<(PartitionedFile, u64)>, n: usize) -> Vec<FileGroup> {
    let n = n.max(1).min(files.len().max(1));
    let total: u64 = files.iter().map(|(_, b)| *b).sum();
    let target = total.div_ceil(n as u64).max(1);
    let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new()];
    let mut in_group = 0u64;
    for (file, bytes) in files {
        if in_group >= target && groups.len() < n {
            groups.push(Vec::new());
            in_group = 0;
        }
        in_group += bytes;
        if let Some(g) = groups.last_mut() {
            g.push(file);
        }
    }
    groups.into_iter().map(FileGroup::new).collect()
}

/// The frames files of `sessions` in contiguous groups.
pub(super) fn file_groups(
    sessions: &[Arc<SessionRecord>],
    n: usize,
    exact_footer: bool,
) -> Vec<FileGroup> {
    let files = sessions
        .iter()
        .map(|s| (partitioned_file(s, exact_footer), s.frames_weight()))
        .collect();
    contiguous_groups(files, n)
}

/// One group per export partition: each session's file in group
/// `partition_of(session_id, n)`, in session order (empty groups included).
pub(super) fn partition_groups(
    sessions: &[Arc<SessionRecord>],
    n: u32,
    exact_footer: bool,
) -> Vec<FileGroup> {
    let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); n as usize];
    for s in sessions {
        let p = crate::spec::partition_of(&s.session_id, n) as usize;
        groups[p].push(partitioned_file(s, exact_footer));
    }
    groups.into_iter().map(FileGroup::new).collect()
}

/// A scan of no file: no rows, in the projected schema.
pub(super) fn empty_scan(
    schema: SchemaRef,
    projection: Option<&Vec<usize>>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let projected = match projection {
        Some(p) => Arc::new(schema.project(p)?),
        None => schema,
    };
    Ok(Arc::new(EmptyExec::new(projected)))
}

/// For a scan that projects no column (`count(*)`), `rows` empty rows from
/// memory: the log knows how many, so no file is listed or opened.
pub(super) fn rows_only(
    projection: Option<&Vec<usize>>,
    rows: usize,
    limit: Option<usize>,
) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    if !projection.is_some_and(|p| p.is_empty()) {
        return Ok(None);
    }
    let rows = limit.map_or(rows, |l| l.min(rows));
    let schema = Arc::new(Schema::empty());
    let batch = RecordBatch::try_new_with_options(
        Arc::clone(&schema),
        vec![],
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )?;
    let source = MemorySourceConfig::try_new(&[vec![batch]], schema, None)?;
    Ok(Some(DataSourceExec::from_data_source(source)))
}

/// Statistics of a column holding one value throughout a file.
pub(super) fn constant(v: ScalarValue) -> ColumnStatistics {
    ColumnStatistics {
        null_count: Precision::Exact(0),
        max_value: Precision::Exact(v.clone()),
        min_value: Precision::Exact(v),
        distinct_count: Precision::Exact(1),
        ..Default::default()
    }
}

/// Exact statistics of the kept rows of one sessions file, known from the log.
pub(super) fn session_file_statistics(rows: &[&Arc<SessionRecord>]) -> Statistics {
    let schema = sessions_schema();
    let ts = |us: i64| ScalarValue::TimestampMicrosecond(Some(us), Some(UTC.into()));
    let span = |v: Vec<ScalarValue>| {
        let min = v
            .iter()
            .min_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let max = v
            .iter()
            .max_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        match (min, max) {
            (Some(a), _) if rows.len() == 1 => constant(a.clone()),
            (Some(a), Some(b)) => ColumnStatistics {
                null_count: Precision::Exact(0),
                min_value: Precision::Exact(a.clone()),
                max_value: Precision::Exact(b.clone()),
                ..Default::default()
            },
            _ => ColumnStatistics::new_unknown(),
        }
    };
    let column_statistics = schema
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "session_id" => span(
                rows.iter()
                    .map(|s| ScalarValue::Utf8(Some(s.session_id.clone())))
                    .collect(),
            ),
            "workflow" => span(
                rows.iter()
                    .map(|s| ScalarValue::Utf8(Some(s.workflow.clone())))
                    .collect(),
            ),
            "started_at" => span(rows.iter().map(|s| ts(s.started_at_us)).collect()),
            "sealed_at" => span(rows.iter().map(|s| ts(s.sealed_at_us)).collect()),
            "seal" => span(
                rows.iter()
                    .map(|s| ScalarValue::Utf8(Some(s.seal.clone())))
                    .collect(),
            ),
            "frame_count" => span(
                rows.iter()
                    .map(|s| ScalarValue::Int64(Some(s.frame_count)))
                    .collect(),
            ),
            _ => ColumnStatistics::new_unknown(),
        })
        .collect();
    Statistics {
        num_rows: Precision::Exact(rows.len()),
        total_byte_size: Precision::Inexact(kept_bytes(rows) as usize),
        column_statistics,
    }
}

/// One frames file. With `exact_footer` (scans without `image`) the first
/// read fetches exactly the file's tail (page indexes and footer), so no
/// image bytes are read; scans with images keep DataFusion's larger
/// prefetch, which saves requests.
pub(super) fn partitioned_file(s: &SessionRecord, exact_footer: bool) -> PartitionedFile {
    let mut file = PartitionedFile::new(s.frames_path.to_string(), s.frames_bytes)
        .with_statistics(Arc::new(file_statistics(s)));
    // In a pack, the session's row groups are those starting in its range.
    if let Some((start, end)) = s.frames_range {
        file = file.with_range(start as i64, end as i64);
    }
    match s.frames_footer_bytes {
        Some(footer) if exact_footer && footer > 8 => file.with_metadata_size_hint(footer as usize),
        _ => file,
    }
}

/// Exact statistics of one frames file, known without opening it.
pub(super) fn file_statistics(s: &SessionRecord) -> Statistics {
    let schema = frames_schema();
    let rows = s.frame_count.max(0) as usize;
    let column_statistics = schema
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "session_id" => constant(ScalarValue::Utf8(Some(s.session_id.clone()))),
            "workflow" => constant(ScalarValue::Utf8(Some(s.workflow.clone()))),
            "started_at" => constant(ScalarValue::TimestampMicrosecond(
                Some(s.started_at_us),
                Some(UTC.into()),
            )),
            "frame_idx" => ColumnStatistics {
                null_count: Precision::Exact(0),
                min_value: Precision::Exact(ScalarValue::Int64(Some(0))),
                max_value: Precision::Exact(ScalarValue::Int64(Some(rows as i64 - 1))),
                distinct_count: Precision::Exact(rows),
                ..Default::default()
            },
            _ => ColumnStatistics::new_unknown(),
        })
        .collect();
    Statistics {
        num_rows: Precision::Exact(rows),
        total_byte_size: Precision::Inexact(s.frames_weight() as usize),
        column_statistics,
    }
}

pub(super) fn table_statistics(schema: &SchemaRef, sessions: &[Arc<SessionRecord>]) -> Statistics {
    let rows: usize = sessions.iter().map(|s| s.frame_count.max(0) as usize).sum();
    let bytes: u64 = sessions.iter().map(|s| s.frames_weight()).sum();
    let mut stats = Statistics::new_unknown(schema);
    stats.num_rows = Precision::Exact(rows);
    stats.total_byte_size = Precision::Inexact(bytes as usize);
    stats
}
