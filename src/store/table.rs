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

//!
//! Which sessions a filter keeps is `pruning.rs`'s; the files, row
//! selections, groups and statistics a scan is made of are `scan_files.rs`'s.
use std::sync::Arc;

use arrow::compute::SortOptions;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{DFSchema, Statistics};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::physical_plan::FileScanConfigBuilder;
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

use super::pruning::{is_logged_filter, prune_sessions, SESSIONS_LOGGED_COLUMNS};
use super::scan_files::{
    contiguous_groups, empty_scan, file_groups, partition_groups, rows_only, session_files,
    table_statistics,
};
use super::schema::{frames_schema, sessions_schema, FRAMES_SESSION_COLUMNS};
use super::sealed_store::SealedStore;

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
