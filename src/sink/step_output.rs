//! Step rows (`"unit": "step"`, built by [`crate::sample::StepRows`]) as
//! shard rows: the `observation` bytes become the `image` column, and each
//! frame's image is stored **once** per export:
//!
//! * Parquet and Arrow: `image` is the Hugging Face image struct of the
//!   step's observation (`path` = `{observation_key}.png|jpg`); steps that
//!   act on one frame each carry it, history is keys into the same export;
//! * WebDataset: the first step observing a frame carries its image (the
//!   tar member `{observation_key}.png|jpg`), later ones only the key;
//! * JSON Lines: each observed frame is written once as the file
//!   `images/{observation_key}.png|jpg` ([`MediaWriter`]) and `image` is
//!   that path (Qwen's `qwen_vl` rows keep their `image` list instead).
//!
//! It also counts what the manifest's `steps` section says: distinct
//! observation frames and the canonical action types (`other` = unmapped).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde_json::json;

use super::manifest::StepSection;
use super::media::MediaWriter;
use super::row_schema::{extension, hf_features, image_fields, image_struct};
use crate::error::{Error, Result};
use crate::sample::IMAGES_FOLDER;
use crate::spec::OutputFormat;

/// Converts step rows of one export.
#[derive(Debug)]
pub(super) struct StepOutput {
    format: OutputFormat,
    schema: SchemaRef,
    /// The observation frame the previous row's image was stored for.
    last_image: Option<String>,
    /// Image files (JSON Lines).
    pub(super) media: Option<MediaWriter>,
    observations: u64,
    types: BTreeMap<String, u64>,
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| Error::Rows(format!("a step row lacks column `{name}`")))
}

impl StepOutput {
    /// A converter of step rows of `input` into `format` shard rows;
    /// `media` writes the image files of a JSON Lines export.
    pub(super) fn new(format: OutputFormat, input: &Schema, media: Option<MediaWriter>) -> Self {
        let has_image_list = input.field_with_name("image").is_ok();
        let mut fields: Vec<Field> = Vec::new();
        for f in input.fields() {
            match f.name().as_str() {
                "split" => {}
                "observation" => match format {
                    OutputFormat::Jsonl if has_image_list => {}
                    OutputFormat::Jsonl => fields.push(Field::new("image", DataType::Utf8, true)),
                    _ => fields.push(Field::new("image", DataType::Struct(image_fields()), true)),
                },
                _ => fields.push(f.as_ref().clone()),
            }
        }
        let hf = json!({"info": {"features": hf_features(&fields)}});
        let metadata =
            std::collections::HashMap::from([("huggingface".to_string(), hf.to_string())]);
        StepOutput {
            format,
            schema: Arc::new(Schema::new_with_metadata(fields, metadata)),
            last_image: None,
            media,
            observations: 0,
            types: BTreeMap::new(),
        }
    }

    /// The schema of the shard rows.
    pub(super) fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The manifest's `steps` section for what was converted.
    pub(super) fn section(&self) -> StepSection {
        StepSection {
            observations: self.observations,
            unmapped: self.types.get("other").copied().unwrap_or(0),
            types: self.types.clone(),
        }
    }

    /// `batch` (step rows, in export order) as shard rows.
    pub(super) async fn convert(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let keys = column(batch, "observation_key")?.as_string::<i32>().clone();
        let bytes = column(batch, "observation")?.as_binary::<i32>().clone();
        let formats = column(batch, "image_format")?.as_string::<i32>().clone();
        let action = column(batch, "action")?.as_struct();
        let types = action.column(0).as_string::<i32>();
        for i in 0..types.len() {
            *self.types.entry(types.value(i).to_string()).or_default() += 1;
        }
        // Whether row i is the first to observe its frame.
        let mut first = Vec::with_capacity(keys.len());
        for i in 0..keys.len() {
            let key = keys.value(i);
            let new = self.last_image.as_deref() != Some(key);
            if new {
                self.observations += 1;
                self.last_image = Some(key.to_string());
            }
            first.push(new);
        }
        let image: Option<ArrayRef> = match self.format {
            OutputFormat::Parquet | OutputFormat::Arrow => Some(image_struct(
                &(Arc::new(bytes) as ArrayRef),
                &(Arc::new(keys) as ArrayRef),
                &(Arc::new(formats) as ArrayRef),
            )?),
            OutputFormat::Webdataset => {
                let once: BinaryArray = (0..bytes.len())
                    .map(|i| first[i].then(|| bytes.value(i)))
                    .collect();
                Some(image_struct(
                    &(Arc::new(once) as ArrayRef),
                    &(Arc::new(keys) as ArrayRef),
                    &(Arc::new(formats) as ArrayRef),
                )?)
            }
            OutputFormat::Jsonl => {
                let mut paths = Vec::with_capacity(keys.len());
                for (i, new) in first.iter().enumerate() {
                    let path = format!(
                        "{IMAGES_FOLDER}/{}.{}",
                        keys.value(i),
                        extension(formats.value(i))
                    );
                    if *new {
                        let media = self.media.as_mut().ok_or_else(|| {
                            Error::Internal("a JSON Lines step export without media".into())
                        })?;
                        media.put(&path, bytes.value(i)).await?;
                    }
                    paths.push(path);
                }
                Some(Arc::new(StringArray::from(paths)) as ArrayRef)
            }
        };
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        let mut image = image;
        for f in self.schema.fields() {
            let c = if f.name() == "image" && f.data_type() != &DataType::List(list_item()) {
                image
                    .take()
                    .ok_or_else(|| Error::Internal("image column twice".into()))?
            } else {
                Arc::clone(column(batch, f.name())?)
            };
            columns.push(c);
        }
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }
}

fn list_item() -> arrow::datatypes::FieldRef {
    Arc::new(Field::new("item", DataType::Utf8, true))
}
