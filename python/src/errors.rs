//! The library's errors as the package's exceptions
//! (`nusomi_export/errors.py`): a refused spec is `SpecError` (every
//! problem with its field path), a refused bundle `BundleError` (bundle,
//! file, line, field), anything else `NusomiError` with the library's
//! message.

use nusomi_export::Error;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// `Result` of the library, raised as the package's exception.
pub(crate) trait OrRaise<T> {
    /// The value, or the error as a Python exception.
    fn or_raise(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> OrRaise<T> for nusomi_export::Result<T> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| raise(py, e))
    }
}

/// `e` as an instance of the package's exception class for it.
pub(crate) fn raise(py: Python<'_>, e: Error) -> PyErr {
    let e = match e {
        Error::DataFusion(d) => Error::from_engine(d),
        other => other,
    };
    match build(py, &e) {
        Ok(err) => err,
        Err(import) => import,
    }
}

fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("nusomi_export.errors")?.getattr(name)
}

fn build(py: Python<'_>, e: &Error) -> PyResult<PyErr> {
    let message = e.to_string();
    let value = match e {
        Error::Spec(errors) => {
            let list = PyList::empty(py);
            for one in &errors.0 {
                let d = PyDict::new(py);
                d.set_item("field", &one.field)?;
                d.set_item("message", &one.message)?;
                list.append(d)?;
            }
            class(py, "SpecError")?.call1((message, list))?
        }
        Error::Bundle(b) => bundle_error(py, b)?,
        _ => class(py, "NusomiError")?.call1((message,))?,
    };
    Ok(PyErr::from_value(value))
}

/// A `BundleError` instance for `b`.
pub(crate) fn bundle_error<'py>(
    py: Python<'py>,
    b: &nusomi_export::store::BundleError,
) -> PyResult<Bound<'py, PyAny>> {
    let kwargs = PyDict::new(py);
    kwargs.set_item("bundle", b.bundle.to_string_lossy().into_owned())?;
    kwargs.set_item("file", &b.file)?;
    kwargs.set_item("line", b.line)?;
    kwargs.set_item("field", b.field.as_deref())?;
    kwargs.set_item("reason", &b.message)?;
    class(py, "BundleError")?.call((b.to_string(),), Some(&kwargs))
}
