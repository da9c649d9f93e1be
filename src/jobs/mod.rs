//! The export lifecycle: run a spec against a store into a target, stream the
//! rows into shards, write the manifest last, and clean up on failure.

mod export;

pub use export::{new_export_id, run_export, run_export_in, ExportOutcome};
