//! Shard sinks: from an ordered stream of export rows to a finished export.
//! [`ExportWriter`] (`publish.rs`) runs it: the sharder ([`ShardedWriter`])
//! rolls shards at `shard_size_bytes`, each written by its format's
//! `ShardFile` (`format/`) into a [`HashingWriter`] that hashes the bytes
//! and streams them to an upload (`upload.rs`) or, on resume, compares them
//! with what is already there (`existing.rs`); the manifest (`manifest.rs`)
//! is written last, after each series' loader index (`loader_index.rs`:
//! MDS `index.json`, WebDataset `wids.json`). [`ExportLayout`] names every file; `row_schema.rs` and
//! `row_json.rs` give the output columns and their JSON form.

mod attempts;
mod existing;
mod export_location;
mod format;
mod hashing;
mod layout;
mod lease;
mod loader_index;
mod manifest;
mod media;
mod partition_sink;
mod publish;
mod read;
mod row_json;
mod row_schema;
mod shard_rows;
mod sharded;
mod step_output;
mod upload;
mod verify;

pub(crate) use attempts::purge_unpublished;
pub use export_location::{open_export_location, verify_location};
pub(crate) use format::read_samples as mds_samples;
pub use hashing::{HashingWriter, ShardDone};
pub use layout::ExportLayout;
pub use manifest::{
    shards_digest, ImageFiles, Manifest, Selection, SelectionBuilder, ShardInfo, SplitSection,
    StepSection,
};
pub use partition_sink::{PartitionSink, PartitionWritten, StepsWritten};
pub use publish::{Begin, Begun, ExportMeta, ExportWriter};
pub(crate) use read::{bytes_if_any, MANIFEST_LIMIT};
pub use row_schema::{output_schema, to_output_batch};
pub(crate) use shard_rows::tar_members;
pub use shard_rows::{session_changes, shard_rows, RowDigest};
pub use sharded::{Progress, ShardTotals, ShardedWriter};
pub use verify::{read_manifest, verify, verify_link, Mismatch, Verification};
