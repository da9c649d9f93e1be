//! The sealed session store: validating recording bundles, sealing them into
//! Parquet on any `object_store` location, and the `sessions` and `frames`
//! table providers over it. Registering them with a `SessionContext` is the
//! engine's job (`crate::engine`), which this layer never imports.

mod bundle;
mod bundle_actor;
mod bundle_reader;
mod catalog;
mod counting;
mod frame_batch;
mod frame_image;
mod layout;
mod location;
mod log_actions;
mod logged_files;
mod maintenance;
mod optimize;
mod pack;
mod pruning;
mod scan_files;
mod schema;
mod seal;
mod sealed_store;
mod sessions_pack;
mod table;
mod writer_props;

pub use crate::error::BundleError;
pub(crate) use bundle::symlink_on_path;
pub use bundle::{
    is_valid_session_id, ActorKind, Bundle, BundleLimits, Event, Frame, Outcome, SessionMeta,
    MAX_ELEMENT_TEXT_BYTES, MAX_INSTRUCTION_BYTES, MAX_THOUGHT_BYTES,
};
pub(crate) use bundle_reader::json_type_name;
pub use counting::{request_counts, COUNT_REQUESTS_ENV};
pub use frame_image::{dhash, hash_distance, FrameImage, ImageFormat, KEYFRAME_HASH_DISTANCE};
pub use location::StoreLocation;
pub(crate) use location::{local_folder, relative_key};
pub use maintenance::{MigrateSummary, VacuumSummary, ORPHAN_GRACE_HOURS};
pub use optimize::{OptimizeSummary, DEFAULT_PACK_BYTES};
pub(crate) use schema::event_list_type;
pub use schema::{frames_schema, sessions_schema};
pub use seal::{SealOptions, SealOutcome, SealSummary, STALE_CLAIM};
pub use sealed_store::{SealedStore, SessionRecord, Snapshot, StoreVersion};
pub use table::{FramesTable, SessionsTable};
pub(crate) use writer_props::image_parquet_props;
