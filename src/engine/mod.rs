//! The one place DataFusion is wired: [`register`] adds a store's tables, the
//! export query's SQL functions and the shard formats to a
//! `SessionContext`; [`session_config`] suits it to frame data;
//! `copy_format.rs` is `COPY … STORED AS <shard format>` and
//! `write_shards.rs` the DataFrame extension [`WriteShards`]. Both end in the
//! export's own sink ([`crate::sink::ExportWriter`]). `shard_exec.rs` is that
//! sink as a plan node ([`WriteShardsExec`]: one output partition per export
//! partition, each writing its shards and reporting them), which a spec
//! export runs in process ([`partition_frames`] sets up the partitioned
//! scan) or a cluster runs on its executors. Lower layers (`store`,
//! `spec`, `sample`, `sink`, `dest`) never import this module.

mod copy_format;
mod shard_exec;
mod write_shards;

use std::sync::Arc;

use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use datafusion::prelude::{SessionConfig, SessionContext};

pub use shard_exec::{
    merge_reports, read_written, written_schema, ReportSeal, ShardJob, WriteShardsExec,
};
pub(crate) use shard_exec::{InProcess, RowsFn};
pub use write_shards::WriteShards;

use crate::sink::PartitionWritten;

use crate::store::{FramesTable, SealedStore, SessionsTable};

/// Rows per batch for queries that carry frame images: DataFusion's default
/// (8192) would coalesce ~0.5 GB of screenshots into one batch after a
/// filter or join; 64 keeps an export's memory at a few MB per partition.
pub const IMAGE_BATCH_SIZE: usize = 64;

/// A `SessionConfig` suited to frame data: DataFusion's settings from the
/// `DATAFUSION_*` environment variables (e.g.
/// `DATAFUSION_EXECUTION_TARGET_PARTITIONS=4`; a variable that does not
/// parse is ignored with a warning), then [`IMAGE_BATCH_SIZE`] rows per
/// batch and `information_schema` on. `register()` works with any config;
/// this one keeps memory bounded when queries move images. Exports do not
/// depend on it: the same spec gives the same bytes under any partitioning.
pub fn session_config() -> SessionConfig {
    let base = SessionConfig::from_env().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "ignoring DATAFUSION_* settings from the environment");
        SessionConfig::new()
    });
    base.with_batch_size(IMAGE_BATCH_SIZE)
        .with_information_schema(true)
}

/// A `SessionContext` with [`session_config`].
pub fn new_context() -> SessionContext {
    SessionContext::new_with_config(session_config())
}

/// Adds the `sessions` and `frames` tables of `store` to `ctx`, registers
/// the store's object store so DataFusion can read its files, and registers
/// the export query's SQL functions ([`crate::sample`]) and the shard formats
/// for `COPY … STORED AS nusomi_parquet | nusomi_arrow | nusomi_jsonl |
/// webdataset`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> nusomi_export::Result<()> {
/// use datafusion::prelude::SessionContext;
/// use nusomi_export::store::SealedStore;
///
/// let store = SealedStore::open("memory://").await?;
/// let ctx = SessionContext::new();
/// nusomi_export::register(&ctx, &store)?;
/// let n = ctx.sql("SELECT count(*) FROM frames").await?.count().await?;
/// assert_eq!(n, 1);
/// # Ok(())
/// # }
/// ```
pub fn register(ctx: &SessionContext, store: &Arc<SealedStore>) -> crate::error::Result<()> {
    let loc = store.location();
    ctx.register_object_store(loc.url.as_ref(), Arc::clone(&loc.store));
    ctx.register_table("sessions", Arc::new(SessionsTable::new(Arc::clone(store))))?;
    ctx.register_table("frames", Arc::new(FramesTable::new(Arc::clone(store))))?;
    register_functions(ctx);
    copy_format::register_copy_formats(ctx)?;
    Ok(())
}

/// For an export of `partitions > 1`: registers `frames` anew so its scans
/// have one partition per export partition ([`FramesTable::with_partitions`]),
/// `sessions` so its scans have one ([`SessionsTable::single_partition`]:
/// the join's build side needs no exchange, a cluster runs one stage)
/// and sets the options that keep those partitions apart up to the sink:
/// `target_partitions = partitions`, no repartitioned joins, no round-robin
/// repartitioning, no re-split file scans, hash joins, and no dynamic
/// filter from the join into the frames scan (its build-side report waits
/// for every output partition, so partitions could not run a few at a
/// time: see [`write_shards_in_process`]). A no-op for one partition.
pub fn partition_frames(
    ctx: &SessionContext,
    store: &Arc<SealedStore>,
    partitions: u32,
) -> crate::error::Result<()> {
    if partitions <= 1 {
        return Ok(());
    }
    ctx.deregister_table("frames")?;
    ctx.register_table(
        "frames",
        Arc::new(FramesTable::new(Arc::clone(store)).with_partitions(partitions)),
    )?;
    ctx.deregister_table("sessions")?;
    ctx.register_table(
        "sessions",
        Arc::new(SessionsTable::new(Arc::clone(store)).single_partition()),
    )?;
    let state = ctx.state_ref();
    let mut state = state.write();
    let options = state.config_mut().options_mut();
    options.execution.target_partitions = partitions as usize;
    options.optimizer.repartition_joins = false;
    options.optimizer.enable_round_robin_repartition = false;
    options.optimizer.repartition_file_scans = false;
    // A hash join collecting `sessions` keeps the frames side's partitions
    // (Ballista defaults to sort-merge joins, which repartition both sides).
    options.optimizer.prefer_hash_join = true;
    options.optimizer.enable_join_dynamic_filter_pushdown = false;
    Ok(())
}

/// Plans `sql` (the export query) in `ctx` and runs it into
/// [`WriteShardsExec`] in this process: every partition's shards, and
/// what each wrote.
pub(crate) async fn write_shards_in_process(
    ctx: &SessionContext,
    sql: &str,
    job: ShardJob,
    local: InProcess,
) -> crate::error::Result<Vec<PartitionWritten>> {
    let partitions = job.partitions;
    let input = ctx.sql(sql).await?.create_physical_plan().await?;
    let input = ordered_within_partitions(input)?;
    let exec: Arc<dyn ExecutionPlan> = Arc::new(WriteShardsExec::new(input, job).in_process(local));
    let join_filters = ctx
        .state()
        .config_options()
        .optimizer
        .enable_join_dynamic_filter_pushdown;
    let at_once = partitions_at_once(&exec, join_filters);
    tracing::debug!(partitions, at_once, "export partitions running at once");
    let batches = run_partitions(exec, ctx.task_ctx(), at_once)
        .await
        .map_err(crate::error::Error::from_engine)?;
    merge_reports(read_written(&batches)?, partitions)
}

/// How many export partitions write at once in this process: one per core.
/// Each open partition holds its scan, its shard buffers (one per split)
/// and its upload parts, so memory grows with this number and never with
/// the spec's `partitions` (up to 4096). A plan whose partitions wait for
/// each other runs them all at once, as DataFusion's `collect` does: an
/// exchange (`RepartitionExec`: an output nobody reads stops its inputs,
/// and so the others), or a hash join pushing a dynamic filter (each
/// partition waits for every partition's build-side report). The spec
/// export's own plan has neither ([`partition_frames`]); a context given
/// with [`crate::Export::with_context`] may.
fn partitions_at_once(plan: &Arc<dyn ExecutionPlan>, join_filters: bool) -> usize {
    fn waits_for_all(plan: &Arc<dyn ExecutionPlan>, join_filters: bool) -> bool {
        match plan.name() {
            "RepartitionExec" => true,
            "HashJoinExec" if join_filters => true,
            _ => plan
                .children()
                .into_iter()
                .any(|c| waits_for_all(c, join_filters)),
        }
    }
    if waits_for_all(plan, join_filters) {
        return usize::MAX;
    }
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Runs every output partition of `plan` to its end, at most `at_once` at
/// a time (each on a task of its own, so they use every core), and returns
/// their batches in partition order. DataFusion's `collect` starts all of
/// them together.
async fn run_partitions(
    plan: Arc<dyn ExecutionPlan>,
    task_ctx: Arc<datafusion::execution::TaskContext>,
    at_once: usize,
) -> datafusion::error::Result<Vec<arrow::record_batch::RecordBatch>> {
    use datafusion::common::runtime::SpawnedTask;
    use datafusion::error::DataFusionError;
    use futures::{StreamExt, TryStreamExt};
    let n = plan.properties().output_partitioning().partition_count();
    // Unordered, so a long partition does not hold the others' slots;
    // put back in partition order below.
    let mut parts: Vec<(usize, Vec<_>)> = futures::stream::iter(0..n)
        .map(|p| {
            let (plan, task_ctx) = (Arc::clone(&plan), Arc::clone(&task_ctx));
            // Aborted when dropped: a failing partition stops the others
            // before the writer removes what the attempt wrote.
            let task = SpawnedTask::spawn(async move {
                plan.execute(p, task_ctx)?.try_collect::<Vec<_>>().await
            });
            async move {
                let batches = task
                    .join()
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))??;
                Ok::<_, DataFusionError>((p, batches))
            }
        })
        .buffer_unordered(at_once.clamp(1, n.max(1)))
        .try_collect()
        .await?;
    parts.sort_by_key(|(p, _)| *p);
    Ok(parts.into_iter().flat_map(|(_, b)| b).collect())
}

/// `input` sorted by `(session_id, frame_idx)` within each partition: as
/// it is when the plan keeps the frames scan's order (no sort added then).
fn ordered_within_partitions(
    input: Arc<dyn ExecutionPlan>,
) -> crate::error::Result<Arc<dyn ExecutionPlan>> {
    let ordering = shard_exec::export_ordering(&input.schema())?;
    let Some(ordering) = ordering else {
        return Ok(input);
    };
    if input
        .equivalence_properties()
        .ordering_satisfy(ordering.clone())?
    {
        return Ok(input);
    }
    Ok(Arc::new(
        SortExec::new(ordering, input).with_preserve_partitioning(true),
    ))
}

/// Registers the export query's SQL functions ([`crate::sample::udfs`]) alone.
pub fn register_functions(ctx: &SessionContext) {
    for f in crate::sample::udfs() {
        ctx.register_udf(f);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use datafusion::execution::{SendableRecordBatchStream, TaskContext};
    use datafusion::physical_plan::repartition::RepartitionExec;
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
    use datafusion::physical_plan::Partitioning;

    use super::*;

    /// Partitions that count how many of them run at once.
    #[derive(Debug)]
    struct Counted {
        schema: SchemaRef,
        running: Arc<AtomicUsize>,
        peak: Arc<AtomicUsize>,
    }

    impl PartitionStream for Counted {
        fn schema(&self) -> &SchemaRef {
            &self.schema
        }
        fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
            let (running, peak) = (Arc::clone(&self.running), Arc::clone(&self.peak));
            let once = futures::stream::once(async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(arrow::record_batch::RecordBatch::new_empty(Arc::new(
                    Schema::new(vec![Field::new("x", DataType::Int32, false)]),
                )))
            });
            Box::pin(RecordBatchStreamAdapter::new(
                Arc::clone(&self.schema),
                once,
            ))
        }
    }

    fn counted(n: usize) -> (Arc<dyn ExecutionPlan>, Arc<AtomicUsize>) {
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
        let peak = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let parts: Vec<Arc<dyn PartitionStream>> = (0..n)
            .map(|_| {
                Arc::new(Counted {
                    schema: Arc::clone(&schema),
                    running: Arc::clone(&running),
                    peak: Arc::clone(&peak),
                }) as Arc<dyn PartitionStream>
            })
            .collect();
        let plan = StreamingTableExec::try_new(schema, parts, None, vec![], false, None).unwrap();
        (Arc::new(plan), peak)
    }

    #[tokio::test]
    async fn partitions_run_at_most_so_many_at_once() {
        let ctx = SessionContext::new().task_ctx();
        let (plan, peak) = counted(64);
        assert_eq!(
            partitions_at_once(&plan, true),
            std::thread::available_parallelism().map_or(2, |n| n.get())
        );
        run_partitions(Arc::clone(&plan), Arc::clone(&ctx), 2)
            .await
            .unwrap();
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        // What `collect` did: every partition at once.
        let (plan, peak) = counted(64);
        run_partitions(plan, ctx, usize::MAX).await.unwrap();
        assert_eq!(peak.load(Ordering::SeqCst), 64);
    }

    #[test]
    fn plans_whose_partitions_wait_for_each_other_run_all_at_once() {
        let (plan, _) = counted(4);
        let exchange: Arc<dyn ExecutionPlan> =
            Arc::new(RepartitionExec::try_new(plan, Partitioning::RoundRobinBatch(4)).unwrap());
        assert_eq!(partitions_at_once(&exchange, false), usize::MAX);
    }
}
