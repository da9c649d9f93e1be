//! Arrow schemas of the two store tables, `sessions` and `frames` (SPEC §3),
//! and the column names other modules refer to. The Parquet files in the
//! store carry exactly these schemas.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Time zone of every timestamp column.
pub(super) const UTC: &str = "UTC";

/// `Timestamp(µs, UTC)`.
pub(super) fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
}

/// `List<Utf8>` as used by `tags` and `paths`.
pub(super) fn string_list_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// The fields of one event: `{t_ms, type, action, data}`, `data` as JSON text.
pub(super) fn event_fields() -> Fields {
    Fields::from(vec![
        Field::new("t_ms", DataType::Int64, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("action", DataType::Boolean, false),
        Field::new("data", DataType::Utf8, true),
    ])
}

/// `List<Struct{t_ms, type, action, data}>`.
pub(crate) fn event_list_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(event_fields()),
        true,
    )))
}

static SESSIONS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("session_id", DataType::Utf8, false),
        Field::new("workflow", DataType::Utf8, false),
        Field::new("outcome", DataType::Utf8, false),
        Field::new("actor_kind", DataType::Utf8, false),
        Field::new("actor_id", DataType::Utf8, true),
        Field::new("started_at", timestamp_type(), false),
        Field::new("ended_at", timestamp_type(), false),
        Field::new("duration_ms", DataType::Int64, false),
        Field::new("tags", string_list_type(), false),
        Field::new("paths", string_list_type(), false),
        Field::new("frame_count", DataType::Int64, false),
        Field::new("event_count", DataType::Int64, false),
        Field::new("action_count", DataType::Int64, false),
        Field::new("sealed_at", timestamp_type(), false),
        Field::new("seal", DataType::Utf8, false),
        Field::new("instruction", DataType::Utf8, true),
    ]))
});

static FRAMES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("session_id", DataType::Utf8, false),
        Field::new("frame_idx", DataType::Int64, false),
        Field::new("t_ms", DataType::Int64, false),
        Field::new("image", DataType::Binary, false),
        Field::new("image_format", DataType::Utf8, false),
        Field::new("width", DataType::Int32, false),
        Field::new("height", DataType::Int32, false),
        Field::new("is_keyframe", DataType::Boolean, false),
        Field::new("is_event_frame", DataType::Boolean, false),
        Field::new("is_action_frame", DataType::Boolean, false),
        Field::new("events", event_list_type(), false),
        Field::new("prev_t_ms", DataType::Int64, true),
        Field::new("dhash", DataType::Int64, false),
        Field::new("hash_distance", DataType::Int32, true),
        Field::new("workflow", DataType::Utf8, false),
        Field::new("started_at", timestamp_type(), false),
    ]))
});

/// Schema of the `sessions` table: one row per sealed session.
pub fn sessions_schema() -> SchemaRef {
    Arc::clone(&SESSIONS)
}

/// Schema of the `frames` table: one row per captured frame. Besides the
/// SPEC §3 columns it carries `prev_t_ms`, `dhash` and `hash_distance` (what
/// the sampling functions test per row) and the session's `workflow` and
/// `started_at`, constant per file, so filters on them prune frame files.
pub fn frames_schema() -> SchemaRef {
    Arc::clone(&FRAMES)
}

static FRAMES_FILE: LazyLock<SchemaRef> = LazyLock::new(|| {
    let table = frames_schema();
    let (image, rest): (Vec<_>, Vec<_>) = table
        .fields()
        .iter()
        .cloned()
        .partition(|f| f.name() == "image");
    Arc::new(Schema::new([image, rest].concat()))
});

/// Column order inside frames Parquet files: the `frames` columns with
/// `image` first, so the small columns of a row group are contiguous and sit
/// right before the footer: a scan without `image` fetches the footer and
/// those columns and never image bytes, even when the object store coalesces
/// nearby ranges. Readers match columns by name.
pub(super) fn frames_file_schema() -> SchemaRef {
    Arc::clone(&FRAMES_FILE)
}

/// Column names of `frames` that hold one value per session, so a filter on
/// them alone decides whole frame files.
pub(super) const FRAMES_SESSION_COLUMNS: [&str; 3] = ["session_id", "workflow", "started_at"];

/// A session row of a store sealed before `instruction` existed, with a
/// null `instruction` appended (the column is last and nullable); rows of
/// today's schema as they are.
pub(super) fn with_instruction(
    batch: arrow::array::RecordBatch,
) -> crate::error::Result<arrow::array::RecordBatch> {
    let schema = sessions_schema();
    if batch.num_columns() + 1 != schema.fields().len() {
        return Ok(batch);
    }
    let mut columns = batch.columns().to_vec();
    columns.push(arrow::array::new_null_array(
        &arrow::datatypes::DataType::Utf8,
        batch.num_rows(),
    ));
    Ok(arrow::array::RecordBatch::try_new(schema, columns)?)
}
