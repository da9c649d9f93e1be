//! The export row (SPEC §5) as written to shards. The export query returns
//! `image` as plain bytes; Parquet and Arrow shards carry it as the Hugging
//! Face image struct `struct<bytes: binary, path: string>` (path
//! `{key}.png|jpg`), with the `huggingface` schema metadata describing every
//! column, so `datasets.load_dataset("parquet", …)` yields a PIL image
//! without a cast. No view types, ever.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, StructArray};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::store::{event_list_type, sessions_schema, ImageFormat};

/// Fields of the image struct.
pub(super) fn image_fields() -> Fields {
    Fields::from(vec![
        Field::new("bytes", DataType::Binary, true),
        Field::new("path", DataType::Utf8, true),
    ])
}

fn field(name: &str, dt: DataType, nullable: bool) -> Field {
    Field::new(name, dt, nullable)
}

static OUTPUT: LazyLock<SchemaRef> = LazyLock::new(|| {
    let s = sessions_schema();
    let from_sessions = |name: &str| {
        s.field_with_name(name)
            .map(|f| f.clone().with_nullable(true))
    };
    let list_of_strings = from_sessions("tags")
        .map(|f| f.data_type().clone())
        .unwrap_or(DataType::Null);
    let ts = from_sessions("started_at")
        .map(|f| f.data_type().clone())
        .unwrap_or(DataType::Null);
    let fields = vec![
        field("key", DataType::Utf8, true),
        field("session_id", DataType::Utf8, true),
        field("workflow", DataType::Utf8, true),
        field("outcome", DataType::Utf8, true),
        field("actor_kind", DataType::Utf8, true),
        field("actor_id", DataType::Utf8, true),
        field("started_at", ts, true),
        field("tags", list_of_strings.clone(), true),
        field("paths", list_of_strings, true),
        field("frame_idx", DataType::Int64, true),
        field("t_ms", DataType::Int64, true),
        field("image", DataType::Struct(image_fields()), true),
        field("image_format", DataType::Utf8, true),
        field("width", DataType::Int32, true),
        field("height", DataType::Int32, true),
        field("is_keyframe", DataType::Boolean, true),
        field("events", event_list_type(), true),
        field("actions", event_list_type(), true),
    ];
    let hf = json!({"info": {"features": hf_features(&fields)}});
    let metadata = HashMap::from([("huggingface".to_string(), hf.to_string())]);
    Arc::new(Schema::new_with_metadata(fields, metadata))
});

/// Schema of Parquet and Arrow shards (all columns nullable, as readers
/// expect of dataset files).
pub fn output_schema() -> SchemaRef {
    Arc::clone(&OUTPUT)
}

/// Hugging Face `Features` for the output columns.
pub(super) fn hf_features(fields: &[Field]) -> Value {
    let mut map = serde_json::Map::new();
    for f in fields {
        let feature = if f.name() == "image" {
            json!({"_type": "Image"})
        } else {
            hf_type(f.data_type())
        };
        map.insert(f.name().clone(), feature);
    }
    Value::Object(map)
}

fn hf_type(dt: &DataType) -> Value {
    match dt {
        DataType::Utf8 => json!({"dtype": "string", "_type": "Value"}),
        DataType::Int64 => json!({"dtype": "int64", "_type": "Value"}),
        DataType::Int32 => json!({"dtype": "int32", "_type": "Value"}),
        DataType::Float64 => json!({"dtype": "float64", "_type": "Value"}),
        DataType::Boolean => json!({"dtype": "bool", "_type": "Value"}),
        DataType::Binary => json!({"dtype": "binary", "_type": "Value"}),
        DataType::Timestamp(_, Some(tz)) => {
            json!({"dtype": format!("timestamp[us, tz={tz}]"), "_type": "Value"})
        }
        DataType::Timestamp(_, None) => json!({"dtype": "timestamp[us]", "_type": "Value"}),
        DataType::List(item) => json!({"feature": hf_type(item.data_type()), "_type": "List"}),
        DataType::Struct(fields) => Value::Object(
            fields
                .iter()
                .map(|f| (f.name().clone(), hf_type(f.data_type())))
                .collect(),
        ),
        _ => json!({"dtype": "null", "_type": "Value"}),
    }
}

/// Converts a batch of the export query (image as bytes) into the output
/// schema (image as `{bytes, path}`), checking every column is there.
pub fn to_output_batch(batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = output_schema();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| Error::Rows(format!("the export query result lacks column `{name}`")))
    };
    for f in schema.fields() {
        let c = col(f.name())?;
        let c = if f.name() == "image" {
            image_struct(&c, &col("key")?, &col("image_format")?)?
        } else {
            arrow::compute::cast(&c, f.data_type())?
        };
        columns.push(c);
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

pub(super) fn image_struct(
    image: &ArrayRef,
    key: &ArrayRef,
    format: &ArrayRef,
) -> Result<ArrayRef> {
    let bytes = arrow::compute::cast(image, &DataType::Binary)?;
    let (key, format) = (
        arrow::compute::cast(key, &DataType::Utf8)?,
        arrow::compute::cast(format, &DataType::Utf8)?,
    );
    let (key, format) = (key.as_string::<i32>(), format.as_string::<i32>());
    let paths: StringArray = (0..key.len())
        .map(|i| {
            (key.is_valid(i) && format.is_valid(i)).then(|| {
                format!(
                    "{}.{}",
                    key.value(i),
                    ImageFormat::of_column(format.value(i)).extension()
                )
            })
        })
        .collect();
    Ok(Arc::new(StructArray::try_new(
        image_fields(),
        vec![bytes, Arc::new(paths)],
        None,
    )?))
}

/// A shard schema as the manifest records it: `[{name, type, nullable}]`.
pub(super) fn schema_json(schema: &Schema) -> Value {
    Value::Array(
        schema
            .fields()
            .iter()
            .map(|f| json!({"name": f.name(), "type": f.data_type().to_string(), "nullable": f.is_nullable()}))
            .collect(),
    )
}
