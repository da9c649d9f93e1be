//! JSON Lines rows: every column as a JSON value, the image as a data URL
//! (step rows: the path of its file under `images/`).

use arrow::array::RecordBatch;
use base64::Engine;
use serde_json::Value;

use super::image_of;
use crate::error::Result;
use crate::sink::row_json::row_object;

/// `{…, "image": "data:image/png;base64,…"}\n`; rows whose `image` is
/// not the image struct (step rows: a path into `images/`, or Qwen's list
/// of paths) as they are.
pub(super) fn line(row: &RecordBatch) -> Result<Vec<u8>> {
    let image_struct = row
        .column_by_name("image")
        .is_some_and(|c| matches!(c.data_type(), arrow::datatypes::DataType::Struct(_)));
    if !image_struct {
        let mut line = serde_json::to_vec(&row_object(row, 0, &[])?)?;
        line.push(b'\n');
        return Ok(line);
    }
    let (bytes, format) = image_of(row)?;
    let mut obj = row_object(row, 0, &["image"])?;
    let mime = crate::store::ImageFormat::of_column(&format).mime();
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    obj.insert(
        "image".into(),
        Value::String(format!("data:{mime};base64,{b64}")),
    );
    let mut line = serde_json::to_vec(&obj)?;
    line.push(b'\n');
    Ok(line)
}
