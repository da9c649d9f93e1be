//! The `sessions` and `frames` tables as DataFusion [`TableProvider`]s.
//!
//! Both plan from the store [`Snapshot`] (the two Delta logs' file lists,
//! sorted by `session_id`): filters on `session_id`, `workflow`,
//! `started_at` (and `sealed_at` for `sessions`) are decided against the
//! logged statistics before any data file is opened, and every file kept
//! gets exact statistics (row count, min = max for those columns), so
//! DataFusion answers `count(*)` without reading, and its file pruner skips
//! files on dynamic join filters before reading a byte. Both declare their
//! files' natural order (`session_id`, and `frame_idx` in `frames`) so
//! ordered exports need no sort. Other filters go to the Parquet reader
//! (row-group statistics, page index, late materialisation); a frames scan
//! that does not project `image` never reads image pages.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::compute::SortOptions;
use arrow::datatypes::{Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{ColumnStatistics, DFSchema, ScalarValue, Statistics};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::ParquetRowSelection;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Operator;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::col;
use datafusion::physical_expr::expressions::BinaryExpr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExecBuilder;
use datafusion::physical_plan::ExecutionPlan;
use object_store::path::Path;
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};

use super::schema::{frames_schema, sessions_schema, FRAMES_SESSION_COLUMNS, UTC};
use super::sealed_store::{SealedStore, SessionRecord, Snapshot};

/// Rows per batch when a frames scan reads image bytes (keeps Arrow binary
/// buffers far from their 2 GiB offset limit and memory per batch small).
const IMAGE_BATCH_ROWS: usize = 64;

/// The `sessions` table of a [`SealedStore`].
#[derive(Debug)]
pub struct SessionsTable {
    store: Arc<SealedStore>,
    /// Scans in one partition (see [`SessionsTable::single_partition`]).
    single: bool,
}

impl SessionsTable {
    /// The table over `store`.
    pub fn new(store: Arc<SealedStore>) -> Self {
        SessionsTable {
            store,
            single: false,
        }
    }

    /// The table whose scans read every kept file in one partition: the
    /// build side of a partitioned export's join then needs no exchange,
    /// so a cluster runs the export as one stage (each task reads the
    /// small sessions files itself).
    pub fn single_partition(mut self) -> Self {
        self.single = true;
        self
    }

    /// Whether its scans have one partition.
    pub fn is_single_partition(&self) -> bool {
        self.single
    }

    /// The store it reads.
    pub fn store(&self) -> &Arc<SealedStore> {
        &self.store
    }
}

#[async_trait]
impl TableProvider for SessionsTable {
    fn schema(&self) -> SchemaRef {
        sessions_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Filters on the logged columns are decided per file from the
        // snapshot; the rest is applied above the scan.
        Ok(filters
            .iter()
            .map(|f| {
                if is_logged_filter(f, &SESSIONS_LOGGED_COLUMNS) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let snapshot = self.store.snapshot().await?;
        let logged: Vec<&Expr> = filters
            .iter()
            .filter(|f| is_logged_filter(f, &SESSIONS_LOGGED_COLUMNS))
            .collect();
        let kept = prune_sessions(state, &snapshot, &logged, &SESSIONS_LOGGED_COLUMNS)?;
        let schema = sessions_schema();
        if kept.is_empty() {
            return empty_scan(schema, projection);
        }
        if let Some(plan) = rows_only(projection, kept.len(), limit)? {
            return Ok(plan);
        }
        let (files, partial) = session_files(&kept);
        let parts = if self.single {
            1
        } else {
            state.config().target_partitions()
        };
        let groups = contiguous_groups(files, parts);
        // A file of many sessions some of which are not kept is read with a
        // row selection; a plan shipped to a cluster's executors loses it
        // (file extensions do not travel), so the filters that decided the
        // kept rows are applied again above the scan there too.
        let refilter = partial && !logged.is_empty();
        let wanted: Option<Vec<usize>> = match (refilter, projection) {
            (true, Some(p)) => {
                let mut cols: Vec<usize> = p.clone();
                for f in &logged {
                    for c in f.column_refs() {
                        cols.push(schema.index_of(&c.name)?);
                    }
                }
                cols.sort_unstable();
                cols.dedup();
                Some(cols)
            }
            (_, p) => p.cloned(),
        };
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let source = format.file_source(Arc::clone(&schema).into());
        let ordering = LexOrdering::new([PhysicalSortExpr::new(
            col("session_id", &schema)?,
            SortOptions::new(false, false),
        )]);
        let mut stats = Statistics::new_unknown(&schema);
        stats.num_rows = Precision::Exact(kept.len());
        let config = FileScanConfigBuilder::new(self.store.location().url.clone(), source)
            .with_file_groups(groups)
            .with_statistics(stats)
            .with_projection_indices(wanted.clone())?
            .with_limit(if refilter { None } else { limit })
            .with_output_ordering(ordering.into_iter().collect());
        let scan = format.create_physical_plan(state, config.build()).await?;
        if !refilter {
            return Ok(scan);
        }
        let scanned = scan.schema();
        let df_schema = DFSchema::try_from(Arc::clone(&scanned))?;
        let predicate = logged
            .iter()
            .map(|f| state.create_physical_expr((*f).clone(), &df_schema))
            .reduce(|a, b| {
                let (a, b) = (a?, b?);
                Ok(Arc::new(BinaryExpr::new(a, Operator::And, b)) as Arc<dyn PhysicalExpr>)
            })
            .transpose()?;
        let Some(predicate) = predicate else {
            return Ok(scan);
        };
        let back: Option<Vec<usize>> = match (projection, &wanted) {
            (Some(p), Some(w)) => Some(
                p.iter()
                    .map(|i| w.iter().position(|x| x == i).unwrap_or(0))
                    .collect(),
            ),
            _ => None,
        };
        Ok(Arc::new(
            FilterExecBuilder::new(predicate, scan)
                .apply_projection(back)?
                .build()?,
        ))
    }
}

/// The sessions files holding `kept` (sorted by `session_id`), each once,
/// in the order of their first kept session, with their bytes; a file of
/// many sessions reads only the kept rows (a row selection). `true` when
/// some such file holds rows not kept.
fn session_files(kept: &[Arc<SessionRecord>]) -> (Vec<(PartitionedFile, u64)>, bool) {
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
fn kept_bytes(rows: &[&Arc<SessionRecord>]) -> u64 {
    rows.first().map_or(0, |s| match s.session_row {
        Some((_, total)) => s.session_bytes * rows.len() as u64 / total.max(1),
        None => s.session_bytes,
    })
}

/// The selection of the (sorted) rows `picked` of `total`.
fn row_selection(picked: &[u64], total: u64) -> RowSelection {
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

/// The `frames` table of a [`SealedStore`].
#[derive(Debug)]
pub struct FramesTable {
    store: Arc<SealedStore>,
    /// Export partitions (see [`FramesTable::with_partitions`]); 0: none.
    partitions: u32,
}

impl FramesTable {
    /// The table over `store`.
    pub fn new(store: Arc<SealedStore>) -> Self {
        FramesTable {
            store,
            partitions: 0,
        }
    }

    /// The table whose scans have exactly `partitions` partitions, the
    /// frames of a session in partition
    /// [`crate::spec::partition_of`]`(session_id, partitions)`, each in
    /// `(session_id, frame_idx)` order: what an export of `partitions`
    /// writes from (0: partitions by `target_partitions`, as usual).
    pub fn with_partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions;
        self
    }

    /// The store it reads.
    pub fn store(&self) -> &Arc<SealedStore> {
        &self.store
    }

    /// Its export partitions (0: none).
    pub fn partitions(&self) -> u32 {
        self.partitions
    }
}

/// Columns of `sessions` whose values the log holds per file.
const SESSIONS_LOGGED_COLUMNS: [&str; 4] = ["session_id", "workflow", "started_at", "sealed_at"];

/// Whether a filter mentions only `columns` (values the log holds per
/// file), so it can be decided per file from the snapshot.
fn is_logged_filter(expr: &Expr, columns: &[&str]) -> bool {
    !expr.is_volatile()
        && expr
            .column_refs()
            .iter()
            .all(|c| columns.contains(&c.name.as_str()))
}

#[async_trait]
impl TableProvider for FramesTable {
    fn schema(&self) -> SchemaRef {
        frames_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if is_logged_filter(f, &FRAMES_SESSION_COLUMNS) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let snapshot = self.store.snapshot().await?;
        let session_filters: Vec<&Expr> = filters
            .iter()
            .filter(|f| is_logged_filter(f, &FRAMES_SESSION_COLUMNS))
            .collect();
        let kept = prune_sessions(state, &snapshot, &session_filters, &FRAMES_SESSION_COLUMNS)?;
        let schema = frames_schema();
        if kept.is_empty() {
            let plan = empty_scan(schema, projection)?;
            return Ok(match self.partitions {
                0 | 1 => plan,
                n => Arc::new(EmptyExec::new(plan.schema()).with_partitions(n as usize)),
            });
        }
        // Every filter was decided from the log (others would need columns).
        let rows: i64 = kept.iter().map(|s| s.frame_count.max(0)).sum();
        if let Some(plan) = rows_only(projection, rows as usize, limit)? {
            return Ok(plan);
        }
        let reads_images = projection.is_none_or(|p| {
            let image = schema.index_of("image").unwrap_or(usize::MAX);
            p.contains(&image)
        });
        let kept = if reads_images {
            kept
        } else {
            snapshot.with_tails(&self.store.location().prefix, kept)
        };
        let groups = match self.partitions {
            0 => file_groups(&kept, state.config().target_partitions(), !reads_images),
            n => partition_groups(&kept, n, !reads_images),
        };
        let format = ParquetFormat::default().with_options(state.table_options().parquet.clone());
        let source = format.file_source(Arc::clone(&schema).into());
        let ordering = LexOrdering::new([
            PhysicalSortExpr::new(col("session_id", &schema)?, SortOptions::new(false, false)),
            PhysicalSortExpr::new(col("frame_idx", &schema)?, SortOptions::new(false, false)),
        ]);
        let mut config = FileScanConfigBuilder::new(self.store.location().url.clone(), source)
            .with_file_groups(groups)
            .with_statistics(table_statistics(&schema, &kept))
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .with_output_ordering(ordering.into_iter().collect());
        if reads_images {
            config = config.with_batch_size(Some(IMAGE_BATCH_ROWS));
        }
        format.create_physical_plan(state, config.build()).await
    }
}

/// AND of `filters` evaluated on `batch` (nulls false); `None` when there are none.
fn filter_mask<'a>(
    state: &dyn Session,
    batch: &RecordBatch,
    filters: impl Iterator<Item = &'a Expr>,
) -> DfResult<Option<BooleanArray>> {
    let df_schema = DFSchema::try_from(batch.schema())?;
    let mut keep: Option<BooleanArray> = None;
    for filter in filters {
        let expr = state.create_physical_expr(filter.clone(), &df_schema)?;
        let result = expr.evaluate(batch)?.into_array(batch.num_rows())?;
        let Some(result) = result.as_any().downcast_ref::<BooleanArray>() else {
            return datafusion::common::plan_err!("filter {filter} is not boolean");
        };
        let result = if result.null_count() == 0 {
            result.clone()
        } else {
            arrow::compute::prep_null_mask_filter(result)
        };
        keep = Some(match keep {
            Some(k) => arrow::compute::and(&k, &result)?,
            None => result,
        });
    }
    Ok(keep)
}

/// Keeps the sessions for which every per-session filter is true; the
/// filters see `columns` (logged columns of `sessions`: the same list that
/// decided they were pushed down), with each session's logged values.
fn prune_sessions(
    state: &dyn Session,
    snapshot: &Snapshot,
    filters: &[&Expr],
    columns: &[&str],
) -> DfResult<Vec<Arc<SessionRecord>>> {
    if filters.is_empty() {
        return Ok(snapshot.sessions.clone());
    }
    let full = sessions_schema();
    let fields: Vec<_> = columns
        .iter()
        .map(|name| full.field_with_name(name).cloned())
        .collect::<Result<_, _>>()?;
    let schema = Arc::new(Schema::new(fields));
    let s = &snapshot.sessions;
    let timestamps = |f: fn(&SessionRecord) -> i64| {
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(s.iter().map(|r| f(r))).with_timezone(UTC),
        ) as ArrayRef
    };
    let columns = columns
        .iter()
        .map(|name| match *name {
            "session_id" => Ok(Arc::new(StringArray::from_iter_values(
                s.iter().map(|r| r.session_id.as_str()),
            )) as ArrayRef),
            "workflow" => Ok(Arc::new(StringArray::from_iter_values(
                s.iter().map(|r| r.workflow.as_str()),
            )) as ArrayRef),
            "started_at" => Ok(timestamps(|r| r.started_at_us)),
            "sealed_at" => Ok(timestamps(|r| r.sealed_at_us)),
            other => datafusion::common::internal_err!("{other} is not a logged column"),
        })
        .collect::<DfResult<Vec<_>>>()?;
    let batch = RecordBatch::try_new(schema, columns)?;
    let Some(keep) = filter_mask(state, &batch, filters.iter().copied())? else {
        return Ok(snapshot.sessions.clone());
    };
    Ok(s.iter()
        .zip(keep.values().iter())
        .filter(|(_, k)| *k)
        .map(|(r, _)| Arc::clone(r))
        .collect())
}

/// Splits (sorted) files into at most `n` contiguous groups of about equal
/// bytes, so each group is itself sorted by `session_id`.
fn contiguous_groups(files: Vec<(PartitionedFile, u64)>, n: usize) -> Vec<FileGroup> {
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
fn file_groups(sessions: &[Arc<SessionRecord>], n: usize, exact_footer: bool) -> Vec<FileGroup> {
    let files = sessions
        .iter()
        .map(|s| (partitioned_file(s, exact_footer), s.frames_weight()))
        .collect();
    contiguous_groups(files, n)
}

/// One group per export partition: each session's file in group
/// `partition_of(session_id, n)`, in session order (empty groups included).
fn partition_groups(sessions: &[Arc<SessionRecord>], n: u32, exact_footer: bool) -> Vec<FileGroup> {
    let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); n as usize];
    for s in sessions {
        let p = crate::spec::partition_of(&s.session_id, n) as usize;
        groups[p].push(partitioned_file(s, exact_footer));
    }
    groups.into_iter().map(FileGroup::new).collect()
}

/// A scan of no file: no rows, in the projected schema.
fn empty_scan(
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
fn rows_only(
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
fn constant(v: ScalarValue) -> ColumnStatistics {
    ColumnStatistics {
        null_count: Precision::Exact(0),
        max_value: Precision::Exact(v.clone()),
        min_value: Precision::Exact(v),
        distinct_count: Precision::Exact(1),
        ..Default::default()
    }
}

/// Exact statistics of the kept rows of one sessions file, known from the log.
fn session_file_statistics(rows: &[&Arc<SessionRecord>]) -> Statistics {
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
fn partitioned_file(s: &SessionRecord, exact_footer: bool) -> PartitionedFile {
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
fn file_statistics(s: &SessionRecord) -> Statistics {
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

fn table_statistics(schema: &SchemaRef, sessions: &[Arc<SessionRecord>]) -> Statistics {
    let rows: usize = sessions.iter().map(|s| s.frame_count.max(0) as usize).sum();
    let bytes: u64 = sessions.iter().map(|s| s.frames_weight()).sum();
    let mut stats = Statistics::new_unknown(schema);
    stats.num_rows = Precision::Exact(rows);
    stats.total_byte_size = Precision::Inexact(bytes as usize);
    stats
}
