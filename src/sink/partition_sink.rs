//! One partition of an export: [`PartitionSink`] streams its rows, in export
//! order, into its shard series (one, or one per split), as frame rows or
//! as step rows (with their image files), resuming against the shards an
//! interrupted attempt left, and reports what it wrote
//! ([`PartitionWritten`]) to the process that writes the manifest.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::compute::filter_record_batch;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::Value;

use super::attempts::{objects_under, series_of};
use super::layout::ExportLayout;
use super::manifest::{ShardInfo, StepSection};
use super::media::MediaWriter;
use super::row_schema::{schema_json, to_output_batch};
use super::sharded::{Progress, ShardTotals, ShardedWriter};
use super::step_output::StepOutput;
use crate::error::{Error, Result};

/// What rows an export writes.
enum Shape {
    /// Frame rows (SPEC §5).
    Frames,
    /// Step rows.
    Steps(Box<StepOutput>),
}

/// What the manifest needs of the rows once they are written.
enum Finished {
    Frames,
    Steps {
        schema: arrow::datatypes::SchemaRef,
        section: StepSection,
        /// The image files (JSON Lines).
        media: Option<Vec<ShardInfo>>,
    },
}

/// What one partition of an export wrote, as the process that wrote it
/// reports it to the one that writes the manifest (JSON on a cluster).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PartitionWritten {
    /// The partition.
    pub partition: u32,
    /// Per shard series (one, or one per split in split order): its
    /// shards and totals.
    pub series: Vec<(Vec<ShardInfo>, ShardTotals)>,
    /// Step exports: what the manifest's `steps` section needs.
    pub steps: Option<StepsWritten>,
}

/// What a step export's partition reports besides its shards.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepsWritten {
    /// The step rows' schema, as the manifest records it.
    pub(super) schema: Value,
    pub(super) section: StepSection,
    /// The image files (JSON Lines).
    pub(super) media: Option<Vec<ShardInfo>>,
}

/// Writes one partition's shards (every split's series) from its rows in
/// export order; made by [`ExportWriter::partition_sink`].
#[derive(Debug)]
pub struct PartitionSink {
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) layout: ExportLayout,
    pub(super) partition: u32,
    pub(super) shard_size_bytes: u64,
    pub(super) part_bytes: usize,
    pub(super) progress: Arc<Progress>,
    pub(super) splits: Vec<String>,
    pub(super) steps: bool,
    pub(super) media: bool,
    pub(super) folders: Vec<String>,
    pub(super) existing: Option<HashMap<String, u64>>,
}

impl PartitionSink {
    /// Streams `rows` into the partition's shards. On failure every shard
    /// it created is deleted.
    pub async fn write(self, rows: SendableRecordBatchStream) -> Result<PartitionWritten> {
        let existing = match self.existing {
            Some(e) => e,
            None => {
                let mut e = objects_under(&self.store, self.layout.prefix(), &self.folders).await?;
                e.remove(ExportLayout::LEASE);
                e
            }
        };
        let writers = series_of(&self.layout, &self.splits)
            .into_iter()
            .map(|layout| {
                ShardedWriter::with_layout(Arc::clone(&self.store), layout, self.shard_size_bytes)
                    .with_progress(Arc::clone(&self.progress))
                    .with_part_bytes(self.part_bytes)
                    .with_existing(existing.clone())
            })
            .collect();
        let shape = if self.steps {
            let media = self.media.then(|| {
                MediaWriter::new(
                    Arc::clone(&self.store),
                    self.layout.clone(),
                    existing.clone(),
                )
            });
            Shape::Steps(Box::new(StepOutput::new(
                self.layout.format(),
                &rows.schema(),
                media,
            )))
        } else {
            Shape::Frames
        };
        let (series, finished) = stream_rows(writers, &self.splits, rows, shape).await?;
        Ok(PartitionWritten {
            partition: self.partition,
            series,
            steps: match finished {
                Finished::Frames => None,
                Finished::Steps {
                    schema,
                    section,
                    media,
                } => Some(StepsWritten {
                    schema: schema_json(&schema),
                    section,
                    media,
                }),
            },
        })
    }
}

impl Shape {
    async fn convert(
        &mut self,
        batch: &arrow::array::RecordBatch,
    ) -> Result<arrow::array::RecordBatch> {
        match self {
            Shape::Frames => to_output_batch(batch),
            Shape::Steps(s) => s.convert(batch).await,
        }
    }

    async fn abort(self) {
        if let Shape::Steps(s) = self {
            if let Some(m) = s.media {
                m.abort().await;
            }
        }
    }

    /// What the manifest needs, and the media names this attempt created.
    fn finish(self) -> (Finished, Vec<String>) {
        match self {
            Shape::Frames => (Finished::Frames, Vec::new()),
            Shape::Steps(mut s) => {
                let section = s.section();
                let schema = s.schema();
                let (media, created) = match s.media.take() {
                    Some(m) => {
                        let (files, created) = m.finish();
                        (Some(files), created)
                    }
                    None => (None, Vec::new()),
                };
                (
                    Finished::Steps {
                        schema,
                        section,
                        media,
                    },
                    created,
                )
            }
        }
    }
}

/// Per series its shards and totals, and what the manifest needs of the
/// rows.
type Written = (Vec<(Vec<ShardInfo>, ShardTotals)>, Finished);

/// Streams `rows` into `writers`: all into the one writer, or with
/// `splits` each row into the writer of its `split` column's value.
async fn stream_rows(
    mut writers: Vec<ShardedWriter>,
    splits: &[String],
    mut rows: SendableRecordBatchStream,
    mut shape: Shape,
) -> Result<Written> {
    let streamed: Result<()> = async {
        while let Some(batch) = rows.next().await {
            let batch = batch?;
            let out = shape.convert(&batch).await?;
            if splits.is_empty() {
                writers[0].write_batch(&out).await?;
                continue;
            }
            let column = batch.column_by_name("split").ok_or_else(|| {
                Error::Rows("an export with splits needs a `split` column".into())
            })?;
            let column = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8)?;
            let names = column.as_string::<i32>();
            let mut routed = 0;
            for (i, split) in splits.iter().enumerate() {
                let mask: BooleanArray = (0..names.len())
                    .map(|r| Some(names.is_valid(r) && names.value(r) == split))
                    .collect();
                let n = mask.true_count();
                if n > 0 {
                    routed += n;
                    writers[i]
                        .write_batch(&filter_record_batch(&out, &mask)?)
                        .await?;
                }
            }
            if routed != out.num_rows() {
                return Err(Error::Internal(format!(
                    "{} row(s) in no split of {splits:?}",
                    out.num_rows() - routed
                )));
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = streamed {
        for w in writers {
            w.abort().await;
        }
        shape.abort().await;
        return Err(e);
    }
    let (finished, media_created) = shape.finish();
    let mut parts = Vec::with_capacity(writers.len());
    let mut created: Vec<(String, bool)> = Vec::new();
    let mut writers = writers.into_iter();
    while let Some(w) = writers.next() {
        let store = w.store();
        let layout = w.layout().clone();
        match w.finish_with_created().await {
            Ok((shards, totals, made)) => {
                created.extend(shards.iter().map(|s| s.path.clone()).zip(made));
                parts.push((shards, totals));
            }
            Err(e) => {
                // This writer cleaned up after itself; the finished ones
                // and the rest did not.
                for (name, _) in created.iter().filter(|(_, c)| *c) {
                    let _ = store.delete(&layout.key(name)).await;
                }
                for name in &media_created {
                    let _ = store.delete(&layout.key(name)).await;
                }
                for rest in writers {
                    rest.abort().await;
                }
                return Err(e);
            }
        }
    }
    Ok((parts, finished))
}
