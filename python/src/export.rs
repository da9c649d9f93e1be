//! `export` (a spec run into its destination, progress reported, Ctrl-C
//! cancelling cleanly), `verify` (a published export against its
//! manifest) and `plan` (the SQL a spec compiles to, and DataFusion's
//! plan for it). Results go to Python as JSON text; the Python side wraps
//! them (`nusomi_export/_api.py`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::Utc;
use nusomi_export::dest::DestConfig;
use nusomi_export::sink::Progress;
use nusomi_export::spec::{compile_sql, format_instant, ExportSpec};
use nusomi_export::{new_export_id, Error, Export};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::errors::OrRaise;
use crate::runtime::{runtime, wait, TICK};
use crate::store::Store;

fn json(e: serde_json::Error) -> PyErr {
    PyRuntimeError::new_err(format!("nusomi_export: json: {e}"))
}

/// Runs `spec` (JSON text) from `store`; returns the outcome as JSON
/// (`{"id", "manifest_url", "already_finished", "shards_reused",
/// "manifest"}`). `callback(rows, bytes, shards)` is called every tick and
/// once at the end. A Ctrl-C (or an exception from the callback) cancels
/// the export, waits until it has removed what it wrote, and is raised.
#[pyfunction]
#[pyo3(signature = (store, spec, callback = None, workspace_id = None))]
pub(crate) fn export(
    py: Python<'_>,
    store: &Store,
    spec: &str,
    callback: Option<Bound<'_, PyAny>>,
    workspace_id: Option<String>,
) -> PyResult<String> {
    let created_at = Utc::now();
    let spec = ExportSpec::from_json(spec, created_at)
        .map_err(Error::from)
        .or_raise(py)?;
    let mut cfg = DestConfig::from_env().or_raise(py)?;
    if workspace_id.is_some() {
        cfg.workspace_id = workspace_id;
    }
    let progress = Arc::new(Progress::default());
    let run = Export::new(&store.inner, &spec)
        .with_id(new_export_id(created_at))
        .with_dest_config(cfg)
        .with_progress(Arc::clone(&progress));
    let mut task = runtime().spawn(std::future::IntoFuture::into_future(run));
    let joined = loop {
        let tick =
            py.detach(|| runtime().block_on(async { tokio::time::timeout(TICK, &mut task).await }));
        if let Ok(joined) = tick {
            break joined;
        }
        let stop = py
            .check_signals()
            .and_then(|()| callback.as_ref().map_or(Ok(()), |cb| report(cb, &progress)));
        if let Err(stop) = stop {
            progress.cancel.store(true, Ordering::SeqCst);
            // The export stops at its next row and removes what it wrote.
            let _ = py.detach(|| runtime().block_on(&mut task));
            return Err(stop);
        }
    };
    let outcome = joined.map_err(Error::from).and_then(|r| r).or_raise(py)?;
    if let Some(cb) = &callback {
        report(cb, &progress)?;
    }
    let manifest = serde_json::to_value(&outcome.manifest).map_err(json)?;
    let out = serde_json::json!({
        "id": outcome.id,
        "manifest_url": outcome.manifest_url,
        "already_finished": outcome.already_finished,
        "shards_reused": outcome.shards_reused,
        "manifest": manifest,
    });
    Ok(out.to_string())
}

/// Calls `callback(rows, bytes, shards)` with the export's counts so far.
fn report(callback: &Bound<'_, PyAny>, progress: &Progress) -> PyResult<()> {
    callback
        .call1((
            progress.rows.load(Ordering::Relaxed),
            progress.bytes.load(Ordering::Relaxed),
            progress.shards.load(Ordering::Relaxed),
        ))
        .map(|_| ())
}

/// Verifies the export at `location` (a folder, its manifest.json, a
/// `file://`, `s3://`, `az://`, `gs://` URL, or an `https://` download
/// link); the report as JSON.
#[pyfunction]
pub(crate) fn verify(py: Python<'_>, location: String) -> PyResult<String> {
    let report = wait(py, async move {
        nusomi_export::sink::verify_location(&location).await
    })?
    .or_raise(py)?;
    let mut value = serde_json::to_value(&report).map_err(json)?;
    value["intact"] = report.is_intact().into();
    Ok(value.to_string())
}

/// The SQL `spec` compiles to; with a `store`, planned there too (a column
/// or function the store lacks is an error) and, when `explain`, with
/// DataFusion's logical and physical plans; JSON.
#[pyfunction]
#[pyo3(signature = (spec, store = None, explain = false))]
pub(crate) fn plan(
    py: Python<'_>,
    spec: &str,
    store: Option<PyRef<'_, Store>>,
    explain: bool,
) -> PyResult<String> {
    let spec = ExportSpec::from_json(spec, Utc::now())
        .map_err(Error::from)
        .or_raise(py)?;
    let sql = compile_sql(&spec).or_raise(py)?;
    let mut plans = Vec::new();
    if let Some(store) = store {
        let store = Arc::clone(&store.inner);
        let query = sql.clone();
        plans = wait(py, async move {
            let ctx = nusomi_export::engine::new_context();
            nusomi_export::register(&ctx, &store)?;
            let df = ctx.sql(&query).await?;
            let mut plans = Vec::new();
            if explain {
                use arrow::array::AsArray;
                for b in df.explain(false, false)?.collect().await? {
                    let (kinds, text) = (
                        b.column(0).as_string::<i32>(),
                        b.column(1).as_string::<i32>(),
                    );
                    for i in 0..b.num_rows() {
                        plans.push(serde_json::json!({
                            "plan_type": kinds.value(i),
                            "plan": text.value(i),
                        }));
                    }
                }
            }
            Ok::<_, Error>(plans)
        })?
        .or_raise(py)?;
    }
    let out = serde_json::json!({
        "as_of": format_instant(spec.as_of),
        "resolved": spec.resolved_json(),
        "unit": if spec.steps.is_some() { "step" } else { "frame" },
        "sql": sql,
        "explain": plans,
    });
    Ok(out.to_string())
}
