//! The durable job queue of `nusomi serve`: [`JobRecord`]s in `redb`
//! (`record.rs`, `db.rs`) and the [`JobService`] that runs them, each an
//! [`crate::Export`], on a bounded worker pool with restart recovery,
//! round-robin dispatch across workspaces and cancellation (`service.rs`),
//! bounded verification (`service/verification.rs`) and what it forgets
//! when (`service/retention.rs`).

mod db;
mod record;
mod service;

pub use db::{JobDb, JobFilter};
pub use record::{JobRecord, JobStatus, DEFAULT_WORKSPACE};
pub use service::{
    JobService, Prepared, Rejected, MAX_ATTEMPTS, MAX_FUTURE_AS_OF_SECS, VERIFIES_AT_ONCE,
    VERIFY_SECS,
};
