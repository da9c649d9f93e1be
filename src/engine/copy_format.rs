//! `COPY (SELECT …) TO 'url/' STORED AS <format> OPTIONS ('shard_size_bytes' '…')`
//! for the four shard formats.
//!
//! The formats are registered under [`OutputFormat::sql_name`]:
//! `nusomi_parquet`, `nusomi_arrow`, `nusomi_jsonl` and `webdataset`
//! (DataFusion's own `parquet`, `arrow` and `json` keep their meaning).
//! DataFusion's file sinks decide file boundaries by rows and deal batches
//! round-robin; here the sink demands its input ordered by `session_id`,
//! `frame_idx` in one stream and hands it to the export's own
//! [`ExportWriter`], which decides shard boundaries by bytes and writes the
//! manifest last.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::compute::SortOptions;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{not_impl_err, plan_err, GetExt, Result as DfResult, Statistics};
use datafusion::datasource::file_format::file_compression_type::FileCompressionType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::{FileFormat, FileFormatFactory};
use datafusion::datasource::physical_plan::{FileScanConfig, FileSinkConfig, FileSource};
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::col;
use datafusion::physical_expr::{LexRequirement, PhysicalSortRequirement};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan};
use datafusion::prelude::SessionContext;
use object_store::path::Path;
use object_store::ObjectStore;

use crate::dest::ExportTarget;
use crate::sink::{ExportMeta, ExportWriter};
use crate::spec::{check_shard_size, OutputFormat, DEFAULT_SHARD_SIZE_BYTES, MIN_SHARD_SIZE_BYTES};

/// Registers the four formats with `ctx` for `COPY … STORED AS …`.
pub(crate) fn register_copy_formats(ctx: &SessionContext) -> DfResult<()> {
    let state = ctx.state_ref();
    let mut state = state.write();
    for format in OutputFormat::ALL {
        state.register_file_format(Arc::new(ShardFormatFactory { format }), true)?;
    }
    Ok(())
}

/// Factory of a shard format for `STORED AS`.
#[derive(Debug, Clone, Copy)]
pub(super) struct ShardFormatFactory {
    format: OutputFormat,
}

impl GetExt for ShardFormatFactory {
    fn get_ext(&self) -> String {
        self.format.sql_name().to_string()
    }
}

impl FileFormatFactory for ShardFormatFactory {
    fn create(
        &self,
        _state: &dyn Session,
        options: &HashMap<String, String>,
    ) -> DfResult<Arc<dyn FileFormat>> {
        let mut shard_size_bytes = DEFAULT_SHARD_SIZE_BYTES;
        for (key, value) in options {
            let name = key.strip_prefix("format.").unwrap_or(key);
            match name {
                "shard_size_bytes" => {
                    let checked = value
                        .parse::<i64>()
                        .ok()
                        .map(|n| check_shard_size(n, self.format));
                    shard_size_bytes = match checked {
                        Some(Ok(n)) => n,
                        why => {
                            let why = match why {
                                Some(Err(w)) => format!(": {w}"),
                                _ => String::new(),
                            };
                            return plan_err!(
                                "{}: option shard_size_bytes must be a whole number >= {MIN_SHARD_SIZE_BYTES}, got {value:?}{why}",
                                self.format.sql_name()
                            );
                        }
                    }
                }
                other => {
                    return plan_err!(
                        "{}: unknown option {other:?} (known: shard_size_bytes)",
                        self.format.sql_name()
                    )
                }
            }
        }
        Ok(Arc::new(ShardFileFormat {
            format: self.format,
            shard_size_bytes,
        }))
    }

    fn default(&self) -> Arc<dyn FileFormat> {
        Arc::new(ShardFileFormat {
            format: self.format,
            shard_size_bytes: DEFAULT_SHARD_SIZE_BYTES,
        })
    }
}

/// A shard format with its options.
#[derive(Debug)]
pub(super) struct ShardFileFormat {
    format: OutputFormat,
    shard_size_bytes: u64,
}

#[async_trait]
impl FileFormat for ShardFileFormat {
    fn get_ext(&self) -> String {
        self.format.sql_name().to_string()
    }

    fn get_ext_with_compression(&self, _c: &FileCompressionType) -> DfResult<String> {
        Ok(self.get_ext())
    }

    fn compression_type(&self) -> Option<FileCompressionType> {
        None
    }

    async fn infer_schema(
        &self,
        state: &dyn Session,
        store: &Arc<dyn ObjectStore>,
        objects: &[object_store::ObjectMeta],
    ) -> DfResult<SchemaRef> {
        match self.format {
            OutputFormat::Parquet => {
                ParquetFormat::default()
                    .infer_schema(state, store, objects)
                    .await
            }
            _ => not_impl_err!(
                "{} is a write-only format; read its shards with their own reader",
                self.get_ext()
            ),
        }
    }

    async fn infer_stats(
        &self,
        state: &dyn Session,
        store: &Arc<dyn ObjectStore>,
        table_schema: SchemaRef,
        object: &object_store::ObjectMeta,
    ) -> DfResult<Statistics> {
        match self.format {
            OutputFormat::Parquet => {
                ParquetFormat::default()
                    .infer_stats(state, store, table_schema, object)
                    .await
            }
            _ => Ok(Statistics::new_unknown(&table_schema)),
        }
    }

    async fn create_physical_plan(
        &self,
        state: &dyn Session,
        conf: FileScanConfig,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match self.format {
            OutputFormat::Parquet => {
                ParquetFormat::default()
                    .create_physical_plan(state, conf)
                    .await
            }
            _ => not_impl_err!("{} is a write-only format", self.get_ext()),
        }
    }

    async fn create_writer_physical_plan(
        &self,
        input: Arc<dyn ExecutionPlan>,
        _state: &dyn Session,
        conf: FileSinkConfig,
        order_requirements: Option<LexRequirement>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if !conf.table_partition_cols.is_empty() {
            return not_impl_err!(
                "{}: PARTITIONED BY is not supported; shards follow session order",
                self.get_ext()
            );
        }
        let schema = input.schema();
        // SPEC §5 order, whatever the query's own ORDER BY: deterministic shards.
        let export_order = ["session_id", "frame_idx"]
            .iter()
            .map(|c| {
                col(c, &schema)
                    .map(|e| PhysicalSortRequirement::new(e, Some(SortOptions::new(false, false))))
            })
            .collect::<DfResult<Vec<_>>>();
        let order = match export_order {
            Ok(reqs) => LexRequirement::new(reqs),
            Err(_) => order_requirements,
        };
        let sink = Arc::new(ShardSink {
            format: self.format,
            shard_size_bytes: self.shard_size_bytes,
            config: conf,
        });
        Ok(Arc::new(DataSinkExec::new(input, sink, order)))
    }

    fn file_source(&self, table_schema: TableSchema) -> Arc<dyn FileSource> {
        ParquetFormat::default().file_source(table_schema)
    }
}

/// The `DataSink` behind `COPY … STORED AS <shard format>`.
#[derive(Debug)]
struct ShardSink {
    format: OutputFormat,
    shard_size_bytes: u64,
    config: FileSinkConfig,
}

impl DisplayAs for ShardSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ShardSink({}, shard_size_bytes={})",
            self.format.sql_name(),
            self.shard_size_bytes
        )
    }
}

#[async_trait]
impl DataSink for ShardSink {
    fn schema(&self) -> &SchemaRef {
        self.config.output_schema()
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> DfResult<u64> {
        let store = context
            .runtime_env()
            .object_store(&self.config.object_store_url)?;
        let prefix = self
            .config
            .table_paths
            .first()
            .map(|u| u.prefix().clone())
            .unwrap_or_else(|| Path::from(""));
        let url = self.config.original_url.clone();
        let target = ExportTarget::new(store, prefix, url.clone());
        let meta = ExportMeta {
            title: format!("COPY to {url}"),
            ..Default::default()
        };
        let manifest = ExportWriter::new(&target, self.format, self.shard_size_bytes)?
            .with_meta(meta)
            .write(data)
            .await?;
        Ok(manifest.rows)
    }
}
