//! [`WriteShardsExec`]: an export's sink as an execution plan, so a
//! cluster's executors can run it. Its input is the export query with one
//! partition per export partition (one, ordered, for `partitions = 1`);
//! output partition `p` writes export partition `p`'s shards
//! ([`crate::sink::PartitionSink`]) straight to the destination and yields
//! one row: `(partition, written)`, the [`PartitionWritten`] as JSON. The
//! process that started the export assembles the manifest from those rows
//! ([`crate::sink::ExportWriter::finish`]). [`ShardJob`] is what an
//! executor needs to open the destination itself; a plan built in-process
//! carries the opened target, the progress counters and the row transform
//! (redaction, step rows) as well.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::Result as DfResult;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::{
    EquivalenceProperties, LexOrdering, LexRequirement, PhysicalSortExpr,
};
use datafusion::physical_expr_common::sort_expr::OrderingRequirements;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::expressions::col;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::ExecutionPlanProperties;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::dest::{DestConfig, ExportTarget};
use crate::error::{Error, Result};
use crate::sink::{Begun, ExportWriter, PartitionWritten, Progress};
use crate::spec::{partition_of, Destination, OutputFormat};

/// Rewrites a partition's rows before the sink (redaction, step rows).
pub(crate) type RowsFn =
    Arc<dyn Fn(SendableRecordBatchStream) -> Result<SendableRecordBatchStream> + Send + Sync>;

/// What every partition of one export writes under: enough for an
/// executor to open the destination and name the shards. Holds no
/// credential (executors use their own identity; key material given
/// inline in a destination is refused for clusters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Serialize, Deserialize)]
pub struct ShardJob {
    /// The export id.
    pub export_id: String,
    /// The destination, as a spec's `destination` object (JSON text; a
    /// local folder as an absolute path).
    pub destination: String,
    /// The workspace the export runs for (STS external id).
    pub workspace_id: Option<String>,
    /// Whether STS may be called at the destination's own `endpoint` (the
    /// CLI and trusted workspaces); for a policy-bound workspace the
    /// service decided no, and executors follow it (STS then at their
    /// `NUSOMI_STS_ENDPOINT`, else AWS) — never the request's host.
    #[serde(default)]
    pub sts_from_destination: bool,
    /// Shard format (the spec's name).
    pub format: String,
    /// Shard size cap.
    pub shard_size_bytes: u64,
    /// Multipart part size.
    pub part_bytes: usize,
    /// Split names, in series order.
    pub splits: Vec<String>,
    /// Step rows (single partition, in-process only).
    pub steps: bool,
    /// Export partitions.
    pub partitions: u32,
}

impl ShardJob {
    fn format(&self) -> Result<OutputFormat> {
        OutputFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == self.format)
            .ok_or_else(|| Error::Internal(format!("unknown shard format {:?}", self.format)))
    }

    /// Opens the destination the way the CLI does, from this process's
    /// environment ([`DestConfig::from_env`]) and the job's workspace.
    async fn open_target(&self) -> Result<ExportTarget> {
        let value: serde_json::Value = serde_json::from_str(&self.destination)
            .map_err(|e| Error::Internal(format!("job destination: {e}")))?;
        let d = Destination::from_json(&value).map_err(Error::Spec)?;
        let mut cfg = DestConfig::from_env()?;
        cfg.workspace_id = self.workspace_id.clone();
        cfg.sts_from_destination = self.sts_from_destination;
        cfg.part_bytes = self.part_bytes;
        ExportTarget::open_resolving(&d, &self.export_id, &cfg).await
    }
}

/// What only an in-process run has: the opened target, its claim, the
/// counters and the row transform.
#[derive(Clone)]
pub(crate) struct InProcess {
    pub(crate) target: Arc<ExportTarget>,
    pub(crate) begun: Begun,
    pub(crate) progress: Arc<Progress>,
    pub(crate) rows: Option<RowsFn>,
}

/// The schema of what [`WriteShardsExec`] yields.
pub fn written_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("partition", DataType::UInt32, false),
        Field::new("written", DataType::Utf8, false),
        Field::new("seal", DataType::Utf8, true),
    ]))
}

/// Reads the rows [`WriteShardsExec`] yields back into partition results.
pub fn read_written(batches: &[RecordBatch]) -> Result<Vec<PartitionWritten>> {
    let mut out = Vec::new();
    for b in batches {
        let json = b
            .column_by_name("written")
            .ok_or_else(|| Error::Internal("no `written` column in the sink's output".into()))?;
        let json = json.as_string::<i32>();
        for i in 0..json.len() {
            let w: PartitionWritten = serde_json::from_str(json.value(i))
                .map_err(|e| Error::Internal(format!("a partition's report: {e}")))?;
            out.push(w);
        }
    }
    Ok(out)
}

/// The partitions' reports, one per partition: none out of range, the
/// single partition of a one-partition export always there (a partition
/// with no rows reports nothing). A partition a cluster ran twice (a task
/// retried after its stage was sent back) reports twice; its writes are
/// deterministic, so the reports must be equal, and one is kept.
pub fn merge_reports(
    written: Vec<PartitionWritten>,
    partitions: u32,
) -> Result<Vec<PartitionWritten>> {
    let mut seen: Vec<Option<PartitionWritten>> = vec![None; partitions.max(1) as usize];
    for w in written {
        let p = w.partition;
        match seen.get_mut(p as usize) {
            Some(slot @ None) => *slot = Some(w),
            Some(Some(first)) if *first == w => {
                tracing::info!(partition = p, "a partition ran twice with the same result");
            }
            Some(Some(_)) => {
                return Err(Error::Internal(format!(
                    "partition {p} ran twice with different results"
                )))
            }
            None => {
                return Err(Error::Internal(format!(
                    "partition {p} is out of range (the export has {partitions})"
                )))
            }
        }
    }
    if partitions <= 1 && seen[0].is_none() {
        return Err(Error::Internal(
            "the export's partition did not report".into(),
        ));
    }
    Ok(seen.into_iter().flatten().collect())
}

/// The sink of an export as a plan node (see the module docs).
pub struct WriteShardsExec {
    input: Arc<dyn ExecutionPlan>,
    job: Arc<ShardJob>,
    local: Option<InProcess>,
    seal: Option<ReportSeal>,
    props: Arc<PlanProperties>,
}

/// What seals a partition's report (its JSON) so the process that submitted
/// the export knows where it came from (a cluster's executors).
pub type ReportSeal = Arc<dyn Fn(&str) -> String + Send + Sync>;

impl fmt::Debug for WriteShardsExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteShardsExec")
            .field("job", &self.job)
            .field("in_process", &self.local.is_some())
            .finish()
    }
}

impl WriteShardsExec {
    /// The sink of `job` over `input` (export rows; one partition per
    /// export partition, or one for `partitions = 1`).
    pub fn new(input: Arc<dyn ExecutionPlan>, job: ShardJob) -> Self {
        let props = Self::props(&input, &job);
        WriteShardsExec {
            input,
            job: Arc::new(job),
            local: None,
            seal: None,
            props,
        }
    }

    /// Seals each report with `seal` (its `seal` column; null without).
    pub fn with_report_seal(mut self, seal: ReportSeal) -> Self {
        self.seal = Some(seal);
        self
    }

    /// One output partition per input partition (a cluster's task runs a
    /// slice of them), one for a single-partition export.
    fn props(input: &Arc<dyn ExecutionPlan>, job: &ShardJob) -> Arc<PlanProperties> {
        let parts = if job.partitions <= 1 {
            1
        } else {
            input.output_partitioning().partition_count()
        };
        Arc::new(PlanProperties::new(
            EquivalenceProperties::new(written_schema()),
            Partitioning::UnknownPartitioning(parts),
            EmissionType::Final,
            Boundedness::Bounded,
        ))
    }

    pub(crate) fn in_process(mut self, local: InProcess) -> Self {
        self.local = Some(local);
        self
    }

    /// The job.
    pub fn job(&self) -> &ShardJob {
        &self.job
    }

    /// The rows it writes.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }
}

/// The order export rows are written in within a partition:
/// `(session_id, frame_idx)`, the columns `schema` has of them (`None`
/// without `session_id`).
pub(crate) fn export_ordering(schema: &SchemaRef) -> DfResult<Option<LexOrdering>> {
    if schema.index_of("session_id").is_err() {
        return Ok(None);
    }
    let keys = ["session_id", "frame_idx"]
        .into_iter()
        .filter(|c| schema.index_of(c).is_ok())
        .map(|c| {
            Ok(PhysicalSortExpr::new(
                col(c, schema)?,
                arrow::compute::SortOptions::new(false, false),
            ))
        })
        .collect::<DfResult<Vec<_>>>()?;
    Ok(LexOrdering::new(keys))
}

impl DisplayAs for WriteShardsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "WriteShardsExec: format={}, partitions={}",
            self.job.format, self.job.partitions
        )
    }
}

impl ExecutionPlan for WriteShardsExec {
    fn name(&self) -> &str {
        "WriteShardsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        if self.job.partitions <= 1 {
            vec![Distribution::SinglePartition]
        } else {
            // The input's partition p holds export partition p (the frames
            // scan groups its files so); checked row by row as it streams.
            vec![Distribution::UnspecifiedDistribution]
        }
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        let ordering = export_ordering(&self.input.schema()).ok().flatten();
        vec![ordering.map(|o| OrderingRequirements::new(LexRequirement::from(o)))]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("WriteShardsExec has one input".into()))?;
        Ok(Arc::new(WriteShardsExec {
            props: Self::props(&input, &self.job),
            input,
            job: Arc::clone(&self.job),
            local: self.local.clone(),
            seal: self.seal.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        // A cluster runs a task's slice of the partitions under local
        // numbers, so the export partition comes from the rows themselves.
        let mut rows = self.input.execute(partition, Arc::clone(&context))?;
        let job = Arc::clone(&self.job);
        let local = self.local.clone();
        let seal = self.seal.clone();
        let written = async move {
            let schema = rows.schema();
            let (p, rows) = if job.partitions <= 1 {
                (0, rows)
            } else {
                let first = loop {
                    match rows.next().await {
                        Some(Ok(b)) if b.num_rows() == 0 => continue,
                        Some(Ok(b)) => break b,
                        Some(Err(e)) => return Err(Error::from_engine(e)),
                        // No rows: nothing to write, nothing to report.
                        None => return Ok(RecordBatch::new_empty(written_schema())),
                    }
                };
                let p = first_partition(&first, job.partitions)?;
                let rest = futures::stream::iter([Ok(first)]).chain(rows);
                let rows: SendableRecordBatchStream =
                    Box::pin(RecordBatchStreamAdapter::new(schema, rest));
                (p, checked(rows, p, job.partitions))
            };
            let report = write_partition(&job, local, p, rows).await?;
            let json = serde_json::to_string(&report)
                .map_err(|e| Error::Internal(format!("a partition's report: {e}")))?;
            let sealed = seal.map(|f| f(&json));
            let batch = RecordBatch::try_new(
                written_schema(),
                vec![
                    Arc::new(UInt32Array::from(vec![p])),
                    Arc::new(StringArray::from(vec![json])),
                    Arc::new(StringArray::from(vec![sealed])),
                ],
            )?;
            Ok::<_, Error>(batch)
        };
        let stream = futures::stream::once(written).map(|r| r.map_err(DataFusionError::from));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            written_schema(),
            stream,
        )))
    }
}

/// The `session_id` column of `batch`, as UTF-8.
fn session_ids(batch: &RecordBatch) -> Result<ArrayRef> {
    let ids = batch
        .column_by_name("session_id")
        .ok_or_else(|| Error::Rows("a partitioned export needs a `session_id` column".into()))?;
    Ok(arrow::compute::cast(ids, &DataType::Utf8)?)
}

/// The export partition of the first row of `batch`.
fn first_partition(batch: &RecordBatch, partitions: u32) -> Result<u32> {
    let ids = session_ids(batch)?;
    let ids = ids.as_string::<i32>();
    if ids.is_null(0) {
        return Err(Error::Rows("a row without session_id".into()));
    }
    Ok(partition_of(ids.value(0), partitions))
}

/// Writes partition `p`'s shards.
async fn write_partition(
    job: &ShardJob,
    local: Option<InProcess>,
    p: u32,
    rows: SendableRecordBatchStream,
) -> Result<PartitionWritten> {
    let format = job.format()?;
    let (target, begun, progress, transform) = match local {
        Some(l) => (l.target, Some(l.begun), l.progress, l.rows),
        None => (
            Arc::new(job.open_target().await?),
            None,
            Arc::new(Progress::default()),
            None,
        ),
    };
    let rows = match transform {
        Some(f) => f(rows)?,
        None => rows,
    };
    let writer = ExportWriter::new(&target, format, job.shard_size_bytes)?
        .with_splits(job.splits.clone())
        .with_steps(job.steps)
        .with_progress(progress);
    writer
        .partition_sink(p, job.partitions, begun.as_ref())
        .write(rows)
        .await
}

/// `rows` failing at the first row whose session belongs to another
/// partition than `p` (a plan that moved rows between partitions would
/// otherwise write one partition's shard names from two places). Rows come
/// session by session: each session's id is hashed once.
fn checked(rows: SendableRecordBatchStream, p: u32, partitions: u32) -> SendableRecordBatchStream {
    let schema = rows.schema();
    let mut last: Option<String> = None;
    let stream = rows.map(move |batch| {
        let batch = batch?;
        let ids = session_ids(&batch)?;
        for id in ids.as_string::<i32>().iter().flatten() {
            if last.as_deref() == Some(id) {
                continue;
            }
            let q = partition_of(id, partitions);
            if q != p {
                return Err(DataFusionError::Execution(format!(
                    "session {id} (partition {q}) arrived in partition {p}: the plan must keep the frames scan's partitions"
                )));
            }
            last = Some(id.to_string());
        }
        Ok(batch)
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(partition: u32, sha: &str) -> PartitionWritten {
        serde_json::from_value(serde_json::json!({
            "partition": partition,
            "series": [[[{"path": format!("shard-p{partition:04}-000000.parquet"),
                          "bytes": 10, "rows": 1, "sha256": sha}],
                        {"rows": 1, "actions": 0, "sessions": 1}]],
            "steps": null
        }))
        .unwrap()
    }

    #[test]
    fn reports_merge_once_per_partition() {
        let merged = merge_reports(vec![report(2, "aa"), report(0, "bb"), report(2, "aa")], 4);
        let merged = merged.unwrap();
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].partition, 0);
        let conflict = merge_reports(vec![report(1, "aa"), report(1, "cc")], 4);
        assert!(conflict
            .unwrap_err()
            .to_string()
            .contains("different results"));
        let out_of_range = merge_reports(vec![report(4, "aa")], 4);
        assert!(out_of_range
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        // A one-partition export always reports its partition.
        assert!(merge_reports(vec![], 1).is_err());
        assert!(merge_reports(vec![], 4).unwrap().is_empty());
    }
}
