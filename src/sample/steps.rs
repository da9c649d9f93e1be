//! `"unit": "step"`: [`StepRows`] turns the ordered action frames of the
//! selected sessions into one row per action event, in (`session_id`,
//! `t_ms`, event order) order — the frames arrive by (`session_id`,
//! `frame_idx`), an event belongs to the latest frame at or before it
//! (SPEC §2), so that frame is the step's **observation**.
//!
//! Per step: `key` (`{session_id}_s{step:06}`), `step` (from 0 per
//! session), the session's columns and `instruction`, the observation
//! (`observation_key`, `frame_idx`, `frame_t_ms`, its image — resized for
//! the spec's `resize` — `width`/`height` of the original and
//! `image_width`/`image_height` of the stored image), the canonical
//! `action` in the spec's coordinates, `action_pixels` (original pixels),
//! `action_text`, the actor's `thought` and target (`actor.rs`), the raw
//! `event`, and the history: the previous N actions as text and the keys
//! of the previous M observation frames that the spec's frame sampling
//! keeps (`sampled`). With `messages`, a chat sample (`chat.rs`). History
//! restarts at every session. The columns are built by `step_columns.rs`.
//!
//! Memory: the state of one session (≤ 64 previous steps, ≤ 16 keys) and
//! the batch at hand.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BinaryArray, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, SchemaRef};
use serde_json::Value;

use super::action::{Action, Finish};
use super::actor;
use super::chat;
use super::convert::Convert;
use super::grounding;
use super::step_columns::{
    action_fields, column, pixel_fields, target_fields, turn_list, turn_names, utf8_list, Out,
    StepRow, TAKEN,
};
use super::turns::{defang, ChatInput, ChatStep};
use crate::error::{Error, Result};
use crate::spec::{ChatPreset, OutputFormat, StepUnit, Task};
use crate::store::ImageFormat;

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

/// The coordinate conversion of frame `key`, or why it cannot be made.
fn frame_convert(unit: &StepUnit, w: u32, h: u32, key: &str) -> Result<Convert> {
    Convert::resized(unit.coordinates, unit.resize, w, h).map_err(|message| Error::Frame {
        key: key.to_string(),
        message: format!("{message} (a `smart_resize` refuses it, as qwen_vl_utils does)"),
    })
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
                DataType::Struct(target_fields(unit.coordinates)),
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

        let grounding = self
            .unit
            .messages
            .as_ref()
            .is_some_and(|m| m.task == Task::Grounding);
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
                if !grounding || grounding::grounds(&here) {
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
                        let instruction = defang(&instruction);
                        let history: Vec<ChatStep> =
                            self.actions.iter().map(ChatStep::for_chat).collect();
                        let current = here.for_chat();
                        let frames: Vec<(String, ImageFormat)> =
                            self.frames.iter().cloned().collect();
                        chat::render(
                            m,
                            &ChatInput {
                                instruction: &instruction,
                                history: &history,
                                frames: &frames,
                                current: &current,
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
                }
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
        // Resized after the rows are known: a grounding export resizes only
        // the frames its samples show.
        let resized = self.resized_observations(batch, &out.observed(batch.num_rows()))?;
        out.finish(
            &self.unit,
            self.input.field_with_name("split").is_ok(),
            self.schema(),
            batch,
            events,
            resized.as_ref(),
        )
    }

    /// For `smart_resize`, the image of every `used` row resized (others
    /// empty), computed on all cores
    /// (one row per thread at a time; a resize is tens of milliseconds);
    /// otherwise `None` (the observation is the `image` column as it is).
    fn resized_observations(
        &self,
        batch: &RecordBatch,
        used: &[bool],
    ) -> Result<Option<BinaryArray>> {
        if self.unit.resize.is_none() {
            return Ok(None);
        }
        let keys = column(batch, "key")?.as_string::<i32>();
        let images = column(batch, "image")?.as_binary::<i32>();
        let formats = column(batch, "image_format")?.as_string::<i32>();
        let widths = column(batch, "width")?.as_primitive::<Int32Type>();
        let heights = column(batch, "height")?.as_primitive::<Int32Type>();
        let one = |r: usize| -> Result<Vec<u8>> {
            if !used.get(r).copied().unwrap_or(true) {
                return Ok(Vec::new());
            }
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
    /// frame resized (Pillow's bicubic, [`super::resize`]; PNG stays PNG, written with fast
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
        let resized = super::resize::bicubic(&img, tw, th).map_err(bad)?;
        super::redaction::encode_image(&resized, codec, bytes.len(), true).map_err(bad)
    }
}
