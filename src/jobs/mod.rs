//! The export lifecycle: run a spec against a store into a target, stream the
//! rows into shards, write the manifest last, and clean up on failure; and
//! the durable job queue of `nusomi serve` (records in `redb`, a bounded
//! worker pool, restart recovery, cancellation).

mod db;
mod export;
mod record;
mod service;

pub use db::{JobDb, JobFilter};
pub use export::{new_export_id, run_export, run_export_in, ExportOutcome};
pub use record::{JobRecord, JobStatus};
pub use service::{purge_unpublished, JobService, Rejected};
