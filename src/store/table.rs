//! The `sessions` and `frames` tables as DataFusion [`TableProvider`]s.
//!
//! `sessions` is served from the store [`Snapshot`] (one cached row per
//! session, sorted by `session_id`), with every deterministic filter applied
//! inside the scan. `frames` plans a Parquet scan over
//! exactly the frames files of the sessions that survive the query's filters
//! on `session_id`, `workflow` and `started_at` (evaluated against the
//! snapshot, so other files are never opened), hands each file exact
//! statistics (row count, and min = max for those three columns) so
//! DataFusion's file pruner can also skip files on dynamic join filters
//! before reading a byte, and declares the files' natural order
//! (`session_id`, `frame_idx`) so ordered exports need no sort. Other filters
//! go to the Parquet reader (row-group statistics, page index, late
//! materialisation); a scan that does not project `image` never reads image
//! pages.

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
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::expressions::col;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;

use super::schema::{frames_schema, sessions_schema, FRAMES_SESSION_COLUMNS, UTC};
use super::sealed_store::{SealedStore, SessionRecord, Snapshot};

/// Rows per batch when a frames scan reads image bytes (keeps Arrow binary
/// buffers far from their 2 GiB offset limit and memory per batch small).
const IMAGE_BATCH_ROWS: usize = 64;

/// The `sessions` table of a [`SealedStore`].
#[derive(Debug)]
pub struct SessionsTable {
    store: Arc<SealedStore>,
}

impl SessionsTable {
    /// The table over `store`.
    pub fn new(store: Arc<SealedStore>) -> Self {
        SessionsTable { store }
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
        // Every deterministic filter is applied to the snapshot inside the scan.
        Ok(filters
            .iter()
            .map(|f| {
                if f.is_volatile() {
                    TableProviderFilterPushDown::Unsupported
                } else {
                    TableProviderFilterPushDown::Exact
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
        let schema = sessions_schema();
        let batch = filter_batch(state, snapshot.sessions_batch()?, filters)?;
        let ordering = LexOrdering::new([PhysicalSortExpr::new(
            col("session_id", &schema)?,
            SortOptions::new(false, false),
        )]);
        let mut source = MemorySourceConfig::try_new(&[vec![batch]], schema, projection.cloned())?
            .with_limit(limit);
        if let Some(ordering) = ordering {
            source = source.try_with_sort_information(vec![ordering])?;
        }
        Ok(DataSourceExec::from_data_source(source))
    }
}

/// The `frames` table of a [`SealedStore`].
#[derive(Debug)]
pub struct FramesTable {
    store: Arc<SealedStore>,
}

impl FramesTable {
    /// The table over `store`.
    pub fn new(store: Arc<SealedStore>) -> Self {
        FramesTable { store }
    }
}

/// Whether a filter mentions only per-session columns of `frames`, so it can
/// be decided per file from the snapshot.
fn is_session_filter(expr: &Expr) -> bool {
    !expr.is_volatile()
        && expr
            .column_refs()
            .iter()
            .all(|c| FRAMES_SESSION_COLUMNS.contains(&c.name.as_str()))
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
                if is_session_filter(f) {
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
        let session_filters: Vec<&Expr> = filters.iter().filter(|f| is_session_filter(f)).collect();
        let kept = prune_sessions(state, &snapshot, &session_filters)?;
        let schema = frames_schema();
        if kept.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(schema.project(p)?),
                None => schema,
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let reads_images = projection.is_none_or(|p| {
            let image = schema.index_of("image").unwrap_or(usize::MAX);
            p.contains(&image)
        });
        let groups = file_groups(&kept, state.config().target_partitions(), !reads_images);
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

/// The rows of `batch` for which every filter is true.
fn filter_batch(
    state: &dyn Session,
    batch: RecordBatch,
    filters: &[Expr],
) -> DfResult<RecordBatch> {
    let Some(mask) = filter_mask(state, &batch, filters.iter())? else {
        return Ok(batch);
    };
    Ok(arrow::compute::filter_record_batch(&batch, &mask)?)
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

/// Keeps the sessions for which every per-session filter is true.
fn prune_sessions(
    state: &dyn Session,
    snapshot: &Snapshot,
    filters: &[&Expr],
) -> DfResult<Vec<Arc<SessionRecord>>> {
    if filters.is_empty() {
        return Ok(snapshot.sessions.clone());
    }
    let full = frames_schema();
    let fields: Vec<_> = FRAMES_SESSION_COLUMNS
        .iter()
        .map(|name| full.field_with_name(name).cloned())
        .collect::<Result<_, _>>()?;
    let schema = Arc::new(Schema::new(fields));
    let s = &snapshot.sessions;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            s.iter().map(|r| r.session_id.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            s.iter().map(|r| r.workflow.as_str()),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(s.iter().map(|r| r.started_at_us))
                .with_timezone(UTC),
        ),
    ];
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

/// Splits the (sorted) sessions into at most `n` contiguous groups of about
/// equal bytes, so each group is itself sorted by `session_id`.
fn file_groups(sessions: &[Arc<SessionRecord>], n: usize, exact_footer: bool) -> Vec<FileGroup> {
    let n = n.max(1).min(sessions.len());
    let total: u64 = sessions.iter().map(|s| s.frames_bytes).sum();
    let target = total.div_ceil(n as u64).max(1);
    let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new()];
    let mut in_group = 0u64;
    for s in sessions {
        if in_group >= target && groups.len() < n {
            groups.push(Vec::new());
            in_group = 0;
        }
        in_group += s.frames_bytes;
        if let Some(g) = groups.last_mut() {
            g.push(partitioned_file(s, exact_footer));
        }
    }
    groups.into_iter().map(FileGroup::new).collect()
}

/// One frames file. With `exact_footer` (scans without `image`) the first
/// read fetches exactly the footer, so no image bytes are read; scans with
/// images keep DataFusion's larger prefetch, which saves requests.
fn partitioned_file(s: &SessionRecord, exact_footer: bool) -> PartitionedFile {
    let file = PartitionedFile::new(s.frames_path.to_string(), s.frames_bytes)
        .with_statistics(Arc::new(file_statistics(s)));
    match s.frames_footer_bytes {
        Some(footer) if exact_footer && footer > 8 => file.with_metadata_size_hint(footer as usize),
        _ => file,
    }
}

/// Exact statistics of one frames file, known without opening it.
fn file_statistics(s: &SessionRecord) -> Statistics {
    let schema = frames_schema();
    let constant = |v: ScalarValue| ColumnStatistics {
        null_count: Precision::Exact(0),
        max_value: Precision::Exact(v.clone()),
        min_value: Precision::Exact(v),
        distinct_count: Precision::Exact(1),
        ..Default::default()
    };
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
        total_byte_size: Precision::Inexact(s.frames_bytes as usize),
        column_statistics,
    }
}

fn table_statistics(schema: &SchemaRef, sessions: &[Arc<SessionRecord>]) -> Statistics {
    let rows: usize = sessions.iter().map(|s| s.frame_count.max(0) as usize).sum();
    let bytes: u64 = sessions.iter().map(|s| s.frames_bytes).sum();
    let mut stats = Statistics::new_unknown(schema);
    stats.num_rows = Precision::Exact(rows);
    stats.total_byte_size = Precision::Inexact(bytes as usize);
    stats
}
