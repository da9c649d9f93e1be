//! [`PlanGuard`]: an executor's execution engine — Ballista's own, behind a
//! check of every stage plan it is given before any of it runs. A stage of
//! an export is made of a few node kinds only: our sink, Ballista's
//! shuffles, DataFusion's projections, filters, joins, sorts and
//! coalescing, and Parquet scans (the store's tables). Anything else —
//! a CSV, JSON, Avro or Arrow file scan (`read_csv('file:///…')`), a
//! `COPY … TO` sink, in-memory data, an unknown extension node — is refused
//! with the node named, so a plan a holder of the cluster's secret crafts
//! cannot read or write the executor's files through DataFusion's own
//! nodes. Every stage must also carry its job's [`Grant`], signed with the
//! executor's job key: each Parquet scan must read under the granted store
//! root and each sink must be the granted one (export id, destination,
//! workspace, STS rule). With the service's workspaces file
//! (`--workspaces`) the grant itself is checked too: its workspace listed,
//! its store that workspace's, its destination within that workspace's
//! policy — what the service checked, checked again where the bytes move.

use std::collections::HashMap;
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

use super::auth::JobKey;
use super::grant::{Grant, NusomiOptions};
use crate::engine::WriteShardsExec;
use crate::spec::Destination;
use crate::store::StoreLocation;
use crate::workspace::Workspaces;

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
/// private), refusing every stage whose job carries no grant signed with
/// this executor's job key ([`Grant`]), whose grant the workspaces file
/// does not allow, or whose plan [`refusal`] finds a foreign node in.
pub(crate) struct PlanGuard {
    inner: DefaultExecutionEngine,
    key: JobKey,
    /// The service's workspaces and each one's store root as a URL.
    workspaces: Option<(Workspaces, HashMap<String, String>)>,
}

impl PlanGuard {
    /// Checks grants with `key`, and against `workspaces` when given.
    pub(crate) fn new(key: JobKey, workspaces: Option<Workspaces>) -> Self {
        let workspaces = workspaces.map(|ws| {
            let roots = ws
                .all()
                .iter()
                .filter_map(|w| {
                    let root = StoreLocation::parse(&w.store).ok()?.root_url();
                    Some((w.id.clone(), root))
                })
                .collect();
            (ws, roots)
        });
        PlanGuard {
            inner: DefaultExecutionEngine::default(),
            key,
            workspaces,
        }
    }

    /// The stage's grant, or why it may not run.
    fn grant(&self, config: &SessionConfig) -> std::result::Result<Grant, String> {
        let grant = Grant::from_settings(NusomiOptions::grant_of(config), &self.key)?;
        if let Some((ws, roots)) = &self.workspaces {
            workspace_refusal(ws, roots, &grant).map_or(Ok(()), Err)?;
        }
        Ok(grant)
    }
}

/// Why the workspaces file does not allow `g`, if it does not: its
/// workspace must be listed, its store must be that workspace's, and unless
/// the workspace is trusted its destination must pass the workspace's
/// policy and STS must not be called at the destination's endpoint.
fn workspace_refusal(
    ws: &Workspaces,
    roots: &HashMap<String, String>,
    g: &Grant,
) -> Option<String> {
    let Some(id) = &g.workspace_id else {
        return Some("the job names no workspace".into());
    };
    let Some(w) = ws.get(id) else {
        return Some(format!(
            "the job's workspace {id:?} is not one of this cluster's"
        ));
    };
    let same_root = roots.get(id).is_some_and(|r| g.names_root(r));
    if !same_root {
        return Some(format!(
            "the job reads a store that is not workspace {id:?}'s"
        ));
    }
    if w.trusted {
        return None;
    }
    if g.sts_from_destination {
        return Some(format!(
            "workspace {id:?} may not call STS at its destination's endpoint"
        ));
    }
    let d = serde_json::from_str::<serde_json::Value>(&g.destination)
        .map_err(|e| e.to_string())
        .and_then(|v| Destination::from_json(&v).map_err(|e| e.to_string()));
    match d {
        Ok(d) => w
            .policy
            .admits_resolved(&d)
            .err()
            .map(|e| format!("workspace {id:?} may not export there: {e}")),
        Err(e) => Some(format!("the job's destination is unreadable: {e}")),
    }
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
        let why = match self.grant(config) {
            Ok(grant) => refusal(&plan, &grant),
            Err(why) => Some(why),
        };
        if let Some(why) = why {
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

/// Why `plan` is not a stage of the export `grant` allows, if it is not:
/// the first node (in depth-first order) of a kind an export does not use,
/// a file scan that is not Parquet or reads outside the granted store, or
/// a sink that is not the granted one.
pub(crate) fn refusal(plan: &Arc<dyn ExecutionPlan>, grant: &Grant) -> Option<String> {
    let name = plan.name();
    if !ALLOWED.contains(&name) {
        return Some(format!("{name} is not a node an export runs"));
    }
    if name == "DataSourceExec" {
        // By type, never by the node's text (which shows paths and
        // column names a caller chooses).
        let scan = plan
            .downcast_ref::<DataSourceExec>()
            .and_then(|d| d.downcast_to_file_source::<ParquetSource>());
        let Some((files, _)) = scan else {
            let line = displayable(plan.as_ref()).one_line().to_string();
            return Some(format!(
                "only Parquet scans of the store run here, not {}",
                line.chars().take(120).collect::<String>()
            ));
        };
        let base = files.object_store_url.as_str();
        let outside = files
            .file_groups
            .iter()
            .flat_map(|g| g.files())
            .map(|f| format!("{base}{}", f.object_meta.location))
            .find(|url| !grant.covers(url));
        if let Some(url) = outside {
            return Some(format!(
                "the scan of {url} is outside the store the job's grant names"
            ));
        }
    }
    if let Some(sink) = plan.downcast_ref::<WriteShardsExec>() {
        if let Some(why) = grant.refuses_sink(sink.job()) {
            return Some(why);
        }
    }
    plan.children().into_iter().find_map(|c| refusal(c, grant))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    fn grant_of(root: &std::path::Path) -> Grant {
        let root = url::Url::from_directory_path(root).unwrap();
        Grant::sign(
            &super::super::grant::tests::job(),
            root.as_str(),
            &JobKey([3; 32]),
        )
    }

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
        let grant = grant_of(tmp.path());
        let ctx = SessionContext::new();
        ctx.register_csv("secret", csv.to_str().unwrap(), CsvReadOptions::new())
            .await
            .unwrap();
        let plan = physical(&ctx, "SELECT * FROM secret").await;
        let why = refusal(&plan, &grant).expect("a CSV scan is refused");
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
        let why = refusal(&copy, &grant).expect("a COPY sink is refused");
        assert!(why.contains("DataSinkExec"), "{why}");
        ctx.register_parquet(
            "t",
            parquet.to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
        let scan = physical(&ctx, "SELECT a FROM t WHERE a > 0").await;
        assert_eq!(refusal(&scan, &grant), None);
        // The same scan under a grant of another store is refused.
        let elsewhere = grant_of(&tmp.path().join("elsewhere"));
        let why = refusal(&scan, &elsewhere).expect("a scan outside the grant is refused");
        assert!(why.contains("outside the store"), "{why}");
        // In-memory data is no export's either.
        let values = physical(&ctx, "SELECT * FROM (VALUES (1), (2)) AS t(x)").await;
        assert!(refusal(&values, &grant).is_some());
    }
}
