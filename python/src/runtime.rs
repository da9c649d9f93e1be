//! The tokio runtime the library's work runs on (the Python side has none),
//! and [`wait`]: a future run to its end on it with the GIL released,
//! Ctrl-C checked every [`TICK`].

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use tokio::runtime::Runtime;

/// How often a waiting call looks for a pending signal (Ctrl-C) and
/// reports progress.
pub(crate) const TICK: Duration = Duration::from_millis(100);

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The module's runtime, started on first use (one worker per core).
pub(crate) fn runtime() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("nusomi-export")
            .build()
            .expect("a tokio runtime starts")
    })
}

/// Runs `fut` on the runtime with the GIL released. A Ctrl-C while it runs
/// drops it (for work that reads: opening, planning, querying, verifying)
/// and raises `KeyboardInterrupt`.
pub(crate) fn wait<F>(py: Python<'_>, fut: F) -> PyResult<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut task = runtime().spawn(fut);
    loop {
        let tick =
            py.detach(|| runtime().block_on(async { tokio::time::timeout(TICK, &mut task).await }));
        match tick {
            Ok(Ok(out)) => return Ok(out),
            Ok(Err(e)) => {
                return Err(PyRuntimeError::new_err(format!(
                    "nusomi_export: background task failed: {e}"
                )))
            }
            Err(_) => {
                if let Err(interrupt) = py.check_signals() {
                    task.abort();
                    return Err(interrupt);
                }
            }
        }
    }
}
