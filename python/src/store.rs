//! `Store`: a sealed store opened from a path or object-store URL (the
//! credentials the CLI takes: `AWS_*`, `AZURE_STORAGE_*`,
//! `GOOGLE_APPLICATION_CREDENTIALS`, … from the environment), with
//! `seal` (bundles into the store) and `sql` (a query over `sessions` and
//! `frames`, streamed as Arrow).

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use nusomi_export::store::{SealOptions, SealOutcome, SealedStore};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::arrow_stream::ArrowStream;
use crate::errors::{bundle_error, OrRaise};
use crate::ffi::TableExport;
use crate::runtime::{runtime, wait};

/// A sealed store.
#[pyclass(frozen, module = "nusomi_export._native")]
pub(crate) struct Store {
    pub(crate) inner: Arc<SealedStore>,
    root: String,
}

#[pymethods]
impl Store {
    #[new]
    fn open(py: Python<'_>, root: String) -> PyResult<Self> {
        let given = root.clone();
        let inner = wait(py, async move { SealedStore::open(&given).await })?.or_raise(py)?;
        Ok(Store { inner, root })
    }

    /// The root as given.
    #[getter]
    fn root(&self) -> &str {
        &self.root
    }

    fn __repr__(&self) -> String {
        format!("Store({:?})", self.root)
    }

    /// Seals bundle folders; one dict per bundle, in the order given.
    /// Runs to its end (a Ctrl-C is raised after it: a seal is never left
    /// half-committed); raises `BundleError` for the first refused bundle
    /// with every bundle's result in its `results`.
    #[pyo3(signature = (paths, parallelism = 0))]
    fn seal<'py>(
        &self,
        py: Python<'py>,
        paths: Vec<PathBuf>,
        parallelism: usize,
    ) -> PyResult<Bound<'py, PyList>> {
        let store = Arc::clone(&self.inner);
        let order = paths.clone();
        let task = runtime().spawn(async move {
            let options = SealOptions {
                parallelism,
                ..SealOptions::default()
            };
            store.seal_all(paths, &options).collect::<Vec<_>>().await
        });
        let mut results = py
            .detach(|| runtime().block_on(task))
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
        // seal_all yields in completion order; report in the order given.
        results.sort_by_key(|(dir, _)| order.iter().position(|p| p == dir));
        let list = PyList::empty(py);
        let mut refused = None;
        for (dir, result) in results {
            let d = PyDict::new(py);
            d.set_item("bundle", dir.to_string_lossy().into_owned())?;
            match result {
                Ok(outcome) => {
                    let status = match &outcome {
                        SealOutcome::Sealed(_) => "sealed",
                        SealOutcome::AlreadySealed(_) => "already_sealed",
                    };
                    let s = outcome.summary();
                    d.set_item("status", status)?;
                    d.set_item("session_id", &s.session_id)?;
                    d.set_item("workflow", &s.workflow)?;
                    d.set_item("frames", s.frames)?;
                    d.set_item("events", s.events)?;
                    d.set_item("image_bytes", s.image_bytes)?;
                    d.set_item("seal", &s.seal)?;
                }
                Err(e) => {
                    d.set_item("status", "refused")?;
                    d.set_item("error", e.to_string())?;
                    if refused.is_none() {
                        refused = Some(e);
                    }
                }
            }
            list.append(d)?;
        }
        if let Some(e) = refused {
            let exc = match e {
                nusomi_export::Error::Bundle(b) => bundle_error(py, &b)?,
                other => crate::errors::raise(py, other)
                    .into_value(py)
                    .into_bound(py)
                    .into_any(),
            };
            exc.setattr("results", &list)?;
            return Err(PyErr::from_value(exc));
        }
        Ok(list)
    }

    /// Runs `query` with `sessions`, `frames` and the product's SQL
    /// functions registered; the rows stream as an Arrow C stream.
    fn sql(&self, py: Python<'_>, query: String) -> PyResult<ArrowStream> {
        let store = Arc::clone(&self.inner);
        let stream = wait(py, async move {
            let ctx = nusomi_export::engine::new_context();
            nusomi_export::register(&ctx, &store)?;
            let df = ctx.sql(&query).await?;
            Ok::<_, nusomi_export::Error>(df.execute_stream().await?)
        })?
        .or_raise(py)?;
        Ok(ArrowStream::new(stream))
    }

    /// The `sessions` or `frames` table as a datafusion-python table
    /// provider (`__datafusion_table_provider__`).
    fn table(&self, py: Python<'_>, name: &str) -> PyResult<TableExport> {
        TableExport::new(py, &self.inner, name)
    }
}
