//! Shard sinks: the output row schema, one streaming writer per format
//! (Parquet, Arrow IPC, JSONL, WebDataset), the sharder that rolls shards at
//! `shard_size_bytes` while hashing them, and the manifest.

mod copy_format;
mod formats;
mod hashing;
mod manifest;
mod publish;
mod row_json;
mod row_schema;
mod sharded;

pub use copy_format::{
    copy_format_name, register_copy_formats, ShardFileFormat, ShardFormatFactory, WriteShards,
};
pub use formats::{
    open_shard, row_value_bytes, shard_extension, ShardFile, PARQUET_ROW_GROUP_ROWS,
};
pub use hashing::{HashingWriter, ShardDone};
pub use manifest::{dataset_card, shards_digest, Manifest, ShardInfo};
pub use publish::{objects_under, write_export, ExportMeta, ExportOutput, ShardLinks};
pub use row_json::row_object;
pub use row_schema::{extension, image_fields, output_schema, schema_json, to_output_batch};
pub use sharded::{Progress, ShardTotals, ShardedWriter};
