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
use super::row_schema::{hf_features, image_fields, image_struct};
use crate::error::{Error, Result};
use crate::sample::image_path;
use crate::spec::OutputFormat;
use crate::store::ImageFormat;

/// Converts step rows of one export.
#[derive(Debug)]
pub(super) struct StepOutput {
    format: OutputFormat,
    schema: SchemaRef,
    /// Where the observation goes in the shard rows (`image`); `None` for
    /// Qwen's JSON Lines rows, whose `image` is the chat sample's list.
    image_at: Option<usize>,
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
        let mut image_at = None;
        for f in input.fields() {
            match f.name().as_str() {
                "split" => {}
                "observation" => {
                    let image = match format {
                        OutputFormat::Jsonl if has_image_list => continue,
                        OutputFormat::Jsonl => DataType::Utf8,
                        _ => DataType::Struct(image_fields()),
                    };
                    image_at = Some(fields.len());
                    fields.push(Field::new("image", image, true));
                }
                _ => fields.push(f.as_ref().clone()),
            }
        }
        let hf = json!({"info": {"features": hf_features(&fields)}});
        let metadata =
            std::collections::HashMap::from([("huggingface".to_string(), hf.to_string())]);
        StepOutput {
            format,
            schema: Arc::new(Schema::new_with_metadata(fields, metadata)),
            image_at,
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
        for t in types.iter().flatten() {
            match self.types.get_mut(t) {
                Some(n) => *n += 1,
                None => {
                    self.types.insert(t.to_string(), 1);
                }
            }
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
        let image: ArrayRef = match self.format {
            OutputFormat::Parquet | OutputFormat::Arrow | OutputFormat::Mds => image_struct(
                &(Arc::new(bytes) as ArrayRef),
                &(Arc::new(keys) as ArrayRef),
                &(Arc::new(formats) as ArrayRef),
            )?,
            OutputFormat::Webdataset => {
                let once: BinaryArray = (0..bytes.len())
                    .map(|i| first[i].then(|| bytes.value(i)))
                    .collect();
                image_struct(
                    &(Arc::new(once) as ArrayRef),
                    &(Arc::new(keys) as ArrayRef),
                    &(Arc::new(formats) as ArrayRef),
                )?
            }
            OutputFormat::Jsonl => {
                let mut paths = Vec::with_capacity(keys.len());
                for (i, new) in first.iter().enumerate() {
                    let image = ImageFormat::of_column(formats.value(i));
                    let path = image_path(self.format, keys.value(i), image);
                    if *new {
                        let media = self.media.as_mut().ok_or_else(|| {
                            Error::Internal("a JSON Lines step export without media".into())
                        })?;
                        media.put(&path, bytes.value(i)).await?;
                    }
                    paths.push(path);
                }
                Arc::new(StringArray::from(paths)) as ArrayRef
            }
        };
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for (i, f) in self.schema.fields().iter().enumerate() {
            columns.push(match self.image_at {
                Some(at) if at == i => Arc::clone(&image),
                _ => Arc::clone(column(batch, f.name())?),
            });
        }
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }
}
