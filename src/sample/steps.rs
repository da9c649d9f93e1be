//! `"unit": "step"`: [`StepRows`] turns the ordered action frames of the
//! selected sessions into one row per action event, in (`session_id`,
//! `t_ms`, event order) order — the frames arrive by (`session_id`,
//! `frame_idx`), an event belongs to the latest frame at or before it
//! (SPEC §2), so that frame is the step's **observation**.
//!
//! Per step: `key` (`{session_id}_s{step:06}`), `step` (from 0 per
//! session), the session's columns and `instruction`, the observation
//! (`observation_key`, `frame_idx`, `frame_t_ms`, its image — resized for
//! `smart_resize` — `width`/`height` of the original and
//! `image_width`/`image_height` of the stored image), the canonical
//! `action` in the spec's coordinates, `action_pixels` (original pixels),
//! `action_text`, the raw `event`, and the history: the previous N actions
//! as text and the keys of the previous M observation frames that the
//! spec's frame sampling keeps (`sampled`). With `messages`, a chat sample
//! (`messages` + `images`, or `conversations` + `images`; `image` in
//! JSONL for `qwen_vl`). History restarts at every session.
//!
//! Memory: the state of one session (≤ 64 action texts, ≤ 16 keys) and
//! the batch at hand.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float64Builder, Int32Builder,
    Int64Builder, ListArray, ListBuilder, RecordBatch, StringArray, StringBuilder, StructArray,
    UInt32Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Fields, Int32Type, Int64Type, Schema, SchemaRef};
use serde_json::Value;

use super::action::{Action, Convert, Finish};
use super::actor::{self, Target};
use super::chat::{self, Chat, ChatInput, ChatStep};
use crate::error::{Error, Result};
use crate::spec::{ChatPreset, Coordinates, OutputFormat, StepUnit};
use crate::store::ImageFormat;

/// Where JSONL step exports keep the observation images.
pub const IMAGES_FOLDER: &str = "images";

/// How a step export names frame `key`'s image (format `image`): the file
/// `images/{key}.png|jpg` beside a JSON Lines export's shards, else the
/// name `{key}.png|jpg` (a WebDataset member, a Parquet/Arrow image path).
pub fn image_path(format: OutputFormat, key: &str, image: ImageFormat) -> String {
    if format == OutputFormat::Jsonl {
        format!("{IMAGES_FOLDER}/{key}.{}", image.extension())
    } else {
        format!("{key}.{}", image.extension())
    }
}

/// Input columns taken over as they are (session and frame columns).
const TAKEN: [&str; 10] = [
    "session_id",
    "workflow",
    "outcome",
    "actor_kind",
    "actor_id",
    "started_at",
    "tags",
    "paths",
    "instruction",
    "image_format",
];

/// Builds step rows from frame rows.
#[derive(Debug)]
pub struct StepRows {
    unit: StepUnit,
    format: OutputFormat,
    input: SchemaRef,
    output: SchemaRef,
    /// The session being read.
    session: Option<String>,
    step: i64,
    /// The previous steps of the history window.
    actions: VecDeque<ChatStep>,
    /// (key, image format) of previous sampled observation frames.
    frames: VecDeque<(String, ImageFormat)>,
}

fn utf8_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

fn turn_list(a: &str, b: &str, loss: bool) -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(turn_fields(a, b, loss)),
        true,
    )))
}

/// A chat turn's fields: speaker, text and, with `messages.loss`, `loss`.
fn turn_fields(a: &str, b: &str, loss: bool) -> Fields {
    let mut f = vec![
        Field::new(a, DataType::Utf8, true),
        Field::new(b, DataType::Utf8, true),
    ];
    if loss {
        f.push(Field::new("loss", DataType::Boolean, true));
    }
    Fields::from(f)
}

/// The speaker and text field names of a preset's turns.
fn turn_names(preset: ChatPreset) -> (&'static str, &'static str, &'static str) {
    match preset {
        ChatPreset::QwenVl => ("conversations", "from", "value"),
        _ => ("messages", "role", "content"),
    }
}

fn bbox_fields(coords: Coordinates) -> Fields {
    let c = if coords.is_fraction() {
        DataType::Float64
    } else {
        DataType::Int64
    };
    Fields::from(
        ["x1", "y1", "x2", "y2"]
            .map(|n| Field::new(n, c.clone(), true))
            .to_vec(),
    )
}

fn action_fields(coords: Coordinates) -> Fields {
    let c = if coords.is_fraction() {
        DataType::Float64
    } else {
        DataType::Int64
    };
    Fields::from(vec![
        Field::new("type", DataType::Utf8, true),
        Field::new("x", c.clone(), true),
        Field::new("y", c.clone(), true),
        Field::new("x2", c.clone(), true),
        Field::new("y2", c, true),
        Field::new("text", DataType::Utf8, true),
        Field::new("keys", utf8_list(), true),
        Field::new("direction", DataType::Utf8, true),
        Field::new("amount", DataType::Int64, true),
        Field::new("raw", DataType::Utf8, true),
    ])
}

fn pixel_fields() -> Fields {
    Fields::from(
        ["x", "y", "x2", "y2"]
            .map(|n| Field::new(n, DataType::Int64, true))
            .to_vec(),
    )
}

/// The coordinate conversion of frame `key`, or why it cannot be made.
fn frame_convert(unit: &StepUnit, w: u32, h: u32, key: &str) -> Result<Convert> {
    Convert::resized(unit.coordinates, unit.resize, w, h).map_err(|message| Error::Frame {
        key: key.to_string(),
        message: format!("{message} (a `smart_resize` refuses it, as qwen_vl_utils does)"),
    })
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| Error::Rows(format!("the step query result lacks column `{name}`")))
}

impl StepRows {
    /// A builder of `unit` step rows for a `format` export from frame rows
    /// of `input` (the step query's schema).
    pub fn new(unit: StepUnit, format: OutputFormat, input: SchemaRef) -> Result<Self> {
        let field = |name: &str| {
            input
                .field_with_name(name)
                .map(|f| f.clone().with_nullable(true))
                .map_err(|_| Error::Rows(format!("the step query result lacks column `{name}`")))
        };
        let int = |n: &str, t: DataType| Field::new(n, t, true);
        let mut fields = vec![int("key", DataType::Utf8)];
        for name in &TAKEN[..9] {
            fields.push(field(name)?);
        }
        fields.extend([
            int("step", DataType::Int64),
            int("t_ms", DataType::Int64),
            int("observation_key", DataType::Utf8),
            int("frame_idx", DataType::Int64),
            int("frame_t_ms", DataType::Int64),
            int("observation", DataType::Binary),
            field("image_format")?,
            int("width", DataType::Int32),
            int("height", DataType::Int32),
            int("image_width", DataType::Int32),
            int("image_height", DataType::Int32),
            int("action", DataType::Struct(action_fields(unit.coordinates))),
            int("action_pixels", DataType::Struct(pixel_fields())),
            int("action_text", DataType::Utf8),
            int("thought", DataType::Utf8),
            int(
                "target_bbox",
                DataType::Struct(bbox_fields(unit.coordinates)),
            ),
            int("target_role", DataType::Utf8),
            int("target_name", DataType::Utf8),
        ]);
        let events = field("events")?;
        let event = match events.data_type() {
            DataType::List(item) => item.data_type().clone(),
            other => return Err(Error::Rows(format!("`events` is {other}, not a list"))),
        };
        fields.push(int("event", event));
        fields.push(int("history_actions", utf8_list()));
        fields.push(int("history_keys", utf8_list()));
        if let Some(m) = &unit.messages {
            let (column, a, b) = turn_names(m.preset);
            fields.push(int(column, turn_list(a, b, m.loss.is_some())));
            fields.push(int(Self::images_column(&unit, format), utf8_list()));
        }
        if input.field_with_name("split").is_ok() {
            fields.push(field("split")?);
        }
        Ok(StepRows {
            unit,
            format,
            input,
            output: Arc::new(Schema::new(fields)),
            session: None,
            step: 0,
            actions: VecDeque::new(),
            frames: VecDeque::new(),
        })
    }

    /// The chat sample's image list column: `image` for `qwen_vl` in JSON
    /// Lines (where the observation goes to `images/` as a file and Qwen's
    /// scripts read `image`), else `images`.
    fn images_column(unit: &StepUnit, format: OutputFormat) -> &'static str {
        match &unit.messages {
            Some(m) if m.preset == ChatPreset::QwenVl && format == OutputFormat::Jsonl => "image",
            _ => "images",
        }
    }

    /// The schema of the rows [`StepRows::push`] returns.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.output)
    }

    /// The step rows of one batch of frame rows (action frames of the
    /// selected sessions in (`session_id`, `frame_idx`) order).
    pub fn push(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let sessions = column(batch, "session_id")?.as_string::<i32>();
        let keys = column(batch, "key")?.as_string::<i32>();
        let frame_idx = column(batch, "frame_idx")?.as_primitive::<Int64Type>();
        let t_ms = column(batch, "t_ms")?.as_primitive::<Int64Type>();
        let formats = column(batch, "image_format")?.as_string::<i32>();
        let widths = column(batch, "width")?.as_primitive::<Int32Type>();
        let heights = column(batch, "height")?.as_primitive::<Int32Type>();
        let workflows = column(batch, "workflow")?.as_string::<i32>();
        let instructions = column(batch, "instruction")?.as_string::<i32>();
        let outcomes = column(batch, "outcome")?.as_string::<i32>();
        let sampled: &BooleanArray = column(batch, "sampled")?.as_boolean();
        let events = column(batch, "events")?.as_list::<i32>();
        let ev = events.values().as_struct();
        let ev_t = ev
            .column_by_name("t_ms")
            .ok_or_else(|| Error::Rows("events lack t_ms".into()))?
            .as_primitive::<Int64Type>();
        let ev_type = ev
            .column_by_name("type")
            .ok_or_else(|| Error::Rows("events lack type".into()))?
            .as_string::<i32>();
        let ev_action = ev
            .column_by_name("action")
            .ok_or_else(|| Error::Rows("events lack action".into()))?
            .as_boolean();
        let ev_data = ev
            .column_by_name("data")
            .ok_or_else(|| Error::Rows("events lack data".into()))?
            .as_string::<i32>();

        let resized = self.resized_observations(batch)?;
        let mut out = Out::new(&self.unit);
        for r in 0..batch.num_rows() {
            let session = sessions.value(r);
            if self.session.as_deref() != Some(session) {
                self.session = Some(session.to_string());
                self.step = 0;
                self.actions.clear();
                self.frames.clear();
            }
            let (w, h) = (
                widths.value(r).max(0) as u32,
                heights.value(r).max(0) as u32,
            );
            let key = keys.value(r);
            let convert = frame_convert(&self.unit, w, h, key)?;
            let image = ImageFormat::of_column(formats.value(r));
            let finish = if outcomes.is_valid(r) && outcomes.value(r) == "success" {
                Finish::Success
            } else {
                Finish::Failure
            };
            let offsets = events.value_offsets();
            for e in offsets[r] as usize..offsets[r + 1] as usize {
                if !ev_action.value(e) {
                    continue;
                }
                let data: Value = if ev_data.is_null(e) {
                    Value::Null
                } else {
                    serde_json::from_str(ev_data.value(e)).unwrap_or(Value::Null)
                };
                let action = Action::from_event(ev_type.value(e), &data);
                let text = action.to_text(self.unit.action_syntax, &convert, finish);
                let here = ChatStep {
                    step: self.step,
                    action: action.clone(),
                    convert,
                    text: text.clone(),
                    thought: actor::thought(&data),
                    target: actor::target(&data),
                    key: key.to_string(),
                    image,
                };
                let history_actions: Vec<String> =
                    self.actions.iter().map(|a| a.text.clone()).collect();
                let history_keys: Vec<String> =
                    self.frames.iter().map(|(k, _)| k.clone()).collect();
                let chat = self.unit.messages.as_ref().map(|m| {
                    let instruction = if instructions.is_null(r) {
                        workflows.value(r).replace('_', " ")
                    } else {
                        instructions.value(r).to_string()
                    };
                    let history: Vec<ChatStep> = self.actions.iter().cloned().collect();
                    let frames: Vec<(String, ImageFormat)> = self.frames.iter().cloned().collect();
                    chat::render(
                        m,
                        &ChatInput {
                            instruction: &instruction,
                            history: &history,
                            frames: &frames,
                            current: &here,
                            format: self.format,
                        },
                    )
                });
                out.push(StepRow {
                    input_row: r as u32,
                    event: e as u32,
                    key: format!("{session}_s{:06}", self.step),
                    step: self.step,
                    t_ms: ev_t.value(e),
                    observation_key: key.to_string(),
                    frame_idx: frame_idx.value(r),
                    frame_t_ms: t_ms.value(r),
                    size: (w, h),
                    image_size: convert.target(),
                    action,
                    convert,
                    text,
                    thought: here.thought.clone(),
                    target: here.target.clone(),
                    history_actions,
                    history_keys,
                    chat,
                });
                self.step += 1;
                if self.unit.history.actions > 0 {
                    self.actions.push_back(here);
                    while self.actions.len() > self.unit.history.actions as usize {
                        self.actions.pop_front();
                    }
                }
            }
            if self.unit.history.frames > 0 && sampled.is_valid(r) && sampled.value(r) {
                self.frames.push_back((key.to_string(), image));
                while self.frames.len() > self.unit.history.frames as usize {
                    self.frames.pop_front();
                }
            }
        }
        out.finish(self, batch, events, resized.as_ref())
    }

    /// For `smart_resize`, every row's image resized, computed on all cores
    /// (one row per thread at a time; a resize is tens of milliseconds);
    /// otherwise `None` (the observation is the `image` column as it is).
    fn resized_observations(&self, batch: &RecordBatch) -> Result<Option<BinaryArray>> {
        if self.unit.resize.is_none() {
            return Ok(None);
        }
        let keys = column(batch, "key")?.as_string::<i32>();
        let images = column(batch, "image")?.as_binary::<i32>();
        let formats = column(batch, "image_format")?.as_string::<i32>();
        let widths = column(batch, "width")?.as_primitive::<Int32Type>();
        let heights = column(batch, "height")?.as_primitive::<Int32Type>();
        let one = |r: usize| -> Result<Vec<u8>> {
            let (w, h) = (
                widths.value(r).max(0) as u32,
                heights.value(r).max(0) as u32,
            );
            let convert = frame_convert(&self.unit, w, h, keys.value(r))?;
            self.observation(images.value(r), formats.value(r), &convert, keys.value(r))
        };
        let n = batch.num_rows();
        let threads = std::thread::available_parallelism()
            .map_or(1, |p| p.get())
            .clamp(1, n.max(1));
        let mut results: Vec<Option<Result<Vec<u8>>>> = (0..n).map(|_| None).collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let one = &one;
                    scope.spawn(move || {
                        (t..n)
                            .step_by(threads)
                            .map(|r| (r, one(r)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                if let Ok(done) = h.join() {
                    for (r, res) in done {
                        results[r] = Some(res);
                    }
                }
            }
        });
        let bytes = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::Internal("a resize thread panicked".into()))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(BinaryArray::from_iter_values(bytes)))
    }

    /// The observation image: the frame's bytes, or for `smart_resize` the
    /// frame resized (Catmull-Rom; PNG stays PNG, written with fast
    /// compression and adaptive filtering; JPEG at quality 90).
    fn observation(
        &self,
        bytes: &[u8],
        format: &str,
        convert: &Convert,
        key: &str,
    ) -> Result<Vec<u8>> {
        let codec = ImageFormat::of_column(format).codec();
        let bad = |m: String| Error::Rows(format!("frame {key}: cannot resize its image: {m}"));
        let img =
            image::load_from_memory_with_format(bytes, codec).map_err(|e| bad(e.to_string()))?;
        let (tw, th) = convert.target();
        if (img.width(), img.height()) == (tw, th) {
            return Ok(bytes.to_vec());
        }
        let resized = img.resize_exact(tw, th, image::imageops::FilterType::CatmullRom);
        super::redaction::encode_image(&resized, codec, bytes.len(), true).map_err(bad)
    }
}

/// One step before it becomes columns.
struct StepRow {
    input_row: u32,
    event: u32,
    key: String,
    step: i64,
    t_ms: i64,
    observation_key: String,
    frame_idx: i64,
    frame_t_ms: i64,
    size: (u32, u32),
    image_size: (u32, u32),
    action: Action,
    convert: Convert,
    text: String,
    thought: Option<String>,
    target: Option<Target>,
    history_actions: Vec<String>,
    history_keys: Vec<String>,
    chat: Option<Chat>,
}

/// The steps of one batch.
struct Out {
    rows: Vec<StepRow>,
    fraction: bool,
}

fn strings_list(rows: impl Iterator<Item = Vec<String>>) -> ArrayRef {
    let mut b = ListBuilder::new(StringBuilder::new());
    for r in rows {
        for s in r {
            b.values().append_value(s);
        }
        b.append(true);
    }
    Arc::new(b.finish())
}

fn turns_list(a: &str, b: &str, loss: bool, rows: &[&[chat::Turn]]) -> Result<ArrayRef> {
    let mut offsets = vec![0i32];
    let (mut first, mut second) = (StringBuilder::new(), StringBuilder::new());
    let mut flags = arrow::array::BooleanBuilder::new();
    for r in rows {
        for (x, y, l) in r.iter() {
            first.append_value(x);
            second.append_value(y);
            flags.append_option(*l);
        }
        offsets.push(offsets.last().copied().unwrap_or(0) + r.len() as i32);
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(first.finish()), Arc::new(second.finish())];
    if loss {
        columns.push(Arc::new(flags.finish()));
    }
    let values = StructArray::try_new(turn_fields(a, b, loss), columns, None)?;
    let field = Arc::new(Field::new("item", values.data_type().clone(), true));
    Ok(Arc::new(ListArray::try_new(
        field,
        OffsetBuffer::new(offsets.into()),
        Arc::new(values),
        None,
    )?))
}

impl Out {
    fn new(unit: &StepUnit) -> Self {
        Out {
            rows: Vec::new(),
            fraction: unit.coordinates.is_fraction(),
        }
    }

    fn push(&mut self, row: StepRow) {
        self.rows.push(row);
    }

    fn action_array(&self) -> Result<ArrayRef> {
        let rows = &self.rows;
        let mut kind = StringBuilder::new();
        let mut text = StringBuilder::new();
        let mut direction = StringBuilder::new();
        let mut raw = StringBuilder::new();
        let mut amount = Int64Builder::new();
        let mut keys = ListBuilder::new(StringBuilder::new());
        let coord = |get: &dyn Fn(&StepRow) -> Option<f64>, axis: usize| -> ArrayRef {
            if self.fraction {
                let mut b = Float64Builder::new();
                for r in rows {
                    b.append_option(get(r).map(|v| r.convert.value(v, axis).as_f64()));
                }
                Arc::new(b.finish())
            } else {
                let mut b = Int64Builder::new();
                for r in rows {
                    b.append_option(get(r).map(|v| r.convert.value(v, axis).as_i64()));
                }
                Arc::new(b.finish())
            }
        };
        for r in rows {
            let a = &r.action;
            kind.append_value(a.kind);
            text.append_option(a.text.as_deref());
            direction.append_option(a.direction);
            raw.append_option(a.raw.as_deref());
            amount.append_option(a.amount);
            match &a.keys {
                Some(ks) => {
                    for k in ks {
                        keys.values().append_value(k);
                    }
                    keys.append(true);
                }
                None => keys.append(false),
            }
        }
        let x = coord(&|r| r.action.xy.map(|p| p.0), 0);
        let y = coord(&|r| r.action.xy.map(|p| p.1), 1);
        let x2 = coord(&|r| r.action.xy2.map(|p| p.0), 0);
        let y2 = coord(&|r| r.action.xy2.map(|p| p.1), 1);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(kind.finish()),
            x,
            y,
            x2,
            y2,
            Arc::new(text.finish()),
            Arc::new(keys.finish()),
            Arc::new(direction.finish()),
            Arc::new(amount.finish()),
            Arc::new(raw.finish()),
        ];
        let fields = action_fields(if self.fraction {
            Coordinates::Normalized
        } else {
            Coordinates::Pixels
        });
        Ok(Arc::new(StructArray::try_new(fields, columns, None)?))
    }

    /// `target_bbox` in the spec's convention (null without an element).
    fn target_array(&self) -> Result<ArrayRef> {
        let corner = |i: usize| -> ArrayRef {
            let get = |r: &StepRow| r.target.as_ref().map(|t| r.convert.value(t.bbox[i], i % 2));
            if self.fraction {
                let mut b = Float64Builder::new();
                for r in &self.rows {
                    b.append_option(get(r).map(|c| c.as_f64()));
                }
                Arc::new(b.finish())
            } else {
                let mut b = Int64Builder::new();
                for r in &self.rows {
                    b.append_option(get(r).map(|c| c.as_i64()));
                }
                Arc::new(b.finish())
            }
        };
        let coords = if self.fraction {
            Coordinates::Normalized
        } else {
            Coordinates::Pixels
        };
        let nulls = arrow::buffer::NullBuffer::from(
            self.rows
                .iter()
                .map(|r| r.target.is_some())
                .collect::<Vec<_>>(),
        );
        Ok(Arc::new(StructArray::try_new(
            bbox_fields(coords),
            (0..4).map(corner).collect(),
            Some(nulls),
        )?))
    }

    fn pixels_array(&self) -> Result<ArrayRef> {
        let axis = |get: &dyn Fn(&StepRow) -> Option<f64>, a: usize| -> ArrayRef {
            let mut b = Int64Builder::new();
            for r in &self.rows {
                b.append_option(get(r).map(|v| r.convert.pixel(v, a)));
            }
            Arc::new(b.finish())
        };
        let columns = vec![
            axis(&|r| r.action.xy.map(|p| p.0), 0),
            axis(&|r| r.action.xy.map(|p| p.1), 1),
            axis(&|r| r.action.xy2.map(|p| p.0), 0),
            axis(&|r| r.action.xy2.map(|p| p.1), 1),
        ];
        Ok(Arc::new(StructArray::try_new(
            pixel_fields(),
            columns,
            None,
        )?))
    }

    /// The step columns; the observation is taken from `resized` (for
    /// `smart_resize`) or the batch's `image`.
    fn finish(
        self,
        steps: &StepRows,
        batch: &RecordBatch,
        events: &ListArray,
        resized: Option<&BinaryArray>,
    ) -> Result<RecordBatch> {
        let rows = &self.rows;
        let idx = UInt32Array::from_iter_values(rows.iter().map(|r| r.input_row));
        let ev_idx = UInt32Array::from_iter_values(rows.iter().map(|r| r.event));
        let taken =
            |name: &str| -> Result<ArrayRef> { Ok(take(column(batch, name)?, &idx, None)?) };
        let strings = |f: &dyn Fn(&StepRow) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
        };
        let opt_strings = |f: &dyn Fn(&StepRow) -> Option<&str>| -> ArrayRef {
            Arc::new(StringArray::from_iter(rows.iter().map(f)))
        };
        let ints = |f: &dyn Fn(&StepRow) -> i64| -> ArrayRef {
            let mut b = Int64Builder::with_capacity(rows.len());
            for r in rows {
                b.append_value(f(r));
            }
            Arc::new(b.finish())
        };
        let int32s = |f: &dyn Fn(&StepRow) -> u32| -> ArrayRef {
            let mut b = Int32Builder::with_capacity(rows.len());
            for r in rows {
                b.append_value(f(r) as i32);
            }
            Arc::new(b.finish())
        };
        let observation = match resized {
            Some(r) => take(r, &idx, None)?,
            None => taken("image")?,
        };
        let mut columns: Vec<ArrayRef> = vec![strings(&|r| &r.key)];
        for name in &TAKEN[..9] {
            columns.push(taken(name)?);
        }
        columns.extend([
            ints(&|r| r.step),
            ints(&|r| r.t_ms),
            strings(&|r| &r.observation_key),
            ints(&|r| r.frame_idx),
            ints(&|r| r.frame_t_ms),
            observation,
            taken("image_format")?,
            int32s(&|r| r.size.0),
            int32s(&|r| r.size.1),
            int32s(&|r| r.image_size.0),
            int32s(&|r| r.image_size.1),
            self.action_array()?,
            self.pixels_array()?,
            strings(&|r| &r.text),
            opt_strings(&|r| r.thought.as_deref()),
            self.target_array()?,
            opt_strings(&|r| r.target.as_ref().and_then(|t| t.role.as_deref())),
            opt_strings(&|r| r.target.as_ref().and_then(|t| t.name.as_deref())),
            take(events.values(), &ev_idx, None)?,
            strings_list(rows.iter().map(|r| r.history_actions.clone())),
            strings_list(rows.iter().map(|r| r.history_keys.clone())),
        ]);
        if let Some(m) = &steps.unit.messages {
            let turns: Vec<&[chat::Turn]> = rows
                .iter()
                .map(|r| r.chat.as_ref().map_or(&[][..], |c| &c.0[..]))
                .collect();
            let (_, a, b) = turn_names(m.preset);
            columns.push(turns_list(a, b, m.loss.is_some(), &turns)?);
            columns
                .push(strings_list(rows.iter().map(|r| {
                    r.chat.as_ref().map(|c| c.1.clone()).unwrap_or_default()
                })));
        }
        if steps.input.field_with_name("split").is_ok() {
            columns.push(taken("split")?);
        }
        let schema = steps.schema();
        let columns = columns
            .into_iter()
            .zip(schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    arrow::compute::cast(&c, f.data_type()).map_err(Error::from)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}
