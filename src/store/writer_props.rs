//! Parquet writer settings: the store's frames files and Parquet export
//! shards share one setting for the image column, and every footer carries
//! the fixed [`CREATED_BY`] so bytes are stable.

use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

/// A frames row group is closed at this many frames (or at 64 MB).
pub(crate) const ROW_GROUP_FRAMES: usize = 256;

/// A frames row group is closed once it holds this many encoded bytes (or
/// [`ROW_GROUP_FRAMES`] frames).
pub(super) const ROW_GROUP_BYTES: usize = 64 << 20;

/// `created_by` written into every Parquet footer (fixed so bytes are stable).
pub(super) const CREATED_BY: &str = "nusomi-export";

/// Parquet writer settings shared by the store's frames files and Parquet
/// export shards: fixed `created_by` (stable bytes), Snappy for the small
/// columns, and the image column (at `image`) stored as is — already
/// compressed, so no compression, dictionary or statistics — with at most
/// `max_rows` rows per row group.
pub(crate) fn image_parquet_props(image: ColumnPath, max_rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_created_by(CREATED_BY.to_string())
        .set_compression(Compression::SNAPPY)
        .set_column_compression(image.clone(), Compression::UNCOMPRESSED)
        .set_column_dictionary_enabled(image.clone(), false)
        .set_column_statistics_enabled(image, EnabledStatistics::None)
        .set_max_row_group_row_count(Some(max_rows))
        .build()
}

pub(crate) fn frames_writer_props() -> WriterProperties {
    image_parquet_props(ColumnPath::from("image"), ROW_GROUP_FRAMES)
}
