//! Which logged sessions a scan keeps: a filter on the columns the Delta
//! logs record statistics for ([`is_logged_filter`]) is decided per session
//! against them ([`prune_sessions`]), before any data file is opened.
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::Schema;
use datafusion::catalog::Session;
use datafusion::common::DFSchema;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;

use super::schema::{sessions_schema, UTC};
use super::sealed_store::{SessionRecord, Snapshot};

/// Columns of `sessions` whose values the log holds per file.
pub(super) const SESSIONS_LOGGED_COLUMNS: [&str; 4] =
    ["session_id", "workflow", "started_at", "sealed_at"];

/// Whether a filter mentions only `columns` (values the log holds per
/// file), so it can be decided per file from the snapshot.
pub(super) fn is_logged_filter(expr: &Expr, columns: &[&str]) -> bool {
    !expr.is_volatile()
        && expr
            .column_refs()
            .iter()
            .all(|c| columns.contains(&c.name.as_str()))
}

/// AND of `filters` evaluated on `batch` (nulls false); `None` when there are none.
pub(super) fn filter_mask<'a>(
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

/// Keeps the sessions for which every per-session filter is true; the
/// filters see `columns` (logged columns of `sessions`: the same list that
/// decided they were pushed down), with each session's logged values.
pub(super) fn prune_sessions(
    state: &dyn Session,
    snapshot: &Snapshot,
    filters: &[&Expr],
    columns: &[&str],
) -> DfResult<Vec<Arc<SessionRecord>>> {
    if filters.is_empty() {
        return Ok(snapshot.sessions.clone());
    }
    let full = sessions_schema();
    let fields: Vec<_> = columns
        .iter()
        .map(|name| full.field_with_name(name).cloned())
        .collect::<Result<_, _>>()?;
    let schema = Arc::new(Schema::new(fields));
    let s = &snapshot.sessions;
    let timestamps = |f: fn(&SessionRecord) -> i64| {
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(s.iter().map(|r| f(r))).with_timezone(UTC),
        ) as ArrayRef
    };
    let columns = columns
        .iter()
        .map(|name| match *name {
            "session_id" => Ok(Arc::new(StringArray::from_iter_values(
                s.iter().map(|r| r.session_id.as_str()),
            )) as ArrayRef),
            "workflow" => Ok(Arc::new(StringArray::from_iter_values(
                s.iter().map(|r| r.workflow.as_str()),
            )) as ArrayRef),
            "started_at" => Ok(timestamps(|r| r.started_at_us)),
            "sealed_at" => Ok(timestamps(|r| r.sealed_at_us)),
            other => datafusion::common::internal_err!("{other} is not a logged column"),
        })
        .collect::<DfResult<Vec<_>>>()?;
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
