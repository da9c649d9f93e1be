//! [`WriteShardsNode`]: the export's sink as a logical plan node, which is
//! what a Ballista client sends; the scheduler's planner
//! ([`query_planner`]) turns it into [`WriteShardsExec`].

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, DFSchemaRef, Result as DfResult};
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

use crate::engine::{written_schema, ShardJob, WriteShardsExec};

/// The sink over the export query's rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WriteShardsNode {
    input: LogicalPlan,
    job: ShardJob,
    schema: DFSchemaRef,
}

impl WriteShardsNode {
    /// The sink of `job` over `input`.
    pub fn new(input: LogicalPlan, job: ShardJob) -> Self {
        let schema = DFSchema::try_from(written_schema().as_ref().clone())
            .map(Arc::new)
            .unwrap_or_else(|_| Arc::new(DFSchema::empty()));
        WriteShardsNode { input, job, schema }
    }

    /// The job.
    pub fn job(&self) -> &ShardJob {
        &self.job
    }
}

impl PartialOrd for WriteShardsNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.job.partial_cmp(&other.job) {
            Some(Ordering::Equal) => self.input.partial_cmp(&other.input),
            o => o,
        }
    }
}

impl UserDefinedLogicalNodeCore for WriteShardsNode {
    fn name(&self) -> &str {
        "WriteShards"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "WriteShards: format={}, partitions={}",
            self.job.format, self.job.partitions
        )
    }

    fn with_exprs_and_inputs(
        &self,
        _exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> DfResult<Self> {
        let input = inputs.pop().ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("WriteShards has one input".into())
        })?;
        Ok(WriteShardsNode::new(input, self.job.clone()))
    }
}

/// Plans [`WriteShardsNode`] as [`WriteShardsExec`].
#[derive(Debug, Default)]
struct SinkPlanner;

#[async_trait]
impl ExtensionPlanner for SinkPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session_state: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(n) = node.as_any().downcast_ref::<WriteShardsNode>() else {
            return Ok(None);
        };
        let input = physical_inputs.first().cloned().ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("WriteShards has one input".into())
        })?;
        Ok(Some(Arc::new(WriteShardsExec::new(input, n.job.clone()))))
    }
}

/// DataFusion's planner plus [`WriteShardsNode`].
#[derive(Debug, Default)]
struct SinkQueryPlanner;

#[async_trait]
impl QueryPlanner for SinkQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(SinkPlanner)])
            .create_physical_plan(logical_plan, session_state)
            .await
    }
}

/// The query planner a scheduler plans exports with.
pub fn query_planner() -> Arc<dyn QueryPlanner + Send + Sync> {
    Arc::new(SinkQueryPlanner)
}
