//! [`PlanGuard`]: an executor's execution engine — Ballista's own, behind a
//! check of every stage plan it is given before any of it runs. A stage of
//! an export is made of a few node kinds only: our sink, Ballista's
//! shuffles, DataFusion's projections, filters, joins, sorts and
//! coalescing, and Parquet scans (the store's tables). Anything else —
//! a CSV, JSON, Avro or Arrow file scan (`read_csv('file:///…')`), a
//! `COPY … TO` sink, in-memory data, an unknown extension node — is refused
//! with the node named, so a plan a holder of the cluster's secret crafts
//! cannot read or write the executor's files through DataFusion's own
//! nodes. (Parquet scans of any URL are still allowed: which store root a
//! job may read is not yet signed by the service.)

use std::sync::Arc;

use ballista_core::JobId;
use ballista_executor::execution_engine::{
    DefaultExecutionEngine, ExecutionEngine, QueryStageExecutor,
};
use datafusion::datasource::physical_plan::ParquetSource;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::{displayable, ExecutionPlan};
use datafusion::prelude::SessionConfig;

/// The node kinds an export's stages are made of.
const ALLOWED: &[&str] = &[
    "WriteShardsExec",
    "ShuffleWriterExec",
    "SortShuffleWriterExec",
    "ShuffleReaderExec",
    "ProjectionExec",
    "FilterExec",
    "HashJoinExec",
    "SortMergeJoinExec",
    "CoalescePartitionsExec",
    "CoalesceBatchesExec",
    "SortExec",
    "SortPreservingMergeExec",
    "RepartitionExec",
    "CooperativeExec",
    "EmptyExec",
    "DataSourceExec",
];

/// Ballista's default engine (without its client pool, which it keeps
/// private), refusing every plan [`refusal`] finds a foreign node in.
#[derive(Default)]
pub(crate) struct PlanGuard {
    inner: DefaultExecutionEngine,
}

impl ExecutionEngine for PlanGuard {
    fn create_query_stage_exec(
        &self,
        job_id: JobId,
        stage_id: usize,
        task_id: usize,
        global_output_partition_ids: Vec<usize>,
        plan: Arc<dyn ExecutionPlan>,
        work_dir: &str,
        config: &SessionConfig,
    ) -> Result<Arc<dyn QueryStageExecutor>> {
        if let Some(why) = refusal(&plan) {
            tracing::warn!(%job_id, stage_id, "refused a stage plan: {why}");
            return Err(DataFusionError::Plan(format!(
                "this executor runs exports only: {why}"
            )));
        }
        self.inner.create_query_stage_exec(
            job_id,
            stage_id,
            task_id,
            global_output_partition_ids,
            plan,
            work_dir,
            config,
        )
    }
}

/// Why `plan` is not an export's stage, if it is not: the first node (in
/// depth-first order) of a kind an export does not use, or a file scan
/// that is not Parquet.
pub(crate) fn refusal(plan: &Arc<dyn ExecutionPlan>) -> Option<String> {
    let name = plan.name();
    if !ALLOWED.contains(&name) {
        return Some(format!("{name} is not a node an export runs"));
    }
    if name == "DataSourceExec" {
        // By type, never by the node's text (which shows paths and
        // column names a caller chooses).
        let parquet = plan
            .downcast_ref::<DataSourceExec>()
            .and_then(|d| d.downcast_to_file_source::<ParquetSource>())
            .is_some();
        if !parquet {
            let line = displayable(plan.as_ref()).one_line().to_string();
            return Some(format!(
                "only Parquet scans of the store run here, not {}",
                line.chars().take(120).collect::<String>()
            ));
        }
    }
    plan.children().into_iter().find_map(refusal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn physical(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
        ctx.sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn foreign_scans_and_sinks_are_refused_and_parquet_is_not() {
        use datafusion::prelude::{CsvReadOptions, ParquetReadOptions};
        let tmp = tempfile::TempDir::new().unwrap();
        let csv = tmp.path().join("secret.csv");
        std::fs::write(&csv, "a,b\n1,2\n").unwrap();
        let ctx = SessionContext::new();
        ctx.register_csv("secret", csv.to_str().unwrap(), CsvReadOptions::new())
            .await
            .unwrap();
        let plan = physical(&ctx, "SELECT * FROM secret").await;
        let why = refusal(&plan).expect("a CSV scan is refused");
        assert!(why.contains("only Parquet") && why.contains("csv"), "{why}");
        let parquet = tmp.path().join("t.parquet");
        ctx.sql(&format!("COPY (SELECT 1 AS a) TO '{}'", parquet.display()))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let copy = physical(
            &ctx,
            &format!(
                "COPY (SELECT 2 AS a) TO '{}/x.parquet'",
                tmp.path().display()
            ),
        )
        .await;
        let why = refusal(&copy).expect("a COPY sink is refused");
        assert!(why.contains("DataSinkExec"), "{why}");
        ctx.register_parquet(
            "t",
            parquet.to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
        let scan = physical(&ctx, "SELECT a FROM t WHERE a > 0").await;
        assert_eq!(refusal(&scan), None);
        // In-memory data is no export's either.
        let values = physical(&ctx, "SELECT * FROM (VALUES (1), (2)) AS t(x)").await;
        assert!(refusal(&values).is_some());
    }
}
