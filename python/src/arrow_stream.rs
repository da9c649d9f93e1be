//! `ArrowStream`: a query's record batches behind the Arrow PyCapsule
//! interface (`__arrow_c_stream__`), so `pyarrow.table(stream)`, Polars or
//! DuckDB read them without a copy; batches are pulled from the query one
//! at a time, on the module's runtime.

use std::sync::Mutex;

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ffi_stream::FFI_ArrowArrayStream;
use arrow::record_batch::{RecordBatch, RecordBatchReader};
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::runtime::runtime;

/// A query's rows, readable once.
#[pyclass(frozen, module = "nusomi_export._native")]
pub(crate) struct ArrowStream {
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl ArrowStream {
    pub(crate) fn new(stream: SendableRecordBatchStream) -> Self {
        ArrowStream {
            stream: Mutex::new(Some(stream)),
        }
    }
}

/// The stream struct as the capsule holds it: the consumer moves it out
/// (marking this one released), so dropping it here frees nothing twice.
#[repr(transparent)]
struct Exported(FFI_ArrowArrayStream);

// SAFETY: the struct is owned by the capsule alone and only moved out by
// the one consumer; the reader behind it is `Send`.
unsafe impl Send for Exported {}

#[pymethods]
impl ArrowStream {
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema; // the query's schema is the one offered
        let stream = self
            .stream
            .lock()
            .map_err(|_| PyValueError::new_err("stream lock poisoned"))?
            .take()
            .ok_or_else(|| PyValueError::new_err("this query's rows were already read"))?;
        let reader = Reader {
            schema: stream.schema(),
            stream,
        };
        let ffi = Exported(FFI_ArrowArrayStream::new(Box::new(reader)));
        PyCapsule::new_with_value(py, ffi, c"arrow_array_stream")
    }
}

struct Reader {
    schema: SchemaRef,
    stream: SendableRecordBatchStream,
}

impl Iterator for Reader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        runtime()
            .block_on(self.stream.next())
            .map(|r| r.map_err(|e| ArrowError::ExternalError(Box::new(e))))
    }
}

impl RecordBatchReader for Reader {
    fn schema(&self) -> SchemaRef {
        std::sync::Arc::clone(&self.schema)
    }
}
