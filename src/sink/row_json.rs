//! One output row as a JSON object, for JSONL shards and WebDataset `.json`
//! members: strings, numbers and booleans as such, `started_at` as RFC 3339,
//! lists as arrays, events as objects with `data` parsed back into JSON.
//! Keys are sorted, so the bytes are stable.

use arrow::array::{Array, AsArray, RecordBatch, StructArray};
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::spec::format_instant;

/// Columns of `batch` (output schema) at `row` as a JSON object, leaving out
/// `skip`.
pub(super) fn row_object(
    batch: &RecordBatch,
    row: usize,
    skip: &[&str],
) -> Result<Map<String, Value>> {
    let mut obj = Map::new();
    for (f, col) in batch.schema().fields().iter().zip(batch.columns()) {
        if skip.contains(&f.name().as_str()) {
            continue;
        }
        obj.insert(f.name().clone(), value(col.as_ref(), row)?);
    }
    Ok(obj)
}

fn value(col: &dyn Array, i: usize) -> Result<Value> {
    if col.is_null(i) {
        return Ok(Value::Null);
    }
    Ok(match col.data_type() {
        DataType::Utf8 => Value::String(col.as_string::<i32>().value(i).to_string()),
        DataType::Int64 => Value::from(col.as_primitive::<Int64Type>().value(i)),
        DataType::Int32 => Value::from(col.as_primitive::<Int32Type>().value(i)),
        DataType::Float64 => Value::from(col.as_primitive::<Float64Type>().value(i)),
        DataType::Boolean => Value::Bool(col.as_boolean().value(i)),
        DataType::Timestamp(_, _) => {
            let us = col.as_primitive::<TimestampMicrosecondType>().value(i);
            chrono::DateTime::from_timestamp_micros(us)
                .map(|t| Value::String(format_instant(t)))
                .unwrap_or(Value::Null)
        }
        DataType::List(_) => {
            let list = col.as_list::<i32>().value(i);
            Value::Array(
                (0..list.len())
                    .map(|j| value(list.as_ref(), j))
                    .collect::<Result<_>>()?,
            )
        }
        DataType::Struct(_) => {
            let s: &StructArray = col.as_struct();
            let mut obj = Map::new();
            for (f, c) in s.fields().iter().zip(s.columns()) {
                let mut v = value(c.as_ref(), i)?;
                if f.name() == "data" {
                    if let Value::String(text) = &v {
                        v = serde_json::from_str(text).unwrap_or(v);
                    }
                }
                obj.insert(f.name().clone(), v);
            }
            Value::Object(obj)
        }
        other => return Err(Error::Rows(format!("no JSON form for column type {other}"))),
    })
}
