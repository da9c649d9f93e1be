//! Printing query results: an aligned table (binary cells shown by size), a
//! JSON array of row objects (binary as base64), or CSV (nested values as
//! JSON text, binary as base64).

use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use base64::Engine;
use serde_json::Value;

use crate::error::{Error, Result};

/// How `nusomi sql` prints rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned text table.
    Table,
    /// One JSON array of row objects.
    Json,
    /// CSV with a header line.
    Csv,
}

/// Writes `batches` to `out` in `format`.
pub(super) fn write_batches(
    out: &mut impl Write,
    batches: &[RecordBatch],
    format: OutputFormat,
) -> Result<()> {
    let io = |e| Error::io("<stdout>", e);
    match format {
        OutputFormat::Table => {
            let shown: Vec<RecordBatch> = batches
                .iter()
                .map(|b| map_binary(b, |bytes| format!("<{} bytes>", bytes.len())))
                .collect::<Result<_>>()?;
            let table = arrow::util::pretty::pretty_format_batches(&shown)?;
            writeln!(out, "{table}").map_err(io)?;
        }
        OutputFormat::Json => {
            let rows = json_rows(batches)?;
            serde_json::to_writer(&mut *out, &rows).map_err(|e| Error::io("<stdout>", e.into()))?;
            writeln!(out).map_err(io)?;
        }
        OutputFormat::Csv => {
            let Some(first) = batches.first() else {
                return Ok(());
            };
            let names: Vec<&str> = first
                .schema_ref()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            let mut w = csv_line(names.iter().map(|n| n.to_string()));
            for row in json_rows(batches)? {
                let cells = names.iter().map(|n| match &row[*n] {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                w.push_str(&csv_line(cells));
            }
            out.write_all(w.as_bytes()).map_err(io)?;
        }
    }
    Ok(())
}

fn csv_line(cells: impl Iterator<Item = String>) -> String {
    let quoted: Vec<String> = cells
        .map(|c| {
            if c.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c
            }
        })
        .collect();
    quoted.join(",") + "\n"
}

/// Rows as JSON objects, binary cells base64-encoded.
pub(super) fn json_rows(batches: &[RecordBatch]) -> Result<Vec<Value>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut buf = Vec::new();
    {
        let mut writer = arrow::json::ArrayWriter::new(&mut buf);
        for batch in batches {
            writer.write(&map_binary(batch, |bytes| b64.encode(bytes))?)?;
        }
        writer.finish()?;
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Value> =
        serde_json::from_slice(&buf).map_err(|e| Error::io("<json>", e.into()))?;
    // arrow's writer omits null fields; put them back so every row has every column.
    let names: Vec<String> = batches
        .first()
        .map(|b| {
            b.schema_ref()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        })
        .unwrap_or_default();
    Ok(rows
        .into_iter()
        .map(|mut row| {
            if let Value::Object(map) = &mut row {
                for n in &names {
                    map.entry(n.clone()).or_insert(Value::Null);
                }
            }
            row
        })
        .collect())
}

/// Replaces top-level binary columns by strings made from their bytes.
fn map_binary(batch: &RecordBatch, f: impl Fn(&[u8]) -> String) -> Result<RecordBatch> {
    let schema = batch.schema();
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (field, col) in schema.fields().iter().zip(batch.columns()) {
        let bytes: Option<Vec<Option<String>>> = match col.data_type() {
            DataType::Binary => Some(col.as_binary::<i32>().iter().map(|v| v.map(&f)).collect()),
            DataType::LargeBinary => {
                Some(col.as_binary::<i64>().iter().map(|v| v.map(&f)).collect())
            }
            DataType::BinaryView => Some(col.as_binary_view().iter().map(|v| v.map(&f)).collect()),
            _ => None,
        };
        match bytes {
            Some(values) => {
                fields.push(Field::new(
                    field.name(),
                    DataType::Utf8,
                    col.null_count() > 0 || field.is_nullable(),
                ));
                columns.push(Arc::new(StringArray::from(values)));
            }
            None => {
                fields.push(field.as_ref().clone());
                columns.push(Arc::clone(col));
            }
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}
