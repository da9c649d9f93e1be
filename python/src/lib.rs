//! `nusomi_export._native`: the extension module under the `nusomi_export`
//! Python package (`python/nusomi_export/`). One tokio runtime runs the
//! library's work (`runtime.rs`) with the GIL released; `store.rs` is the
//! store and its verbs (open, seal, SQL), `export.rs` export, verify and
//! plan, `ffi.rs` the DataFusion FFI capsules that put the store's tables
//! and SQL functions into a datafusion-python `SessionContext`,
//! `constants.rs` the functions' constant arguments back from the FFI's
//! arrays, `arrow_stream.rs` query results as an Arrow C stream, and `errors.rs`
//! the mapping of the library's errors to the package's exception classes
//! (`nusomi_export/errors.py`). The Python modules above it are the
//! documented API; this one is private.

mod arrow_stream;
mod constants;
mod errors;
mod export;
mod ffi;
mod runtime;
mod store;

use pyo3::prelude::*;

/// The DataFusion major version this module's FFI speaks.
#[pyfunction]
fn datafusion_major() -> u64 {
    datafusion_ffi::version()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<store::Store>()?;
    m.add_class::<ffi::TableExport>()?;
    m.add_class::<ffi::FunctionExport>()?;
    m.add_class::<arrow_stream::ArrowStream>()?;
    m.add_function(wrap_pyfunction!(export::export, m)?)?;
    m.add_function(wrap_pyfunction!(export::verify, m)?)?;
    m.add_function(wrap_pyfunction!(export::plan, m)?)?;
    m.add_function(wrap_pyfunction!(ffi::functions, m)?)?;
    m.add_function(wrap_pyfunction!(datafusion_major, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
