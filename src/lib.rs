//! # nusomi-export
//!
//! Turns sealed computer-use sessions (screenshots plus the actions a human,
//! model or script took) into training datasets, as a plugin on Apache
//! DataFusion.
//!
//! * [`store`] seals recording bundles into an append-only store of Parquet
//!   files on any `object_store` location and serves it as the `sessions` and
//!   `frames` tables.
//! * [`spec`] validates export specs and compiles them to SQL; [`sample`]
//!   holds the SQL functions that query uses (frame sampling, row keys).
//! * [`sink`] writes ordered export rows as shards of one format plus a
//!   manifest; [`dest`] opens where they go (local, S3, Azure, GCS, signed
//!   links); [`Export`] is the one export lifecycle over both, and
//!   [`engine`] the one place DataFusion is wired ([`register`], `COPY`
//!   formats, `DataFrame::write_shards`).
//! * [`jobs`] and [`server`] are the durable job service behind
//!   `nusomi serve`; [`viewer`] is `nusomi view`, the browser pages over a
//!   store and its exports; [`cli`] is the `nusomi` command.
//! * [`datagen`] renders realistic recording bundles for the demo, the tests and
//!   the benches.
//!
//! ```no_run
//! # async fn demo() -> nusomi_export::Result<()> {
//! use datafusion::prelude::SessionContext;
//! use nusomi_export::store::SealedStore;
//!
//! let store = SealedStore::open("/data/nusomi-store").await?;
//! let ctx = SessionContext::new();
//! nusomi_export::register(&ctx, &store)?;
//! ctx.sql("SELECT workflow, count(*) FROM sessions GROUP BY workflow")
//!     .await?
//!     .show()
//!     .await?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs, unreachable_pub)]
#![warn(clippy::clone_on_ref_ptr)]
#![recursion_limit = "256"] // the OpenAPI document is one json! literal

pub mod cli;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod datagen;
pub mod dest;
pub mod engine;
mod error;
mod export;
pub mod jobs;
pub mod sample;
pub mod server;
pub mod sink;
pub mod spec;
pub mod store;
pub mod viewer;
pub mod workspace;

pub use engine::{register, session_config};
pub use error::{Error, Result};
pub use export::{export_rows, new_export_id, Export, ExportOutcome};
