//! The store's tables and SQL functions for a datafusion-python
//! `SessionContext`, through DataFusion's FFI (`datafusion-ffi`, the same
//! major as the host: checked here per codec and in Python at import).
//!
//! The host hands a table's scan a session of its own, whose runtime knows
//! none of the store's object stores, and executes the plan with a task
//! context built from it. So [`HostedTable`] plans the scan with a session
//! of this module (the store registered, its object store known) on this
//! module's runtime, and [`HostedExec`] runs it with that session's task
//! context: the host sees the scan's schema, partitions, ordering and
//! statistics, and the filters it pushes down reach the store's pruning as
//! they would in Rust.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::Statistics;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, ScalarUDF, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion::prelude::SessionContext;
use datafusion_ffi::proto::logical_extension_codec::FFI_LogicalExtensionCodec;
use datafusion_ffi::table_provider::FFI_TableProvider;
use datafusion_ffi::udf::FFI_ScalarUDF;
use nusomi_export::store::{FramesTable, SealedStore, SessionsTable};
use pyo3::exceptions::{PyImportError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::errors::OrRaise;
use crate::runtime::runtime;

/// `sessions` or `frames` of one store, for `SessionContext.register_table`.
#[pyclass(frozen, module = "nusomi_export._native")]
pub(crate) struct TableExport {
    provider: Arc<dyn TableProvider>,
}

impl TableExport {
    pub(crate) fn new(py: Python<'_>, store: &Arc<SealedStore>, name: &str) -> PyResult<Self> {
        let inner: Arc<dyn TableProvider> = match name {
            "sessions" => Arc::new(SessionsTable::new(Arc::clone(store))),
            "frames" => Arc::new(FramesTable::new(Arc::clone(store))),
            other => {
                return Err(PyValueError::new_err(format!(
                    "no table {other:?}: a store has `sessions` and `frames`"
                )))
            }
        };
        let ctx = nusomi_export::engine::new_context();
        nusomi_export::register(&ctx, store).or_raise(py)?;
        Ok(TableExport {
            provider: Arc::new(HostedTable { inner, ctx }),
        })
    }
}

#[pymethods]
impl TableExport {
    /// The table as a `datafusion_table_provider` capsule. `session` is
    /// the host's session (or its logical codec capsule).
    #[pyo3(signature = (session = None))]
    fn __datafusion_table_provider__<'py>(
        &self,
        py: Python<'py>,
        session: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let session = session.ok_or_else(|| {
            PyImportError::new_err(
                "nusomi_export needs datafusion 55 (its table providers take the session \
                 as an argument); pip install 'datafusion>=55,<56'",
            )
        })?;
        let codec = logical_codec(&session)?;
        let ffi = FFI_TableProvider::new_with_ffi_codec(
            Arc::clone(&self.provider),
            true,
            Some(runtime().handle().clone()),
            codec,
        );
        PyCapsule::new_with_value(py, ffi, c"datafusion_table_provider")
    }
}

/// The host session's logical codec (the session object, or the codec
/// capsule itself), refused when its DataFusion major is not ours.
fn logical_codec(session: &Bound<'_, PyAny>) -> PyResult<FFI_LogicalExtensionCodec> {
    let attr = "__datafusion_logical_extension_codec__";
    let capsule = if session.hasattr(attr)? {
        session.getattr(attr)?.call0()?
    } else {
        session.clone()
    };
    let capsule = capsule.cast::<PyCapsule>().map_err(|_| {
        PyValueError::new_err(format!(
            "expected a datafusion SessionContext (or an object with {attr}), got {}",
            session
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    let pointer = capsule.pointer_checked(Some(c"datafusion_logical_extension_codec"))?;
    // SAFETY: a capsule of this name holds an FFI_LogicalExtensionCodec
    // (datafusion-python's convention), alive while the capsule is.
    let codec: &FFI_LogicalExtensionCodec = unsafe { pointer.cast().as_ref() };
    // SAFETY: `version` is a plain function of the host library.
    let host = unsafe { (codec.version)() };
    if host != datafusion_ffi::version() {
        return Err(PyImportError::new_err(format!(
            "the datafusion package speaks DataFusion {host}, nusomi_export DataFusion {}: \
             install datafusion {}.x",
            datafusion_ffi::version(),
            datafusion_ffi::version()
        )));
    }
    Ok(codec.clone())
}

/// One of the product's SQL functions, for `SessionContext.register_udf`.
#[pyclass(frozen, module = "nusomi_export._native")]
pub(crate) struct FunctionExport {
    udf: Arc<ScalarUDF>,
}

#[pymethods]
impl FunctionExport {
    /// Its SQL name.
    #[getter]
    fn name(&self) -> String {
        self.udf.name().to_string()
    }

    fn __datafusion_scalar_udf__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        let ffi = FFI_ScalarUDF::from(Arc::clone(&self.udf));
        PyCapsule::new_with_value(py, ffi, c"datafusion_scalar_udf")
    }
}

/// Every SQL function of the product (frame sampling, row keys, step
/// actions, `smart_resize`, …).
#[pyfunction]
pub(crate) fn functions() -> Vec<FunctionExport> {
    nusomi_export::sample::udfs()
        .into_iter()
        .map(|f| FunctionExport {
            udf: Arc::new(crate::constants::for_host(f)),
        })
        .collect()
}

/// A table of the store planned in this module's session (see the module
/// documentation).
struct HostedTable {
    inner: Arc<dyn TableProvider>,
    ctx: SessionContext,
}

impl std::fmt::Debug for HostedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostedTable")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for HostedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    fn statistics(&self) -> Option<Statistics> {
        self.inner.statistics()
    }

    async fn scan(
        &self,
        _host: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let inner = Arc::clone(&self.inner);
        let state = self.ctx.state();
        let projection = projection.cloned();
        let filters = filters.to_vec();
        let plan = runtime()
            .spawn(async move {
                inner
                    .scan(&state, projection.as_ref(), &filters, limit)
                    .await
            })
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??;
        Ok(Arc::new(HostedExec::new(plan, self.ctx.task_ctx())))
    }
}

/// A scan of this module run with this module's task context, whatever
/// context the host executes it with.
struct HostedExec {
    inner: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    /// The host shows a foreign plan by its name: the scan's one line.
    label: String,
}

impl HostedExec {
    fn new(inner: Arc<dyn ExecutionPlan>, task: Arc<TaskContext>) -> Self {
        let label = format!(
            "NusomiScan: {}",
            datafusion::physical_plan::displayable(inner.as_ref()).one_line()
        )
        .trim_end()
        .to_string();
        HostedExec { inner, task, label }
    }
}

impl std::fmt::Debug for HostedExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostedExec")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl DisplayAs for HostedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}", self.label)
    }
}

impl ExecutionPlan for HostedExec {
    fn name(&self) -> &str {
        &self.label
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "NusomiScan is a leaf: it takes no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _host: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        self.inner.execute(partition, Arc::clone(&self.task))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        self.inner.metrics()
    }

    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> DfResult<Arc<Statistics>> {
        // The scan is this node's hidden child: its statistics are this
        // node's (a walk of its own, the host's walk cannot reach it).
        StatisticsContext::new().compute(self.inner.as_ref(), args)
    }
}
