//! The sealed session store: validating recording bundles, sealing them into
//! Parquet on any `object_store` location, and serving them as the `sessions`
//! and `frames` tables of a DataFusion `SessionContext`.

mod bundle;
mod frame_image;
mod layout;
mod location;
mod schema;
mod seal;
mod sealed_store;
mod table;

use std::sync::Arc;

use datafusion::prelude::SessionContext;

pub(crate) use bundle::json_type_name;
pub use bundle::{
    is_valid_session_id, ActorKind, Bundle, BundleError, Event, Frame, Outcome, SessionMeta,
};
pub use frame_image::{dhash, hash_distance, FrameImage, ImageFormat, KEYFRAME_HASH_DISTANCE};
pub use layout::{SessionPaths, FRAMES_DIR, SESSIONS_DIR};
pub use location::StoreLocation;
pub use schema::{
    event_fields, event_list_type, frames_schema, sessions_schema, FRAMES_SESSION_COLUMNS,
};
pub(crate) use seal::image_parquet_props;
pub use seal::{SealOptions, SealOutcome, SealSummary, CREATED_BY};
pub use sealed_store::{SealedStore, SessionRecord, Snapshot};
pub use table::{FramesTable, SessionsTable};

/// Rows per batch for queries that carry frame images: DataFusion's default
/// (8192) would coalesce ~0.5 GB of screenshots into one batch after a
/// filter or join; 64 keeps an export's memory at a few MB per partition.
pub const IMAGE_BATCH_SIZE: usize = 64;

/// A `SessionConfig` suited to frame data: [`IMAGE_BATCH_SIZE`] rows per
/// batch and `information_schema` on. `register()` works with any config;
/// this one keeps memory bounded when queries move images.
pub fn session_config() -> datafusion::prelude::SessionConfig {
    datafusion::prelude::SessionConfig::new()
        .with_batch_size(IMAGE_BATCH_SIZE)
        .with_information_schema(true)
}

/// Adds the `sessions` and `frames` tables of `store` to `ctx`, registers
/// the store's object store so DataFusion can read its files, and registers
/// the export query's SQL functions ([`crate::sample`]) and the shard formats
/// for `COPY … STORED AS nusomi_parquet | nusomi_arrow | nusomi_jsonl |
/// webdataset` ([`crate::sink`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> nusomi_export::Result<()> {
/// use datafusion::prelude::SessionContext;
/// use nusomi_export::store::SealedStore;
///
/// let store = SealedStore::open("memory://").await?;
/// let ctx = SessionContext::new();
/// nusomi_export::register(&ctx, &store)?;
/// let n = ctx.sql("SELECT count(*) FROM frames").await?.count().await?;
/// assert_eq!(n, 1);
/// # Ok(())
/// # }
/// ```
pub fn register(ctx: &SessionContext, store: &Arc<SealedStore>) -> crate::Result<()> {
    let loc = store.location();
    ctx.register_object_store(loc.url.as_ref(), Arc::clone(&loc.store));
    ctx.register_table("sessions", Arc::new(SessionsTable::new(Arc::clone(store))))?;
    ctx.register_table("frames", Arc::new(FramesTable::new(Arc::clone(store))))?;
    crate::sample::register_udfs(ctx);
    crate::sink::register_copy_formats(ctx)?;
    Ok(())
}
